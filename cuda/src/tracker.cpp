#include "vramguard/tracker.hpp"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>

#include <time.h>
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
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(now.tv_nsec);
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

VramTracker::Shard& VramTracker::shard_for(const void* ptr) const noexcept {
  // Allocations are at least 256-byte aligned: drop the low bits, then mix (Fibonacci hashing).
  const auto address = reinterpret_cast<std::uintptr_t>(ptr) >> 8;
  const auto mixed = static_cast<std::uint64_t>(address) * 0x9E3779B97F4A7C15ull;
  return shards_[mixed >> 58];  // top 6 bits: 64 shards
}

std::uint64_t VramTracker::insert(const void* ptr, std::size_t bytes, VramPurpose purpose,
                                  std::string_view description, AllocationKind kind, bool owned) {
  validate(ptr, bytes, description);
  if (!is_valid_purpose(static_cast<int>(purpose))) {
    throw Error(VG_ERR_INVALID_ENUM, "invalid purpose " + std::to_string(static_cast<int>(purpose)));
  }
  if (!is_valid_kind(static_cast<int>(kind))) {
    throw Error(VG_ERR_INVALID_ENUM, "invalid kind " + std::to_string(static_cast<int>(kind)));
  }
  Shard& shard = shard_for(ptr);
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
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
  record.description.assign(description.data(), description.size());

  std::lock_guard<std::mutex> lock(shard.mutex);
  // One hash lookup: the record is moved in only when the pointer is new.
  const auto [slot, inserted] = shard.records.try_emplace(key, std::move(record));
  if (!inserted) throw Error(VG_ERR_ALREADY_TRACKED, "pointer is already tracked");
  // Reserve the bytes with a compare-exchange so the total can never wrap.
  std::uint64_t total = total_bytes_.load(std::memory_order_relaxed);
  do {
    if (total + bytes < total) {
      shard.records.erase(slot);
      throw Error(VG_ERR_INVALID_SIZE, "tracked total would overflow");
    }
  } while (!total_bytes_.compare_exchange_weak(total, total + bytes, std::memory_order_relaxed));
  const std::uint64_t id = (shard.next_sequence++ << 6) | shard_index;
  slot->second.id = id;
  raise_max(peak_total_bytes_, total + bytes);
  auto& counters = purposes_[static_cast<int>(purpose)];
  const auto purpose_total = counters.bytes.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  raise_max(counters.peak, purpose_total);
  add_locked(shard.purpose_count[static_cast<int>(purpose)], 1);
  add_locked(shard.count, 1);
  add_locked(shard.lifetime, 1);
  return id;
}

Removal VramTracker::remove(const void* ptr, bool owned, AllocationRecord* out) noexcept {
  Shard& shard = shard_for(ptr);
  std::lock_guard<std::mutex> lock(shard.mutex);
  auto it = shard.records.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == shard.records.end()) {
    add_locked(shard.unknown, 1);
    return Removal::Unknown;
  }
  if (it->second.owned != owned) return Removal::OwnershipMismatch;
  const std::uint64_t bytes = it->second.bytes;
  const int purpose = static_cast<int>(it->second.purpose);
  purposes_[purpose].bytes.fetch_sub(bytes, std::memory_order_relaxed);
  total_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  add_locked(shard.purpose_count[purpose], ~std::uint64_t{0});  // minus one
  add_locked(shard.count, ~std::uint64_t{0});
  auto node = shard.records.extract(it);  // no allocation: safe in a noexcept function
  if (out != nullptr) *out = std::move(node.mapped());
  return Removal::Removed;
}

Removal VramTracker::record_deallocation(const void* ptr) noexcept { return remove(ptr, false, nullptr); }

Removal VramTracker::take_owned(const void* ptr, AllocationRecord* out) noexcept {
  return remove(ptr, true, out);
}

std::size_t VramTracker::total_usage() const noexcept {
  return total_bytes_.load(std::memory_order_relaxed);
}

std::size_t VramTracker::usage_by_purpose(VramPurpose purpose) const noexcept {
  if (!is_valid_purpose(static_cast<int>(purpose))) return 0;
  return purposes_[static_cast<int>(purpose)].bytes.load(std::memory_order_relaxed);
}

std::size_t VramTracker::allocation_count() const noexcept {
  std::uint64_t count = 0;
  for (const Shard& shard : shards_) count += shard.count.load(std::memory_order_relaxed);
  return count;
}

std::size_t VramTracker::peak_usage() const noexcept {
  return peak_total_bytes_.load(std::memory_order_relaxed);
}

UsageStats VramTracker::read_counters() const noexcept {
  UsageStats stats;
  stats.total_bytes = total_bytes_.load(std::memory_order_relaxed);
  for (const Shard& shard : shards_) {
    stats.allocation_count += shard.count.load(std::memory_order_relaxed);
    stats.lifetime_allocations += shard.lifetime.load(std::memory_order_relaxed);
    stats.unknown_deallocations += shard.unknown.load(std::memory_order_relaxed);
    for (int p = 0; p < kPurposeCount; ++p) {
      stats.purpose_count[p] += shard.purpose_count[p].load(std::memory_order_relaxed);
    }
  }
  stats.peak_total_bytes = peak_total_bytes_.load(std::memory_order_relaxed);
  for (int p = 0; p < kPurposeCount; ++p) {
    stats.purpose_bytes[p] = purposes_[p].bytes.load(std::memory_order_relaxed);
    stats.peak_purpose_bytes[p] = purposes_[p].peak.load(std::memory_order_relaxed);
  }
  return stats;
}

UsageStats VramTracker::usage() const noexcept { return read_counters(); }

std::array<std::size_t, kPurposeCount> VramTracker::usage_breakdown() const noexcept {
  std::array<std::size_t, kPurposeCount> breakdown{};
  for (int p = 0; p < kPurposeCount; ++p) {
    breakdown[p] = purposes_[p].bytes.load(std::memory_order_relaxed);
  }
  return breakdown;
}

std::optional<AllocationRecord> VramTracker::find(const void* ptr) const {
  Shard& shard = shard_for(ptr);
  std::lock_guard<std::mutex> lock(shard.mutex);
  auto it = shard.records.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == shard.records.end()) return std::nullopt;
  return it->second;
}

VramTracker::Snapshot VramTracker::consistent_snapshot() const {
  // Every shard lock, in index order (the only place that takes more than one), so the counters
  // read here equal the sum of the records copied.
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(kShardCount);
  for (auto& shard : shards_) locks.emplace_back(shard.mutex);
  Snapshot snapshot;
  snapshot.usage = read_counters();
  snapshot.records.reserve(snapshot.usage.allocation_count);
  for (const auto& shard : shards_) {
    for (const auto& entry : shard.records) snapshot.records.push_back(entry.second);
  }
  locks.clear();
  std::sort(snapshot.records.begin(), snapshot.records.end(),
            [](const AllocationRecord& a, const AllocationRecord& b) {
              return a.order != b.order ? a.order < b.order : a.id < b.id;
            });
  return snapshot;
}

std::vector<AllocationRecord> VramTracker::snapshot() const { return consistent_snapshot().records; }

std::vector<ResidencyCandidate> VramTracker::residency_candidates(unsigned purpose_mask) const {
  // One shard at a time: a sweep never stops every allocating thread at once.
  std::vector<ResidencyCandidate> candidates;
  candidates.reserve(allocation_count());
  for (const auto& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    for (const auto& entry : shard.records) {
      if (purpose_mask & (1u << static_cast<unsigned>(entry.second.purpose))) {
        candidates.push_back({entry.second.id, entry.second.ptr});
      }
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
