// RecordTable: one tracker shard's records, keyed by address.
//
// The records sit in one dense array (a residency sweep or a snapshot reads them front to back,
// never chasing a list node per record), found through an open-addressing index of
// {address, position} pairs with linear probing and backward-shift deletion (no tombstones, so
// lookups stay short however many records come and go). No allocation per record (but for a
// description): growth doubles, and removal moves the last record into the hole. Each record
// knows its slot in the index, so a removal probes nothing: it starts from the slot, and the
// record moved into the hole tells where its own slot is.
//
// Not thread-safe: the tracker holds the shard's lock around every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "vramguard/purpose.hpp"

namespace vramguard {

// One record as a shard keeps it: 56 bytes, the description out of line (most allocations have
// none). The tracker copies it out as an AllocationRecord.
struct StoredRecord {
  std::uintptr_t key = 0;  // the address
  std::uint64_t bytes = 0;
  std::uint64_t id = 0;
  std::uint64_t ticks = 0;    // when it was recorded, in time-stamp ticks (orders records)
  std::uint64_t unix_ns = 0;  // and in Unix time, to the coarse clock's few milliseconds
  std::uint32_t slot = 0;     // its slot in the index: the table keeps it
  VramPurpose purpose = VramPurpose::Unknown;
  AllocationKind kind = AllocationKind::Device;
  bool owned = false;
  std::unique_ptr<char[]> description;  // NUL-terminated; null when empty

  const char* description_or_empty() const noexcept { return description ? description.get() : ""; }
};

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

  // Inserts `record` (keyed by record.key) unless its address is present. Returns the stored
  // record and whether it was inserted (when not, `record` is left as it was); on std::bad_alloc
  // nothing has changed. The pointer is valid until the next change.
  std::pair<StoredRecord*, bool> try_insert(StoredRecord&& record, std::uint64_t hash);
  StoredRecord* find(std::uintptr_t key, std::uint64_t hash) noexcept;
  const StoredRecord* find(std::uintptr_t key, std::uint64_t hash) const noexcept;
  // Removes a record `find` or `try_insert` returned, moving it into *out when out is not null.
  void erase(StoredRecord* record, StoredRecord* out) noexcept;

  std::size_t size() const noexcept { return records_.size(); }
  bool empty() const noexcept { return records_.empty(); }
  // Records in no particular order.
  const StoredRecord* begin() const noexcept { return records_.data(); }
  const StoredRecord* end() const noexcept { return records_.data() + records_.size(); }

 private:
  struct Slot {
    std::uintptr_t key = 0;
    std::uint32_t position = kEmpty;  // index into records_
    std::uint32_t hash_bits = 0;      // the hash bits below the shard's: where its home is
  };
  static constexpr std::uint32_t kEmpty = ~std::uint32_t{0};
  static constexpr std::size_t kNoSlot = ~std::size_t{0};
  static constexpr std::size_t kMinSlots = 16;
  // The shard's bits (the hash's top 6) are the same for every key here: use the next ones.
  static constexpr int kShardBits = 6;

  // The 32 hash bits below the shard's: enough for 2^32 slots, kept in the slot so that moving
  // and regrowing never hash again.
  static std::uint32_t hash_bits_of(std::uint64_t hash) noexcept {
    return static_cast<std::uint32_t>((hash << kShardBits) >> 32);
  }
  std::size_t home_of_bits(std::uint32_t bits) const noexcept {
    return static_cast<std::size_t>(bits >> (32 - slot_bits_));
  }
  std::size_t home(std::uint64_t hash) const noexcept { return home_of_bits(hash_bits_of(hash)); }
  std::size_t mask() const noexcept { return slots_.size() - 1; }
  std::size_t slot_of(std::uintptr_t key, std::uint64_t hash) const noexcept;
  void grow();  // doubles the index; strong guarantee
  // Puts `slot` at index i and tells its record where it now is.
  void place(std::size_t i, const Slot& slot) noexcept {
    slots_[i] = slot;
    records_[slot.position].slot = static_cast<std::uint32_t>(i);
  }

  std::vector<StoredRecord> records_;
  std::vector<Slot> slots_;
  int slot_bits_ = 0;
};

}  // namespace vramguard
