// RecordPin: a tracked allocation held in use for the length of one operation.
//
// A copy or checksum through the tracker looks the allocation up under its shard lock and then
// uses the memory outside it. Without a pin, a concurrent free followed by an allocation at the
// same address would make the copy write into someone else's allocation. While a RecordPin lives,
// removing its record (take_owned, record_deallocation: vg_free, vg_deallocate) waits, so the
// memory stays the allocation the operation named; after the removal, a lookup finds nothing and
// the operation fails cleanly instead.
#pragma once

#include <optional>

#include "vramguard/allocation_record.hpp"
#include "vramguard/tracker.hpp"

namespace vramguard {

class RecordPin {
 public:
  // Pins `ptr`'s record if the tracker has one (see bool conversion). Throws std::bad_alloc only.
  RecordPin(const VramTracker& tracker, const void* ptr)
      : tracker_(&tracker), ptr_(ptr), record_(tracker.pin(ptr)) {}
  ~RecordPin() noexcept {
    if (record_) tracker_->unpin(ptr_);
  }
  RecordPin(const RecordPin&) = delete;
  RecordPin& operator=(const RecordPin&) = delete;

  // Whether the pointer was tracked (and is now pinned).
  explicit operator bool() const noexcept { return record_.has_value(); }
  // The record as it was when pinned; only when tracked.
  const AllocationRecord& operator*() const noexcept { return *record_; }
  const AllocationRecord* operator->() const noexcept { return &*record_; }

 private:
  const VramTracker* tracker_;
  const void* ptr_;
  std::optional<AllocationRecord> record_;
};

}  // namespace vramguard
