#include "vramguard/tracker.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "vramguard/error.hpp"

namespace vramguard {

namespace {

// A record's wall-clock time is for people: the coarse clock (a few ms of resolution) costs a few
// ns, the fine one a quarter of a record. Order comes from order_ticks() instead.
std::uint64_t unix_now_ns() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(now.tv_nsec);
}

// For counters written only under one lock: a load and a store, no locked instruction.
void add_locked(std::atomic<std::uint64_t>& counter, std::uint64_t delta) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

// Monotonic and comparable across threads: the invariant time-stamp counter on x86-64 (a few ns),
// the steady clock elsewhere.
std::uint64_t order_ticks() {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

void raise_max(std::atomic<std::uint64_t>& peak, std::uint64_t value) noexcept {
  std::uint64_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(unit == 0 ? 0 : 2) << value << ' ' << kUnits[unit] << " ("
      << bytes << " bytes)";
  return out.str();
}

}  // namespace

VramTracker::VramTracker(int device) : device_(device) {
  if (device < 0) throw Error(VG_ERR_INVALID_DEVICE, "device ordinal must be >= 0");
}

void VramTracker::validate(const void* ptr, std::size_t bytes, std::string_view description) {
  if (ptr == nullptr) throw Error(VG_ERR_NULL_ARGUMENT, "cannot track a null pointer");
  if (bytes == 0) throw Error(VG_ERR_INVALID_SIZE, "cannot track an allocation of zero bytes");
  if (bytes > kMaxAllocationBytes) {
    throw Error(VG_ERR_INVALID_SIZE, "allocation of " + std::to_string(bytes) +
                                         " bytes exceeds the maximum of " +
                                         std::to_string(kMaxAllocationBytes) + " bytes");
  }
  const auto address = reinterpret_cast<std::uintptr_t>(ptr);
  if (address + bytes < address) {
    throw Error(VG_ERR_INVALID_SIZE, "allocation of " + std::to_string(bytes) +
                                         " bytes wraps past the end of the address space");
  }
  if (description.size() > kMaxDescriptionBytes) {
    throw Error(VG_ERR_DESCRIPTION_TOO_LONG,
                "description of " + std::to_string(description.size()) +
                    " bytes exceeds the maximum of " + std::to_string(kMaxDescriptionBytes));
  }
}

std::uint64_t VramTracker::record_allocation(const void* ptr, std::size_t bytes,
                                             VramPurpose purpose, std::string_view description,
                                             AllocationKind kind) {
  return insert(ptr, bytes, purpose, description, kind, false);
}

std::uint64_t VramTracker::adopt(const void* ptr, std::size_t bytes, VramPurpose purpose,
                                 std::string_view description) {
  return insert(ptr, bytes, purpose, description, AllocationKind::Adopted, false);
}

std::uint64_t VramTracker::record_owned_allocation(const void* ptr, std::size_t bytes,
                                                   VramPurpose purpose,
                                                   std::string_view description,
                                                   AllocationKind kind) {
  return insert(ptr, bytes, purpose, description, kind, true);
}

std::uint64_t VramTracker::insert(const void* ptr, std::size_t bytes, VramPurpose purpose,
                                  std::string_view description, AllocationKind kind, bool owned) {
  validate(ptr, bytes, description);
  if (!is_valid_purpose(static_cast<int>(purpose))) {
    throw Error(VG_ERR_INVALID_ENUM,
                "invalid purpose " + std::to_string(static_cast<int>(purpose)));
  }
  if (!is_valid_kind(static_cast<int>(kind))) {
    throw Error(VG_ERR_INVALID_ENUM, "invalid kind " + std::to_string(static_cast<int>(kind)));
  }
  return insert_validated(ptr, bytes, purpose, description, kind, owned);
}

std::uint64_t VramTracker::insert_validated(const void* ptr, std::size_t bytes, VramPurpose purpose,
                                            std::string_view description, AllocationKind kind,
                                            bool owned) {
  const std::uint64_t hash = RecordTable::hash_of(reinterpret_cast<std::uintptr_t>(ptr));
  Shard& shard = shard_for(hash);
  const auto shard_index = static_cast<std::uint64_t>(&shard - shards_.data());

  AllocationRecord record;
  record.ptr = const_cast<void*>(ptr);
  record.bytes = bytes;
  record.purpose = purpose;
  record.kind = kind;
  record.device = device_;
  record.owned = owned;
  record.recorded_at_unix_ns = unix_now_ns();
  record.order = order_ticks();
  if (!description.empty()) record.description.assign(description.data(), description.size());

  std::lock_guard<ShardMutex> lock(shard.mutex);
  // One lookup: the record is moved in only when the pointer is new.
  const auto [stored, inserted] = shard.records.try_insert(std::move(record), hash);
  if (!inserted) throw Error(VG_ERR_ALREADY_TRACKED, "pointer is already tracked");
  // One add, not a compare-exchange loop that threads would retry against each other. A total
  // that would wrap (2^64 bytes of adopted fakes) is taken back at once and refused.
  const std::uint64_t total = bytes_.total.fetch_add(bytes, std::memory_order_relaxed);
  if (total + bytes < total) {
    bytes_.total.fetch_sub(bytes, std::memory_order_relaxed);
    shard.records.erase(stored, hash, nullptr);
    throw Error(VG_ERR_INVALID_SIZE, "tracked total would overflow");
  }
  const std::uint64_t id = (shard.next_sequence++ << 6) | shard_index;
  stored->id = id;
  const int p = static_cast<int>(purpose);
  const auto purpose_total = bytes_.purpose[p].fetch_add(bytes, std::memory_order_relaxed) + bytes;
  raise_max(peaks_.total, total + bytes);
  raise_max(peaks_.purpose[p], purpose_total);
  add_locked(shard.purpose_count[static_cast<int>(purpose)], 1);
  add_locked(shard.count, 1);
  add_locked(shard.lifetime, 1);
  return id;
}

bool VramTracker::is_pinned(const Shard& shard, std::uintptr_t key) noexcept {
  for (const auto& [address, count] : shard.pinned) {
    if (address == key) return true;
  }
  return false;
}

Removal VramTracker::remove(const void* ptr, bool owned, AllocationRecord* out) noexcept {
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uint64_t hash = RecordTable::hash_of(key);
  Shard& shard = shard_for(hash);
  std::unique_lock<ShardMutex> lock(shard.mutex);
  AllocationRecord* record = shard.records.find(key, hash);
  for (;;) {
    if (record == nullptr) {
      add_locked(shard.unknown, 1);
      return Removal::Unknown;
    }
    if (record->owned != owned) return Removal::OwnershipMismatch;
    // One load on the fast path: nothing of this shard is pinned.
    if (shard.pinned.empty() || !is_pinned(shard, key)) break;
    // A copy or checksum is using the memory: wait until it is done, then look again (the lock
    // was let go, so the table may have moved, and a racing removal may have taken the record).
    ++shard.waiting;
    unpinned_.wait(lock);
    --shard.waiting;
    record = shard.records.find(key, hash);
  }
  const std::uint64_t bytes = record->bytes;
  const int purpose = static_cast<int>(record->purpose);
  bytes_.total.fetch_sub(bytes, std::memory_order_relaxed);
  bytes_.purpose[purpose].fetch_sub(bytes, std::memory_order_relaxed);
  add_locked(shard.purpose_count[purpose], ~std::uint64_t{0});  // minus one
  add_locked(shard.count, ~std::uint64_t{0});
  shard.records.erase(record, hash, out);  // no allocation: safe in a noexcept function
  return Removal::Removed;
}

std::optional<AllocationRecord> VramTracker::pin(const void* ptr) const {
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uint64_t hash = RecordTable::hash_of(key);
  Shard& shard = shard_for(hash);
  std::lock_guard<ShardMutex> lock(shard.mutex);
  const AllocationRecord* record = shard.records.find(key, hash);
  if (record == nullptr) return std::nullopt;
  std::optional<AllocationRecord> copy(*record);  // may throw: nothing pinned yet
  for (auto& [address, count] : shard.pinned) {
    if (address == key) {
      ++count;
      return copy;
    }
  }
  shard.pinned.emplace_back(key, 1);  // may throw: nothing pinned yet
  return copy;
}

void VramTracker::unpin(const void* ptr) const noexcept {
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
  Shard& shard = shard_for(RecordTable::hash_of(key));
  std::lock_guard<ShardMutex> lock(shard.mutex);
  auto& pinned = shard.pinned;
  for (std::size_t i = 0; i < pinned.size(); ++i) {
    if (pinned[i].first != key) continue;
    if (--pinned[i].second == 0) {
      pinned[i] = pinned.back();
      pinned.pop_back();  // no allocation
      if (shard.waiting > 0) unpinned_.notify_all();
    }
    return;
  }
}

Removal VramTracker::record_deallocation(const void* ptr) noexcept {
  return remove(ptr, false, nullptr);
}

Removal VramTracker::take_owned(const void* ptr, AllocationRecord* out) noexcept {
  return remove(ptr, true, out);
}

std::size_t VramTracker::total_usage() const noexcept {
  return bytes_.total.load(std::memory_order_relaxed);
}

std::size_t VramTracker::usage_by_purpose(VramPurpose purpose) const noexcept {
  if (!is_valid_purpose(static_cast<int>(purpose))) return 0;
  return bytes_.purpose[static_cast<int>(purpose)].load(std::memory_order_relaxed);
}

std::size_t VramTracker::allocation_count() const noexcept {
  std::uint64_t count = 0;
  for (const Shard& shard : shards_) count += shard.count.load(std::memory_order_relaxed);
  return count;
}

std::size_t VramTracker::peak_usage() const noexcept {
  return peaks_.total.load(std::memory_order_relaxed);
}

UsageStats VramTracker::read_counters() const noexcept {
  UsageStats stats;
  stats.total_bytes = bytes_.total.load(std::memory_order_relaxed);
  for (const Shard& shard : shards_) {
    stats.allocation_count += shard.count.load(std::memory_order_relaxed);
    stats.lifetime_allocations += shard.lifetime.load(std::memory_order_relaxed);
    stats.unknown_deallocations += shard.unknown.load(std::memory_order_relaxed);
    for (int p = 0; p < kPurposeCount; ++p) {
      stats.purpose_count[p] += shard.purpose_count[p].load(std::memory_order_relaxed);
    }
  }
  stats.peak_total_bytes = peaks_.total.load(std::memory_order_relaxed);
  for (int p = 0; p < kPurposeCount; ++p) {
    stats.purpose_bytes[p] = bytes_.purpose[p].load(std::memory_order_relaxed);
    stats.peak_purpose_bytes[p] = peaks_.purpose[p].load(std::memory_order_relaxed);
  }
  return stats;
}

UsageStats VramTracker::usage() const noexcept { return read_counters(); }

std::array<std::size_t, kPurposeCount> VramTracker::usage_breakdown() const noexcept {
  std::array<std::size_t, kPurposeCount> breakdown{};
  for (int p = 0; p < kPurposeCount; ++p) {
    breakdown[p] = bytes_.purpose[p].load(std::memory_order_relaxed);
  }
  return breakdown;
}

std::optional<AllocationRecord> VramTracker::find(const void* ptr) const {
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uint64_t hash = RecordTable::hash_of(key);
  Shard& shard = shard_for(hash);
  std::lock_guard<ShardMutex> lock(shard.mutex);
  const AllocationRecord* record = shard.records.find(key, hash);
  if (record == nullptr) return std::nullopt;
  return *record;
}

VramTracker::Snapshot VramTracker::consistent_snapshot() const {
  // Every shard lock, in index order (the only place that takes more than one), so the counters
  // read here equal the sum of the records copied.
  std::vector<std::unique_lock<ShardMutex>> locks;
  locks.reserve(kShardCount);
  for (auto& shard : shards_) locks.emplace_back(shard.mutex);
  Snapshot snapshot;
  snapshot.usage = read_counters();
  snapshot.records.reserve(snapshot.usage.allocation_count);
  for (const auto& shard : shards_) {
    snapshot.records.insert(snapshot.records.end(), shard.records.begin(), shard.records.end());
  }
  locks.clear();
  std::sort(snapshot.records.begin(), snapshot.records.end(),
            [](const AllocationRecord& a, const AllocationRecord& b) {
              return a.order != b.order ? a.order < b.order : a.id < b.id;
            });
  return snapshot;
}

std::vector<AllocationRecord> VramTracker::snapshot() const {
  return consistent_snapshot().records;
}

std::vector<AllocationRecord> VramTracker::records_of(unsigned purpose_mask) const {
  std::vector<AllocationRecord> records;
  for (const auto& shard : shards_) {
    std::lock_guard<ShardMutex> lock(shard.mutex);
    for (const AllocationRecord& record : shard.records) {
      if (purpose_mask & (1u << static_cast<unsigned>(record.purpose))) records.push_back(record);
    }
  }
  std::sort(records.begin(), records.end(),
            [](const AllocationRecord& a, const AllocationRecord& b) {
              return a.order != b.order ? a.order < b.order : a.id < b.id;
            });
  return records;
}

ResidencyCandidates VramTracker::residency_candidates(unsigned purpose_mask,
                                                      SweepSample sample) const {
  // Every own Device/Pool allocation whose id is `rotation` modulo the stride is queried.
  const std::uint64_t live = allocation_count();
  const bool query_all_own = sample.own_limit == SweepSample::kAllOwn;
  const std::uint64_t stride =
      query_all_own || sample.own_limit == 0
          ? 1
          : std::max<std::uint64_t>(1, (live + sample.own_limit - 1) / sample.own_limit);
  const std::uint64_t residue = sample.rotation % stride;
  ResidencyCandidates candidates;
  candidates.queried.reserve(query_all_own ? live : std::min(live, sample.own_limit + 1024));
  // One shard at a time: a sweep never stops every allocating thread at once.
  for (const auto& shard : shards_) {
    std::lock_guard<ShardMutex> lock(shard.mutex);
    for (const AllocationRecord& record : shard.records) {
      if (!(purpose_mask & (1u << static_cast<unsigned>(record.purpose)))) continue;
      const bool by_construction = record.owned && (record.kind == AllocationKind::Device ||
                                                    record.kind == AllocationKind::Pool);
      if (by_construction && !query_all_own &&
          (sample.own_limit == 0 || record.id % stride != residue)) {
        ++candidates.not_queried;
        continue;
      }
      candidates.queried.push_back({record.id, record.ptr});
    }
  }
  return candidates;
}

std::string VramTracker::usage_report() const {
  const UsageStats stats = usage();
  std::ostringstream out;
  out << "VRAM usage report (GPU" << device_ << ")\n";
  out << "  Total: " << format_bytes(stats.total_bytes) << " in " << stats.allocation_count
      << " allocation(s)\n";
  out << "  Peak: " << format_bytes(stats.peak_total_bytes) << '\n';
  out << "  By purpose:\n";
  for (int p = 0; p < kPurposeCount; ++p) {
    out << "    " << std::left << std::setw(20) << to_string(static_cast<VramPurpose>(p))
        << format_bytes(stats.purpose_bytes[p]) << ", " << stats.purpose_count[p]
        << " allocation(s), peak " << format_bytes(stats.peak_purpose_bytes[p]) << '\n';
  }
  out << "  Allocations recorded since start: " << stats.lifetime_allocations << '\n';
  out << "  Deallocations of untracked pointers: " << stats.unknown_deallocations << '\n';
  return out.str();
}

}  // namespace vramguard
