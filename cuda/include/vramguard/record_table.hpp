// RecordTable: one tracker shard's records, keyed by address.
//
// The records sit in one dense array (a residency sweep or a snapshot reads them front to back,
// never chasing a list node per record), found through an open-addressing index of
// {address, position} pairs with linear probing and backward-shift deletion (no tombstones, so
// lookups stay short however many records come and go). No allocation per record: growth
// doubles, and removal moves the last record into the hole.
//
// Not thread-safe: the tracker holds the shard's lock around every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "vramguard/allocation_record.hpp"

namespace vramguard {

class RecordTable {
 public:
  // A strong mix of the whole address: the tracker takes the shard from its top bits, the table
  // its home slot from the bits below them, so records of one shard still spread over its slots.
  static std::uint64_t hash_of(std::uintptr_t key) noexcept {
    std::uint64_t h = key;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
  }

  // Records are keyed by their address, record.ptr; `hash` is always hash_of(that address),
  // which the tracker has already computed to pick the shard.

  // Inserts `record` unless its address is present. Returns the stored record and whether it was
  // inserted; on std::bad_alloc nothing has changed. The pointer is valid until the next change.
  std::pair<AllocationRecord*, bool> try_insert(AllocationRecord&& record, std::uint64_t hash);
  AllocationRecord* find(std::uintptr_t key, std::uint64_t hash) noexcept;
  const AllocationRecord* find(std::uintptr_t key, std::uint64_t hash) const noexcept;
  // Removes a record `find` returned, moving it into *out when out is not null.
  void erase(AllocationRecord* record, std::uint64_t hash, AllocationRecord* out) noexcept;

  std::size_t size() const noexcept { return records_.size(); }
  bool empty() const noexcept { return records_.empty(); }
  // Records in no particular order.
  const AllocationRecord* begin() const noexcept { return records_.data(); }
  const AllocationRecord* end() const noexcept { return records_.data() + records_.size(); }

 private:
  struct Slot {
    std::uintptr_t key = 0;
    std::uint32_t position = kEmpty;  // index into records_
  };
  static constexpr std::uint32_t kEmpty = ~std::uint32_t{0};
  static constexpr std::size_t kNoSlot = ~std::size_t{0};
  static constexpr std::size_t kMinSlots = 16;
  // The shard's bits (the hash's top 6) are the same for every key here: use the next ones.
  static constexpr int kShardBits = 6;

  std::size_t home(std::uint64_t hash) const noexcept {
    return static_cast<std::size_t>((hash << kShardBits) >> (64 - slot_bits_));
  }
  std::size_t mask() const noexcept { return slots_.size() - 1; }
  std::size_t slot_of(std::uintptr_t key, std::uint64_t hash) const noexcept;
  void grow();  // doubles the index; strong guarantee

  std::vector<AllocationRecord> records_;
  std::vector<Slot> slots_;
  int slot_bits_ = 0;
};

}  // namespace vramguard
