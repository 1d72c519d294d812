// VramTracker: every byte of VRAM a worker holds, by purpose (T1-T7).
//
// Records live in 64 shards, each a dense table behind its own spin lock, so threads touching
// different pointers rarely meet. The counters (bytes, per-purpose bytes, counts) are kept per
// thread: each thread that records or removes adds its deltas to a stripe of its own (a cache line
// no other thread writes), with plain stores, under the shard's lock; a read sums the stripes of
// the threads that have used the tracker (a fixed number of loads, at most 64, whatever the number
// of records). A read with no update in flight is exact; one taken during updates is within the
// bytes of the updates in flight; a snapshot that holds every shard lock sees counters that equal
// its records exactly. Peaks are raised by records (from the sum of the stripes, by one recording
// thread at a time: a record that finds another summing is concurrent with it and leaves the
// peak to it; so peaks are exact when updates are not concurrent) and by every read (so a peak
// never understates a total a read returned).
//
// A record can be pinned while an operation uses its memory (a copy, a checksum: RecordPin):
// removing a pinned record waits until the operation is done, so that memory looked up under the
// shard lock cannot be freed and handed to another allocation at the same address while it is
// still being written or read.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vramguard/allocation_record.hpp"
#include "vramguard/purpose.hpp"
#include "vramguard/record_table.hpp"
#include "vramguard/shard_mutex.hpp"
#include "vramguard/usage.hpp"

namespace vramguard {

inline constexpr std::size_t kMaxDescriptionBytes = 255;
inline constexpr std::uint64_t kMaxAllocationBytes = 1ull << 48;

// Outcome of removing a record.
enum class Removal {
  Removed,
  Unknown,            // not tracked: nothing changed, counted in unknown_deallocations (T2)
  OwnershipMismatch,  // record_deallocation on an owned allocation, or take_owned on a recorded one
};

// What a residency sweep needs of a record: copied under the shard lock, queried outside it.
struct ResidencyCandidate {
  std::uint64_t id;
  const void* ptr;
};

// Which of vramguard's own allocations a sweep asks CUDA about (issue 16, part 2). Memory that
// vramguard allocated with cudaMalloc or from its pool is device memory by construction: its
// placement was classified when it was allocated and a pointer query cannot change the answer
// (the bandwidth witness judges where its bytes are). Recorded and adopted pointers, and
// vramguard's own Managed and PinnedHost memory, are queried by every sweep; of its own Device
// and Pool allocations a sweep queries a rotating sample of about `own_limit`: those whose id is
// `rotation` modulo ceil(live allocations / own_limit), so that consecutive rotations cover them
// all. own_limit kAllOwn (the default) queries every allocation; 0 none of them.
struct SweepSample {
  static constexpr std::uint64_t kAllOwn = ~std::uint64_t{0};
  std::uint64_t own_limit = kAllOwn;
  std::uint64_t rotation = 0;
};

struct ResidencyCandidates {
  std::vector<ResidencyCandidate> queried;
  std::uint64_t not_queried = 0;  // own Device/Pool allocations of the mask left out by the sample
};

// Counter stripes per tracker: one per live thread, the last shared beyond 63 threads.
inline constexpr int kCounterStripes = 64;

class VramTracker {
 public:
  explicit VramTracker(int device = 0);
  VramTracker(const VramTracker&) = delete;
  VramTracker& operator=(const VramTracker&) = delete;

  int device() const noexcept { return device_; }

  // Records memory the caller allocated. Throws Error on a null pointer, zero or oversized bytes,
  // an over-long description or a pointer already tracked; nothing changes then. Returns the id.
  std::uint64_t record_allocation(const void* ptr, std::size_t bytes, VramPurpose purpose,
                                  std::string_view description = {},
                                  AllocationKind kind = AllocationKind::Device);
  // T7: records a pointer made by another allocator (kind Adopted, never freed by vramguard).
  std::uint64_t adopt(const void* ptr, std::size_t bytes, VramPurpose purpose,
                      std::string_view description = {});
  // For allocators (DeviceMemory, the C ABI): records memory vramguard itself allocated.
  std::uint64_t record_owned_allocation(const void* ptr, std::size_t bytes, VramPurpose purpose,
                                        std::string_view description, AllocationKind kind);

  // Forgets a recorded or adopted pointer. Never throws; an unknown pointer changes nothing.
  // Waits while the record is pinned.
  Removal record_deallocation(const void* ptr) noexcept;
  // Removes an owned record and hands it back, so the allocator can free the memory. Waits while
  // the record is pinned.
  Removal take_owned(const void* ptr, AllocationRecord* out) noexcept;

  // Pins the record of `ptr` for an operation that uses its memory: until the matching unpin,
  // record_deallocation and take_owned of that pointer wait. Returns a copy of the record, or
  // nullopt when the pointer is not tracked (nothing is pinned then). Pins of one pointer nest.
  // Throws only std::bad_alloc, with nothing pinned. Prefer RecordPin (record_pin.hpp), which
  // cannot forget the unpin.
  std::optional<AllocationRecord> pin(const void* ptr) const;
  // Ends one pin of `ptr` (a pointer pin() returned a record for).
  void unpin(const void* ptr) const noexcept;

  // Checks what record_allocation would reject, without recording anything.
  static void validate(const void* ptr, std::size_t bytes, std::string_view description);

  // O(1) reads.
  std::size_t total_usage() const noexcept;
  std::size_t usage_by_purpose(VramPurpose purpose) const noexcept;
  std::size_t allocation_count() const noexcept;
  std::size_t peak_usage() const noexcept;
  UsageStats usage() const noexcept;
  std::array<std::size_t, kPurposeCount> usage_breakdown() const noexcept;

  // Copies (never references into live state), T5.
  std::optional<AllocationRecord> find(const void* ptr) const;
  std::vector<AllocationRecord> snapshot() const;  // oldest first, consistent with usage()
  struct Snapshot {
    UsageStats usage;
    std::vector<AllocationRecord> records;
  };
  Snapshot consistent_snapshot() const;
  // The records whose purpose bit is in the mask, oldest first; shards are read one at a time, so
  // unlike snapshot() the list is not consistent with usage() while others record. Throws
  // Error(VG_ERR_INVALID_ENUM) for an invalid mask.
  std::vector<AllocationRecord> records_of(unsigned purpose_mask) const;
  ResidencyCandidates residency_candidates(unsigned purpose_mask, SweepSample sample = {}) const;
  std::string usage_report() const;

 private:
  struct alignas(64) Shard {
    mutable ShardMutex mutex;
    std::uint32_t waiting = 0;  // removals of this shard waiting for an unpin
    std::uint64_t next_sequence = 0;
    std::uint64_t bytes = 0;  // live bytes of this shard's records: the overflow guard
    RecordTable records;
    // Pinned addresses and their pin counts: a handful at most (one per copy or checksum in
    // flight), so a vector. Removal's fast path only reads pinned.empty().
    std::vector<std::pair<std::uintptr_t, std::uint32_t>> pinned;
  };
  static constexpr std::size_t kShardCount = 64;
  // Dimensions of the byte counters and peaks: [0] the total, [1 + p] purpose p.
  static constexpr int kDims = 1 + kPurposeCount;
  // The counters one thread has added (signed: a thread that frees what others recorded goes
  // below zero; only the sum over the stripes means anything). 64 stripes; the 64th is shared,
  // with atomic adds, by threads beyond the 63rd alive at once and by a thread's updates after its
  // own stripe went back at exit.
  static constexpr int kStripes = kCounterStripes;
  struct alignas(64) Stripe {
    std::atomic<std::int64_t> bytes[kDims]{};
    std::atomic<std::int64_t> count{0};
    std::atomic<std::int64_t> lifetime{0};
    std::atomic<std::int64_t> unknown{0};
    std::atomic<std::int64_t> purpose_count[kPurposeCount]{};
  };

  // Validates every argument, then inserts.
  std::uint64_t insert(const void* ptr, std::size_t bytes, VramPurpose purpose,
                       std::string_view description, AllocationKind kind, bool owned);
  // Inserts arguments the caller has validated (DeviceMemory does, before the device is touched,
  // so that its one allocation path checks each argument once).
  std::uint64_t insert_validated(const void* ptr, std::size_t bytes, VramPurpose purpose,
                                 std::string_view description, AllocationKind kind, bool owned);
  friend class DeviceMemory;
  Removal remove(const void* ptr, bool owned, AllocationRecord* out) noexcept;
  static bool is_pinned(const Shard& shard, std::uintptr_t key) noexcept;
  Shard& shard_for(std::uint64_t hash) const noexcept { return shards_[hash >> 58]; }  // top 6 bits
  // The calling thread's stripe of this tracker (marked as used), and whether the thread has it
  // to itself (plain stores) or shares it (atomic adds).
  Stripe& own_stripe(bool* exclusive) const noexcept;
  // The sum of one counter over the stripes in use.
  template <typename Field>
  std::int64_t sum(Field field) const noexcept;
  // Raises peak `dimension` to the sum of its stripes now, and returns that sum (at least 0).
  std::uint64_t settle_peak(int dimension) const noexcept;
  // settle_peak of the total and of one purpose's dimension, in one pass over the stripes.
  void settle_peaks(int purpose_dimension) const noexcept;
  // settle_peaks for the calling thread's record, just made: skipped while another thread's
  // record is summing (the two are concurrent).
  void settle_peaks_after_record(int purpose_dimension) const noexcept;
  // A stored record as the public copy: every field but the description (no allocation), and
  // with it.
  AllocationRecord record_fields(const StoredRecord& record) const noexcept;
  AllocationRecord copy_out(const StoredRecord& record) const;
  UsageStats read_counters() const noexcept;

  int device_;
  mutable std::array<Shard, kShardCount> shards_;
  // Wakes removals waiting for an unpin (with their shard's lock). One per tracker: waits are rare
  // (a free racing a copy of the same allocation), so waking every waiter to recheck costs nothing.
  mutable std::condition_variable_any unpinned_;
  mutable std::array<Stripe, kStripes> stripes_;
  mutable std::atomic<std::uint64_t> stripes_in_use_{0};  // a bit per stripe ever written
  struct alignas(64) Peaks {
    std::atomic<std::uint64_t> bytes[kDims]{};
  };
  mutable Peaks peaks_;
  // Held by the one recording thread summing the stripes for the peaks (a line of its own: it
  // changes with every sum, the peaks only with a new maximum).
  struct alignas(64) PeakSum {
    std::atomic<bool> busy{false};
  };
  mutable PeakSum peak_sum_;
};

}  // namespace vramguard
