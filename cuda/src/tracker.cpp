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

// Monotonic and comparable across threads: the invariant time-stamp counter on x86-64 (a few ns),
// the steady clock elsewhere: a record's order.
std::uint64_t ticks_now() noexcept {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

// A record's wall-clock time is for people: the coarse clock (a few ms of resolution) costs a few
// ns, the fine one a quarter of a record. Order comes from ticks_now() instead.
std::uint64_t unix_now_ns() noexcept {
  timespec now{};
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(now.tv_nsec);
}

void raise_max(std::atomic<std::uint64_t>& peak, std::uint64_t value) noexcept {
  std::uint64_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

// Which stripe each live thread writes: 0..62 to itself, handed out on a thread's first update
// and back when it exits (the next thread carries its sums on); 63 shared by any thread beyond,
// and by a thread's updates after its own went back.
constexpr int kSharedStripe = kCounterStripes - 1;
class ThreadStripes {
 public:
  ThreadStripes() { free_.reserve(kSharedStripe); }
  int take() noexcept {
    std::lock_guard<ShardMutex> lock(mutex_);
    if (!free_.empty()) {
      const int index = free_.back();
      free_.pop_back();
      return index;
    }
    return next_ < kSharedStripe ? next_++ : kSharedStripe;
  }
  void give_back(int index) noexcept {
    if (index == kSharedStripe) return;
    std::lock_guard<ShardMutex> lock(mutex_);
    free_.push_back(index);  // capacity reserved: no allocation
  }

 private:
  ShardMutex mutex_;
  std::vector<int> free_;
  int next_ = 0;
};
ThreadStripes& thread_stripes() {
  static ThreadStripes* const stripes =
      new ThreadStripes;  // never destroyed: threads outlive statics
  return *stripes;
}
// The calling thread's stripe, -1 before its first update. A plain int: no destructor ends it, so
// it stays valid for the thread's destructors that run after t_stripe_return's.
thread_local int t_stripe = -1;
// Gives the thread's stripe back at its exit. A thread_local destroyed later may still update (a
// buffer freed at exit): the stripe given back may be another thread's by then, written with
// plain stores, so those updates go to the shared one.
struct StripeReturn {
  bool armed = false;  // set when the stripe is taken, which registers this destructor
  ~StripeReturn() {
    if (armed) thread_stripes().give_back(t_stripe);
    t_stripe = kSharedStripe;
  }
};
thread_local StripeReturn t_stripe_return;

// One thread's update of its stripe: plain load and store when the stripe is the thread's own,
// an atomic add when shared.
void bump(std::atomic<std::int64_t>& counter, std::int64_t delta, bool exclusive) noexcept {
  if (exclusive) {
    counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  } else {
    counter.fetch_add(delta, std::memory_order_relaxed);
  }
}

std::uint64_t at_least_zero(std::int64_t value) noexcept {
  return value > 0 ? static_cast<std::uint64_t>(value) : 0;
}

// At most this many bytes per shard (2^57): the sum over 64 shards cannot wrap a signed 64-bit
// counter, and no device comes near it.
constexpr std::uint64_t kMaxShardBytes = std::uint64_t{1} << 57;

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

VramTracker::Stripe& VramTracker::own_stripe(bool* exclusive) const noexcept {
  if (t_stripe < 0) {
    t_stripe = thread_stripes().take();
    t_stripe_return.armed = true;
  }
  const int index = t_stripe;
  *exclusive = index != kSharedStripe;
  const std::uint64_t bit = std::uint64_t{1} << index;
  if ((stripes_in_use_.load(std::memory_order_relaxed) & bit) == 0) {
    stripes_in_use_.fetch_or(bit, std::memory_order_relaxed);
  }
  return stripes_[index];
}

template <typename Field>
std::int64_t VramTracker::sum(Field field) const noexcept {
  std::int64_t total = 0;
  for (std::uint64_t left = stripes_in_use_.load(std::memory_order_relaxed); left != 0;
       left &= left - 1) {
    total += field(stripes_[__builtin_ctzll(left)]).load(std::memory_order_relaxed);
  }
  return total;
}

std::uint64_t VramTracker::settle_peak(int dimension) const noexcept {
  const std::uint64_t now =
      at_least_zero(sum([dimension](Stripe & s) -> auto& { return s.bytes[dimension]; }));
  raise_max(peaks_.bytes[dimension], now);
  return now;
}

void VramTracker::settle_peaks(int purpose_dimension) const noexcept {
  std::int64_t total = 0;
  std::int64_t purpose = 0;
  for (std::uint64_t left = stripes_in_use_.load(std::memory_order_relaxed); left != 0;
       left &= left - 1) {
    const Stripe& stripe = stripes_[__builtin_ctzll(left)];
    total += stripe.bytes[0].load(std::memory_order_relaxed);
    purpose += stripe.bytes[purpose_dimension].load(std::memory_order_relaxed);
  }
  raise_max(peaks_.bytes[0], at_least_zero(total));
  raise_max(peaks_.bytes[purpose_dimension], at_least_zero(purpose));
}

void VramTracker::settle_peaks_after_record(int purpose_dimension) const noexcept {
  // Alone on this tracker (no other thread's stripe was ever used): sum, nothing to meet.
  const std::uint64_t own = std::uint64_t{1} << t_stripe;
  if (stripes_in_use_.load(std::memory_order_relaxed) == own) {
    settle_peaks(purpose_dimension);
    return;
  }
  // One recording thread sums at a time. A record that finds another thread summing overlaps
  // that thread's record: the two updates are concurrent, for which a peak need not be exact,
  // and the next read settles it in any case. Updates that are not concurrent never find the
  // flag held, so each of them sums. The test before the exchange keeps waiting threads reading
  // a shared line instead of bouncing it.
  if (peak_sum_.busy.load(std::memory_order_relaxed) ||
      peak_sum_.busy.exchange(true, std::memory_order_acquire)) {
    return;
  }
  settle_peaks(purpose_dimension);
  peak_sum_.busy.store(false, std::memory_order_release);
}

AllocationRecord VramTracker::record_fields(const StoredRecord& stored) const noexcept {
  AllocationRecord record;
  record.id = stored.id;
  record.ptr = reinterpret_cast<void*>(stored.key);
  record.bytes = stored.bytes;
  record.purpose = stored.purpose;
  record.kind = stored.kind;
  record.device = device_;
  record.owned = stored.owned;
  record.recorded_at_unix_ns = stored.unix_ns;
  record.order = stored.ticks;
  return record;
}

AllocationRecord VramTracker::copy_out(const StoredRecord& stored) const {
  AllocationRecord record = record_fields(stored);
  if (stored.description) record.description = stored.description.get();
  return record;
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
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uint64_t hash = RecordTable::hash_of(key);
  Shard& shard = shard_for(hash);
  const auto shard_index = static_cast<std::uint64_t>(&shard - shards_.data());

  StoredRecord record;
  record.key = key;
  record.bytes = bytes;
  record.purpose = purpose;
  record.kind = kind;
  record.owned = owned;
  record.ticks = ticks_now();
  record.unix_ns = unix_now_ns();
  if (!description.empty()) {  // may throw: nothing has changed yet
    record.description = std::make_unique<char[]>(description.size() + 1);
    std::copy(description.begin(), description.end(), record.description.get());
    record.description[description.size()] = '\0';
  }

  const int p = 1 + static_cast<int>(purpose);
  std::uint64_t id = 0;
  {
    std::lock_guard<ShardMutex> lock(shard.mutex);
    if (shard.bytes + bytes > kMaxShardBytes) {
      throw Error(VG_ERR_INVALID_SIZE, "tracked total would overflow");
    }
    // One lookup: the record is moved in only when the pointer is new.
    const auto [stored, inserted] = shard.records.try_insert(std::move(record), hash);
    if (!inserted) throw Error(VG_ERR_ALREADY_TRACKED, "pointer is already tracked");
    id = (shard.next_sequence++ << 6) | shard_index;
    stored->id = id;
    shard.bytes += bytes;
    // The counters change with the record, under its lock (a snapshot holding every lock sees
    // them agree).
    bool exclusive = true;
    Stripe& stripe = own_stripe(&exclusive);
    const auto delta = static_cast<std::int64_t>(bytes);
    bump(stripe.bytes[0], delta, exclusive);
    bump(stripe.bytes[p], delta, exclusive);
    bump(stripe.count, 1, exclusive);
    bump(stripe.purpose_count[p - 1], 1, exclusive);
    bump(stripe.lifetime, 1, exclusive);
  }
  // After the lock: the sum reads every thread's stripe, which no other record of this shard
  // needs to wait for.
  settle_peaks_after_record(p);
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
  StoredRecord* record = shard.records.find(key, hash);
  bool exclusive = true;
  for (;;) {
    if (record == nullptr) {
      bump(own_stripe(&exclusive).unknown, 1, exclusive);
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
  const auto delta = -static_cast<std::int64_t>(record->bytes);
  const int p = 1 + static_cast<int>(record->purpose);
  shard.bytes -= record->bytes;
  Stripe& stripe = own_stripe(&exclusive);
  bump(stripe.bytes[0], delta, exclusive);
  bump(stripe.bytes[p], delta, exclusive);
  bump(stripe.count, -1, exclusive);
  bump(stripe.purpose_count[p - 1], -1, exclusive);
  if (out == nullptr) {
    shard.records.erase(record, nullptr);
    return Removal::Removed;
  }
  // Everything but the description is copied without allocating, before the erase; the
  // description's copy may allocate (the caller reads the record's kind and address, set here).
  *out = record_fields(*record);
  StoredRecord removed;
  shard.records.erase(record, &removed);
  lock.unlock();
  try {
    if (removed.description) out->description = removed.description.get();
  } catch (...) {
    // No memory for the description's copy: the record is removed all the same.
  }
  return Removal::Removed;
}

std::optional<AllocationRecord> VramTracker::pin(const void* ptr) const {
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uint64_t hash = RecordTable::hash_of(key);
  Shard& shard = shard_for(hash);
  std::lock_guard<ShardMutex> lock(shard.mutex);
  const StoredRecord* record = shard.records.find(key, hash);
  if (record == nullptr) return std::nullopt;
  std::optional<AllocationRecord> copy(copy_out(*record));  // may throw: nothing pinned
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

std::size_t VramTracker::total_usage() const noexcept { return settle_peak(0); }

std::size_t VramTracker::usage_by_purpose(VramPurpose purpose) const noexcept {
  if (!is_valid_purpose(static_cast<int>(purpose))) return 0;
  return settle_peak(1 + static_cast<int>(purpose));
}

std::size_t VramTracker::allocation_count() const noexcept {
  return at_least_zero(sum([](Stripe & s) -> auto& { return s.count; }));
}

std::size_t VramTracker::peak_usage() const noexcept {
  settle_peak(0);
  return peaks_.bytes[0].load(std::memory_order_relaxed);
}

UsageStats VramTracker::read_counters() const noexcept {
  UsageStats stats;
  stats.total_bytes = settle_peak(0);
  stats.allocation_count = allocation_count();
  stats.lifetime_allocations = at_least_zero(sum([](Stripe & s) -> auto& { return s.lifetime; }));
  stats.unknown_deallocations = at_least_zero(sum([](Stripe & s) -> auto& { return s.unknown; }));
  stats.peak_total_bytes = peaks_.bytes[0].load(std::memory_order_relaxed);
  for (int p = 0; p < kPurposeCount; ++p) {
    stats.purpose_bytes[p] = settle_peak(1 + p);
    stats.purpose_count[p] =
        at_least_zero(sum([p](Stripe & s) -> auto& { return s.purpose_count[p]; }));
    stats.peak_purpose_bytes[p] = peaks_.bytes[1 + p].load(std::memory_order_relaxed);
  }
  return stats;
}

UsageStats VramTracker::usage() const noexcept { return read_counters(); }

std::array<std::size_t, kPurposeCount> VramTracker::usage_breakdown() const noexcept {
  std::array<std::size_t, kPurposeCount> breakdown{};
  for (int p = 0; p < kPurposeCount; ++p) breakdown[p] = settle_peak(1 + p);
  return breakdown;
}

std::optional<AllocationRecord> VramTracker::find(const void* ptr) const {
  const auto key = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uint64_t hash = RecordTable::hash_of(key);
  Shard& shard = shard_for(hash);
  std::lock_guard<ShardMutex> lock(shard.mutex);
  const StoredRecord* record = shard.records.find(key, hash);
  if (record == nullptr) return std::nullopt;
  return copy_out(*record);
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
    for (const StoredRecord& record : shard.records) {
      snapshot.records.push_back(copy_out(record));
    }
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
  require_valid_purpose_mask(purpose_mask);
  std::vector<AllocationRecord> records;
  for (const auto& shard : shards_) {
    std::lock_guard<ShardMutex> lock(shard.mutex);
    for (const StoredRecord& record : shard.records) {
      if (purpose_mask & (1u << static_cast<unsigned>(record.purpose))) {
        records.push_back(copy_out(record));
      }
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
    for (const StoredRecord& record : shard.records) {
      if (!(purpose_mask & (1u << static_cast<unsigned>(record.purpose)))) continue;
      const bool by_construction = record.owned && (record.kind == AllocationKind::Device ||
                                                    record.kind == AllocationKind::Pool);
      if (by_construction && !query_all_own &&
          (sample.own_limit == 0 || record.id % stride != residue)) {
        ++candidates.not_queried;
        continue;
      }
      candidates.queried.push_back({record.id, reinterpret_cast<const void*>(record.key)});
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
