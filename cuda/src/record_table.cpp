#include "vramguard/record_table.hpp"

#include <new>

namespace vramguard {

std::size_t RecordTable::slot_of(std::uintptr_t key, std::uint64_t hash) const noexcept {
  if (slots_.empty()) return kNoSlot;
  for (std::size_t i = home(hash);; i = (i + 1) & mask()) {
    const Slot& slot = slots_[i];
    if (slot.position == kEmpty) return kNoSlot;
    if (slot.key == key) return i;
  }
}

StoredRecord* RecordTable::find(std::uintptr_t key, std::uint64_t hash) noexcept {
  const std::size_t i = slot_of(key, hash);
  return i == kNoSlot ? nullptr : &records_[slots_[i].position];
}

const StoredRecord* RecordTable::find(std::uintptr_t key, std::uint64_t hash) const noexcept {
  const std::size_t i = slot_of(key, hash);
  return i == kNoSlot ? nullptr : &records_[slots_[i].position];
}

void RecordTable::grow() {
  const std::size_t count = slots_.empty() ? kMinSlots : slots_.size() * 2;
  int bits = 0;
  while ((std::size_t{1} << bits) < count) ++bits;
  std::vector<Slot> bigger(count);  // may throw: nothing has changed yet
  const std::size_t bigger_mask = count - 1;
  for (const Slot& slot : slots_) {
    if (slot.position == kEmpty) continue;
    std::size_t i = static_cast<std::size_t>(slot.hash_bits >> (32 - bits));
    while (bigger[i].position != kEmpty) i = (i + 1) & bigger_mask;
    bigger[i] = slot;
  }
  // Nothing below throws: the records learn their new slots.
  for (std::size_t i = 0; i < count; ++i) {
    if (bigger[i].position != kEmpty)
      records_[bigger[i].position].slot = static_cast<std::uint32_t>(i);
  }
  slots_.swap(bigger);
  slot_bits_ = bits;
}

std::pair<StoredRecord*, bool> RecordTable::try_insert(StoredRecord&& record, std::uint64_t hash) {
  const std::uintptr_t key = record.key;
  // One probe finds the record or the empty slot that ends its run, where it goes; only a growth
  // (which moves every slot) probes again.
  std::size_t i = kNoSlot;
  if (!slots_.empty()) {
    for (i = home(hash); slots_[i].position != kEmpty; i = (i + 1) & mask()) {
      if (slots_[i].key == key) return {&records_[slots_[i].position], false};
    }
  }
  if (records_.size() >= kEmpty - 1) throw std::bad_alloc();
  // Everything that can throw happens before anything changes.
  if (records_.size() == records_.capacity())
    records_.reserve(records_.empty() ? 8 : records_.size() * 2);
  if ((records_.size() + 1) * 2 > slots_.size()) {  // load factor at most 1/2
    grow();
    for (i = home(hash); slots_[i].position != kEmpty; i = (i + 1) & mask()) {
    }
  }
  slots_[i] = Slot{key, static_cast<std::uint32_t>(records_.size()), hash_bits_of(hash)};
  record.slot = static_cast<std::uint32_t>(i);
  records_.push_back(std::move(record));  // capacity reserved: cannot throw
  return {&records_.back(), true};
}

void RecordTable::erase(StoredRecord* record, StoredRecord* out) noexcept {
  std::size_t hole = record->slot;
  const std::uint32_t position = slots_[hole].position;
  if (out != nullptr) *out = std::move(*record);

  // Backward-shift deletion: pull later members of the probe run into the hole whenever their
  // home slot does not lie cyclically in (hole, j], so every key stays reachable from its home.
  for (std::size_t j = (hole + 1) & mask(); slots_[j].position != kEmpty; j = (j + 1) & mask()) {
    const std::size_t k = home_of_bits(slots_[j].hash_bits);
    const bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
    if (stays) continue;
    place(hole, slots_[j]);
    hole = j;
  }
  slots_[hole] = Slot{};

  // Keep the array dense: the last record fills the gap, and its slot follows it.
  const std::uint32_t last = static_cast<std::uint32_t>(records_.size() - 1);
  if (position != last) {
    StoredRecord& moved = records_[last];
    slots_[moved.slot].position = position;
    records_[position] = std::move(moved);
  }
  records_.pop_back();
}

}  // namespace vramguard
