#include "vramguard/device_memory.hpp"

#include <cuda_runtime_api.h>

#include <utility>

#include "copy.hpp"
#include "cuda_call.hpp"
#include "raw_allocation.hpp"
#include "scoped_device.hpp"

namespace vramguard {

DeviceMemory::DeviceMemory(std::size_t bytes, VramTracker* tracker, VramPurpose purpose,
                           std::string_view description, AllocationKind kind, MemoryPool* pool)
    : purpose_(purpose), kind_(kind) {
  if (tracker == nullptr) throw Error(VG_ERR_NULL_ARGUMENT, "DeviceMemory needs a tracker");
  // Reject bad arguments before touching the device: a failure allocates nothing.
  validate(bytes, purpose, description, kind);
  if (kind == AllocationKind::Pool && pool == nullptr) {
    throw Error(VG_ERR_NULL_ARGUMENT, "kind Pool needs a MemoryPool");
  }
  if (kind == AllocationKind::Pool && pool != nullptr && pool->device() != tracker->device()) {
    throw Error(VG_ERR_INVALID_DEVICE, "the pool belongs to another device than the tracker");
  }
  detail::ScopedDevice scope(tracker->device());
  void* ptr = detail::raw_allocate(kind, bytes, pool);
  try {
    // Every argument was validated above, before the device was touched.
    tracker->insert_validated(ptr, bytes, purpose, description, kind, /*owned=*/true);
  } catch (...) {
    (void)detail::raw_free(kind, ptr);
    throw;
  }
  tracker_ = tracker;
  ptr_ = ptr;
  bytes_ = bytes;
}

void DeviceMemory::validate(std::size_t bytes, VramPurpose purpose, std::string_view description,
                            AllocationKind kind) {
  if (!is_valid_purpose(static_cast<int>(purpose))) {
    throw Error(VG_ERR_INVALID_ENUM, "invalid purpose");
  }
  // Sizes and descriptions before the kind: the order vg_alloc has always answered in.
  VramTracker::validate(reinterpret_cast<const void*>(1), bytes, description);
  if (!is_valid_kind(static_cast<int>(kind)) || kind == AllocationKind::Adopted) {
    throw Error(VG_ERR_INVALID_ENUM, "kind Adopted is recorded with adopt(), not allocated");
  }
}

DeviceMemory::DeviceMemory(DeviceMemory&& other) noexcept
    : tracker_(std::exchange(other.tracker_, nullptr)),
      ptr_(std::exchange(other.ptr_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      purpose_(other.purpose_),
      kind_(other.kind_) {}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
  if (this != &other) {
    reset();
    tracker_ = std::exchange(other.tracker_, nullptr);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    purpose_ = other.purpose_;
    kind_ = other.kind_;
  }
  return *this;
}

int DeviceMemory::reset() noexcept {
  if (ptr_ == nullptr) return 0;
  int result = 0;
  (void)detail::release_owned(*tracker_, ptr_, &result);
  ptr_ = nullptr;
  bytes_ = 0;
  tracker_ = nullptr;
  return result;
}

void* DeviceMemory::release() noexcept {
  tracker_ = nullptr;
  bytes_ = 0;
  return std::exchange(ptr_, nullptr);
}

void DeviceMemory::copy_from_host(const void* src, std::size_t bytes, std::size_t offset) {
  if (ptr_ == nullptr || src == nullptr)
    throw Error(VG_ERR_NULL_ARGUMENT, "copy with a null pointer");
  detail::check_copy_range(offset, bytes, bytes_);
  detail::copy_on_device(tracker_->device(), static_cast<char*>(ptr_) + offset, src, bytes);
}

void DeviceMemory::copy_to_host(void* dst, std::size_t bytes, std::size_t offset) const {
  if (ptr_ == nullptr || dst == nullptr)
    throw Error(VG_ERR_NULL_ARGUMENT, "copy with a null pointer");
  detail::check_copy_range(offset, bytes, bytes_);
  detail::copy_on_device(tracker_->device(), dst, static_cast<const char*>(ptr_) + offset, bytes);
}

}  // namespace vramguard
