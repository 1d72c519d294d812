// VramTracker accounting (T1-T7). Pure bookkeeping: runs without a GPU. Addresses are synthetic
// because the tracker never dereferences them; allocation through the device is in
// device_memory_test.cpp.
#include "vramguard/tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "vramguard/error.hpp"
#include "vramguard/record_pin.hpp"
#include "vramguard/residency_check.hpp"

using namespace vramguard;

namespace {
constexpr std::size_t kGiB = 1ull << 30;
constexpr std::size_t kMiB = 1ull << 20;
void* address(std::uintptr_t n) { return reinterpret_cast<void*>(0x7f0000000000ull + n * 4096); }

vg_status status_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.status();
  }
  return VG_OK;
}
}  // namespace

TEST(Tracker, RecordIncrementsTotalAndCount) {
  VramTracker tracker;
  tracker.record_allocation(address(1), kGiB, VramPurpose::ModelWeights, "layer 0");
  EXPECT_EQ(tracker.total_usage(), kGiB);
  EXPECT_EQ(tracker.allocation_count(), 1u);
  const auto records = tracker.snapshot();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].ptr, address(1));
  EXPECT_EQ(records[0].description, "layer 0");
  EXPECT_EQ(records[0].device, 0);
  EXPECT_EQ(records[0].kind, AllocationKind::Device);
  EXPECT_GT(records[0].recorded_at_unix_ns, 0u);
}

TEST(Tracker, DeallocationReturnsToZero) {
  VramTracker tracker;
  tracker.record_allocation(address(1), kGiB, VramPurpose::ModelWeights);
  EXPECT_EQ(tracker.record_deallocation(address(1)), Removal::Removed);
  EXPECT_EQ(tracker.total_usage(), 0u);
  EXPECT_EQ(tracker.allocation_count(), 0u);
  EXPECT_EQ(tracker.peak_usage(), kGiB);
}

TEST(Tracker, UsageByPurposeAndBreakdown) {
  VramTracker tracker;
  tracker.record_allocation(address(1), kGiB, VramPurpose::ModelWeights);
  tracker.record_allocation(address(2), 512 * kMiB, VramPurpose::KVCache);
  tracker.record_allocation(address(3), 256 * kMiB, VramPurpose::IntermediateBuffers);
  EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::ModelWeights), kGiB);
  EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::KVCache), 512 * kMiB);
  EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::IntermediateBuffers), 256 * kMiB);
  EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::Unknown), 0u);
  const auto breakdown = tracker.usage_breakdown();
  EXPECT_EQ(breakdown[0] + breakdown[1] + breakdown[2] + breakdown[3], tracker.total_usage());
  EXPECT_EQ(tracker.allocation_count(), 3u);
  EXPECT_EQ(tracker.usage().purpose_count[1], 1u);
}

TEST(Tracker, PeaksFollowTheHighWaterMark) {
  VramTracker tracker;
  tracker.record_allocation(address(1), 100, VramPurpose::KVCache);
  tracker.record_allocation(address(2), 300, VramPurpose::KVCache);
  tracker.record_deallocation(address(1));
  tracker.record_allocation(address(3), 50, VramPurpose::ModelWeights);
  const auto usage = tracker.usage();
  EXPECT_EQ(usage.total_bytes, 350u);
  EXPECT_EQ(usage.peak_total_bytes, 400u);
  EXPECT_EQ(usage.peak_purpose_bytes[1], 400u);
  EXPECT_EQ(usage.peak_purpose_bytes[0], 50u);
  EXPECT_EQ(usage.lifetime_allocations, 3u);
}

TEST(Tracker, ZeroBytesRejectedWithoutChange) {
  VramTracker tracker;
  EXPECT_EQ(status_of([&] { tracker.record_allocation(address(1), 0, VramPurpose::KVCache); }),
            VG_ERR_INVALID_SIZE);
  EXPECT_EQ(tracker.allocation_count(), 0u);
  EXPECT_EQ(tracker.usage().lifetime_allocations, 0u);
}

TEST(Tracker, OversizedAndWrappingSizesRejected) {
  VramTracker tracker;
  EXPECT_EQ(status_of([&] {
              tracker.record_allocation(address(1), kMaxAllocationBytes + 1, VramPurpose::KVCache);
            }),
            VG_ERR_INVALID_SIZE);
  void* near_top = reinterpret_cast<void*>(UINTPTR_MAX - 4095);
  EXPECT_EQ(status_of([&] { tracker.record_allocation(near_top, 8192, VramPurpose::KVCache); }),
            VG_ERR_INVALID_SIZE);
  EXPECT_EQ(tracker.total_usage(), 0u);
}

TEST(Tracker, UnknownPointerIsCountedAndChangesNothing) {
  VramTracker tracker;
  tracker.record_allocation(address(1), 4096, VramPurpose::KVCache);
  EXPECT_EQ(tracker.record_deallocation(address(99)), Removal::Unknown);
  EXPECT_EQ(tracker.record_deallocation(nullptr), Removal::Unknown);
  EXPECT_EQ(tracker.total_usage(), 4096u);
  EXPECT_EQ(tracker.allocation_count(), 1u);
  EXPECT_EQ(tracker.usage().unknown_deallocations, 2u);
}

TEST(Tracker, DuplicateAndNullAndLongDescriptionRejected) {
  VramTracker tracker;
  tracker.record_allocation(address(1), 4096, VramPurpose::KVCache);
  EXPECT_EQ(status_of([&] { tracker.record_allocation(address(1), 8, VramPurpose::Unknown); }),
            VG_ERR_ALREADY_TRACKED);
  EXPECT_EQ(status_of([&] { tracker.record_allocation(nullptr, 8, VramPurpose::Unknown); }),
            VG_ERR_NULL_ARGUMENT);
  const std::string long_text(kMaxDescriptionBytes + 1, 'x');
  EXPECT_EQ(
      status_of([&] { tracker.record_allocation(address(2), 8, VramPurpose::Unknown, long_text); }),
      VG_ERR_DESCRIPTION_TOO_LONG);
  EXPECT_EQ(
      status_of([&] { tracker.record_allocation(address(3), 8, static_cast<VramPurpose>(7)); }),
      VG_ERR_INVALID_ENUM);
  EXPECT_EQ(tracker.total_usage(), 4096u);
  EXPECT_EQ(tracker.allocation_count(), 1u);
}

TEST(Tracker, AdoptedPointersAreRecordedAndNotOwned) {
  VramTracker tracker(0);
  tracker.adopt(address(5), 1 * kMiB, VramPurpose::ModelWeights, "framework tensor");
  auto record = tracker.find(address(5));
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->kind, AllocationKind::Adopted);
  EXPECT_FALSE(record->owned);
  EXPECT_EQ(tracker.take_owned(address(5), nullptr), Removal::OwnershipMismatch);
  EXPECT_EQ(tracker.allocation_count(), 1u);
  EXPECT_EQ(tracker.record_deallocation(address(5)), Removal::Removed);
}

TEST(Tracker, OwnedAllocationsCannotBeForgottenByRecordDeallocation) {
  VramTracker tracker;
  tracker.record_owned_allocation(address(1), 64, VramPurpose::KVCache, "", AllocationKind::Device);
  EXPECT_EQ(tracker.record_deallocation(address(1)), Removal::OwnershipMismatch);
  EXPECT_EQ(tracker.total_usage(), 64u);
  AllocationRecord taken;
  EXPECT_EQ(tracker.take_owned(address(1), &taken), Removal::Removed);
  EXPECT_EQ(taken.bytes, 64u);
}

TEST(Tracker, SnapshotIsACopy) {
  VramTracker tracker;
  tracker.record_allocation(address(1), 4096, VramPurpose::KVCache, "original");
  auto records = tracker.snapshot();
  records[0].description = "changed";
  records[0].bytes = 1;
  EXPECT_EQ(tracker.find(address(1))->description, "original");
  EXPECT_EQ(tracker.total_usage(), 4096u);
}

TEST(Tracker, UsageReportIsReadable) {
  VramTracker tracker(3);
  tracker.record_allocation(address(1), kGiB, VramPurpose::ModelWeights);
  tracker.record_allocation(address(2), 512 * kMiB, VramPurpose::KVCache);
  const std::string report = tracker.usage_report();
  EXPECT_NE(report.find("GPU3"), std::string::npos);
  EXPECT_NE(report.find("Total: 1.50 GiB (1610612736 bytes) in 2 allocation(s)"), std::string::npos)
      << report;
  EXPECT_NE(report.find("ModelWeights"), std::string::npos);
  EXPECT_NE(report.find("KVCache"), std::string::npos);
  EXPECT_NE(report.find("1.00 GiB"), std::string::npos);
}

TEST(Tracker, TenThreadsRecordConcurrently) {
  VramTracker tracker;
  constexpr int kThreads = 10, kPerThread = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        tracker.record_allocation(address(t * kPerThread + i + 1), 1000 + t,
                                  static_cast<VramPurpose>(i % kPurposeCount));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::size_t expected = 0;
  for (int t = 0; t < kThreads; ++t) expected += std::size_t(kPerThread) * (1000 + t);
  EXPECT_EQ(tracker.total_usage(), expected);
  EXPECT_EQ(tracker.allocation_count(), std::size_t(kThreads * kPerThread));
  std::size_t walked = 0;
  for (const auto& r : tracker.snapshot()) walked += r.bytes;
  EXPECT_EQ(walked, expected);
}

TEST(Tracker, SnapshotCountersEqualRecordsWhileWritersRun) {
  VramTracker tracker;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (std::uintptr_t i = 0; !stop.load(); ++i) {
        void* p = address(t * 1000000 + (i % 512) + 1);
        if (tracker.record_deallocation(p) == Removal::Unknown) {
          tracker.record_allocation(p, 100 + i % 7, static_cast<VramPurpose>(i % 4));
        }
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    const auto snapshot = tracker.consistent_snapshot();
    std::uint64_t sum = 0;
    for (const auto& r : snapshot.records) sum += r.bytes;
    ASSERT_EQ(sum, snapshot.usage.total_bytes);
    ASSERT_EQ(snapshot.records.size(), snapshot.usage.allocation_count);
  }
  stop = true;
  for (auto& writer : writers) writer.join();
}

TEST(Tracker, NegativeDeviceRejected) {
  EXPECT_EQ(status_of([] { VramTracker tracker(-1); }), VG_ERR_INVALID_DEVICE);
}

// --- Pins: an operation's record cannot be removed under it --------------------------------------

TEST(TrackerPin, PinCopiesTheRecordAndNests) {
  VramTracker tracker;
  const auto id = tracker.record_allocation(address(1), kMiB, VramPurpose::KVCache, "kv");
  EXPECT_FALSE(tracker.pin(address(2)).has_value());  // not tracked: nothing pinned
  tracker.unpin(address(2));                          // and unpinning it changes nothing
  {
    const RecordPin outer(tracker, address(1));
    ASSERT_TRUE(outer);
    EXPECT_EQ(outer->id, id);
    EXPECT_EQ(outer->bytes, kMiB);
    EXPECT_EQ(outer->description, "kv");
    const RecordPin inner(tracker, address(1));
    EXPECT_TRUE(inner);
    const RecordPin missing(tracker, address(3));
    EXPECT_FALSE(missing);
  }
  EXPECT_EQ(tracker.record_deallocation(address(1)), Removal::Removed);
  EXPECT_EQ(tracker.total_usage(), 0u);
}

TEST(TrackerPin, RemovalWaitsUntilTheLastPinGoes) {
  for (const bool owned : {false, true}) {
    VramTracker tracker;
    if (owned) {
      tracker.record_owned_allocation(address(1), kMiB, VramPurpose::KVCache, "",
                                      AllocationKind::Device);
    } else {
      tracker.record_allocation(address(1), kMiB, VramPurpose::KVCache);
    }
    auto first = std::make_unique<RecordPin>(tracker, address(1));
    auto second = std::make_unique<RecordPin>(tracker, address(1));
    std::atomic<bool> removed{false};
    Removal result = Removal::Unknown;
    std::thread remover([&] {
      AllocationRecord out;
      result =
          owned ? tracker.take_owned(address(1), &out) : tracker.record_deallocation(address(1));
      removed.store(true);
    });
    // Other pointers of the same shard, and every other shard, are not held up meanwhile.
    tracker.record_allocation(address(2), kMiB, VramPurpose::KVCache);
    EXPECT_EQ(tracker.record_deallocation(address(2)), Removal::Removed);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(removed.load()) << "removed while pinned twice";
    first.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(removed.load()) << "removed while still pinned once";
    EXPECT_EQ(tracker.allocation_count(), 1u);
    second.reset();
    remover.join();
    EXPECT_TRUE(removed.load());
    EXPECT_EQ(result, Removal::Removed);
    EXPECT_EQ(tracker.allocation_count(), 0u);
    EXPECT_FALSE(RecordPin(tracker, address(1)));  // gone: a later operation fails cleanly
  }
}

TEST(TrackerPin, ConcurrentUsersNeverTouchMemoryFreedUnderThem) {
  // Host memory stands in for device memory: "freeing" a block fills it with kFreed, as the next
  // owner at the same address would overwrite it, then it is recorded again with its next
  // generation written into it. Users pin a block, check that their own words of it hold the
  // generation its record names, and write them again, as a copy would. Without the pin's wait the
  // freer's writes would meet the users' (ThreadSanitizer reports the race; the check sees kFreed
  // or a newer generation).
  constexpr int kBlocks = 4;
  constexpr int kUsers = 4;  // each owns words u and u + 4 of every block
  constexpr int kGenerations = 2000;
  constexpr std::uint64_t kFreed = 0xDEADDEADDEADDEADull;
  struct alignas(64) Block {
    std::uint64_t words[8];
  };
  static Block blocks[kBlocks];
  VramTracker tracker;
  for (auto& block : blocks) {
    for (auto& word : block.words) word = 0;
    tracker.record_allocation(&block, sizeof(Block), VramPurpose::ModelWeights, "0");
  }
  std::atomic<int> freers_left{kBlocks};
  std::atomic<long> uses[kBlocks] = {};  // landed uses per block
  std::atomic<long> landed{0};
  std::atomic<long> refused{0};
  std::atomic<long> misdirected{0};
  std::vector<std::thread> threads;
  for (int b = 0; b < kBlocks; ++b) {
    threads.emplace_back([&, b] {
      Block& block = blocks[b];
      for (std::uint64_t generation = 1; generation <= kGenerations; ++generation) {
        if (tracker.record_deallocation(&block) != Removal::Removed) {
          ADD_FAILURE() << "block " << b << " was not tracked at generation " << generation;
          break;
        }
        volatile std::uint64_t* words = block.words;  // both stores happen, in order
        for (int w = 0; w < 8; ++w) words[w] = kFreed;
        std::this_thread::yield();  // the next owner's bytes stay a while
        for (int w = 0; w < 8; ++w) words[w] = generation;
        const long before = uses[b].load();
        tracker.record_allocation(&block, sizeof(Block), VramPurpose::ModelWeights,
                                  std::to_string(generation));
        // Let a user in before the next free (or give up after a while): free and use meet.
        for (int spins = 0; uses[b].load() == before && spins < 10000; ++spins) {
          std::this_thread::yield();
        }
      }
      freers_left.fetch_sub(1);
    });
  }
  for (int u = 0; u < kUsers; ++u) {
    threads.emplace_back([&, u] {
      for (unsigned i = u; freers_left.load() > 0; ++i) {
        const unsigned b = i % kBlocks;
        Block& block = blocks[b];
        const RecordPin pin(tracker, &block);
        if (!pin) {
          refused.fetch_add(1);  // between a free and the next record: a clean "unknown pointer"
          std::this_thread::yield();
          continue;
        }
        const std::uint64_t generation = std::stoull(pin->description);
        // This user's own two words of the block (users may share an allocation, never bytes).
        volatile std::uint64_t* words = block.words;
        bool intact = true;
        for (int pass = 0; pass < 2; ++pass) {  // a use that takes a while, as a copy does
          intact = intact && words[u] == generation && words[u + 4] == generation;
          std::this_thread::yield();
        }
        words[u] = generation;
        words[u + 4] = generation;
        (intact ? landed : misdirected).fetch_add(1);
        uses[b].fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(misdirected.load(), 0);
  EXPECT_GT(landed.load(), 0);
  EXPECT_EQ(tracker.allocation_count(), static_cast<std::size_t>(kBlocks));
  std::printf("[ vramguard ] pinned uses: %ld landed in the named block, %ld refused cleanly\n",
              landed.load(), refused.load());
}

// Issue 16, part 2: a sampled sweep queries every recorded, adopted, managed and pinned host
// allocation, about own_limit of vramguard's own Device/Pool ones, and consecutive rotations cover
// every own one; records_of lists one purpose's records, oldest first.
TEST(Tracker, SampledSweepQueriesForeignMemoryAlwaysAndOwnMemoryInRotation) {
  VramTracker tracker(0);
  auto address = [](std::uint64_t i) {
    return reinterpret_cast<void*>(0x700000000000ull + (i << 8));
  };
  constexpr std::uint64_t kOwn = 10'000;
  constexpr std::uint64_t kAdopted = 100;
  constexpr std::uint64_t kManaged = 10;
  std::uint64_t next = 0;
  for (std::uint64_t i = 0; i < kOwn; ++i) {
    tracker.record_owned_allocation(address(next++), 256, VramPurpose::KVCache, {},
                                    i % 2 ? AllocationKind::Pool : AllocationKind::Device);
  }
  std::vector<std::uint64_t> always;
  for (std::uint64_t i = 0; i < kAdopted; ++i) {
    always.push_back(tracker.adopt(address(next++), 256, VramPurpose::ModelWeights));
  }
  for (std::uint64_t i = 0; i < kManaged; ++i) {
    always.push_back(tracker.record_owned_allocation(
        address(next++), 256, VramPurpose::IntermediateBuffers, {}, AllocationKind::Managed));
  }
  const std::uint64_t live = kOwn + kAdopted + kManaged;
  const std::uint64_t limit = 1000;
  const std::uint64_t stride = (live + limit - 1) / limit;
  std::set<std::uint64_t> own_seen;
  for (std::uint64_t rotation = 0; rotation < stride; ++rotation) {
    const ResidencyCandidates sample =
        tracker.residency_candidates(kAllPurposes, {limit, rotation});
    std::set<std::uint64_t> ids;
    for (const auto& c : sample.queried) ids.insert(c.id);
    for (std::uint64_t id : always) EXPECT_EQ(ids.count(id), 1u) << "rotation " << rotation;
    const std::uint64_t own_queried = sample.queried.size() - kAdopted - kManaged;
    EXPECT_LE(own_queried, limit);
    EXPECT_EQ(own_queried + sample.not_queried, kOwn);
    for (std::uint64_t id : ids) {
      if (std::find(always.begin(), always.end(), id) == always.end()) own_seen.insert(id);
    }
  }
  EXPECT_EQ(own_seen.size(), kOwn) << "the rotations together query every own allocation";
  // The default queries everything; a limit of 0 no own allocation; a mask restricts both.
  EXPECT_EQ(tracker.residency_candidates(kAllPurposes).queried.size(), live);
  EXPECT_EQ(tracker.residency_candidates(kAllPurposes).not_queried, 0u);
  EXPECT_EQ(tracker.residency_candidates(kAllPurposes, {0, 0}).queried.size(), kAdopted + kManaged);
  const unsigned weights = 1u << static_cast<unsigned>(VramPurpose::ModelWeights);
  EXPECT_EQ(tracker.residency_candidates(weights, {0, 0}).queried.size(), kAdopted);
  const std::vector<AllocationRecord> records = tracker.records_of(weights);
  ASSERT_EQ(records.size(), kAdopted);
  for (std::size_t i = 1; i < records.size(); ++i)
    EXPECT_LT(records[i - 1].order, records[i].order);
  for (const auto& r : records) EXPECT_EQ(r.purpose, VramPurpose::ModelWeights);
  for (std::uint64_t i = 0; i < next; ++i) {
    AllocationRecord out;
    if (tracker.take_owned(address(i), &out) != Removal::Removed)
      tracker.record_deallocation(address(i));
  }
  EXPECT_EQ(tracker.allocation_count(), 0u);
}

// Issue 18: the counters are per-thread stripes summed on read. A model under concurrency:
// writers record and remove their own pointers of random sizes; a reader raises a flag carrying
// the round's number, reads, then waits until every writer has parked for that round (a writer
// checks the flag before each operation, so only an operation already started when the flag went
// up can be in flight during the read; a writer parks by storing the round it saw, so a park
// left from an earlier round never passes for one in this round).
// The read lies between the totals with and without those operations; with every writer parked a
// read is exact; every peak read is at least every total a read returned.
namespace {
void expect_reads_within_the_operations_in_flight(int writer_count, int rounds) {
  VramTracker tracker;
  struct alignas(64) Writer {
    std::atomic<std::int64_t> before{0};  // live bytes before the last operation it started
    std::atomic<std::int64_t> after{0};   // live bytes after the last operation it finished
    std::atomic<int> parked_for{0};       // the round it last parked for
  };
  std::vector<Writer> writers(writer_count);
  std::atomic<int> writers_holding_stripes{0};  // a stripe is taken with a thread's first update
  std::atomic<std::uint64_t> recorded{0};
  std::atomic<int> reading{0};  // the round being read, 0 between rounds
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < writer_count; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 random(1000 + w);
      std::vector<std::pair<std::uintptr_t, std::uint64_t>> live;
      std::int64_t bytes = 0;
      std::uint64_t next = 1;
      bool holds_stripe = false;
      while (!stop.load(std::memory_order_relaxed)) {
        if (const int round = reading.load(std::memory_order_acquire); round != 0) {
          writers[w].parked_for.store(round, std::memory_order_release);
          while (reading.load(std::memory_order_acquire) == round) std::this_thread::yield();
          continue;
        }
        writers[w].before.store(bytes, std::memory_order_relaxed);
        if (live.size() < 32 && (live.empty() || random() % 2 == 0)) {
          const std::uintptr_t address = (static_cast<std::uintptr_t>(w + 1) << 40) + (next++ << 8);
          const std::uint64_t size = 1 + random() % (1 << 20);
          tracker.record_allocation(reinterpret_cast<void*>(address), size, VramPurpose::KVCache);
          live.emplace_back(address, size);
          bytes += static_cast<std::int64_t>(size);
        } else {
          const std::size_t i = random() % live.size();
          tracker.record_deallocation(reinterpret_cast<void*>(live[i].first));
          bytes -= static_cast<std::int64_t>(live[i].second);
          live[i] = live.back();
          live.pop_back();
        }
        writers[w].after.store(bytes, std::memory_order_release);
        // With the reader's fence: either this writer sees the flag before its next operation,
        // or the reader's read sees every store of the operation just finished (so only the
        // next one can be in flight during the read, as the model assumes).
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (!holds_stripe) {
          holds_stripe = true;
          writers_holding_stripes.fetch_add(1);
        }
      }
      for (const auto& [address, size] : live)
        tracker.record_deallocation(reinterpret_cast<void*>(address));
      recorded.fetch_add(next - 1);
    });
  }
  // Every writer holds its stripe, to the end, before the first read: with more writers than
  // stripes, the last stripe is shared through every round.
  while (writers_holding_stripes.load() < writer_count) std::this_thread::yield();
  std::uint64_t highest_read = 0;
  int overlapped = 0;
  for (int round = 1; round <= rounds; ++round) {
    reading.store(round, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the flag before the read (see above)
    const std::uint64_t read = tracker.total_usage();
    const std::uint64_t kv = tracker.usage_by_purpose(VramPurpose::KVCache);
    for (auto& writer : writers) {
      while (writer.parked_for.load(std::memory_order_acquire) != round) std::this_thread::yield();
    }
    std::int64_t low = 0, high = 0, exact = 0;
    for (auto& writer : writers) {
      const std::int64_t before = writer.before.load(std::memory_order_relaxed);
      const std::int64_t after = writer.after.load(std::memory_order_relaxed);
      low += std::min(before, after);
      high += std::max(before, after);
      exact += after;
    }
    overlapped += static_cast<std::int64_t>(read) != exact;  // it saw an operation unfinished
    ASSERT_GE(static_cast<std::int64_t>(read), low) << "round " << round;
    ASSERT_LE(static_cast<std::int64_t>(read), high) << "round " << round;
    ASSERT_GE(static_cast<std::int64_t>(kv), low) << "round " << round;
    ASSERT_LE(static_cast<std::int64_t>(kv), high) << "round " << round;
    // Every writer parked: nothing in flight, the read is exact.
    ASSERT_EQ(static_cast<std::int64_t>(tracker.total_usage()), exact) << "round " << round;
    ASSERT_EQ(tracker.usage().total_bytes, static_cast<std::uint64_t>(exact));
    highest_read = std::max(highest_read, read);
    ASSERT_GE(tracker.peak_usage(), highest_read);
    reading.store(0, std::memory_order_release);
    std::this_thread::yield();
  }
  stop.store(true);
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(tracker.total_usage(), 0u);
  EXPECT_EQ(tracker.allocation_count(), 0u);
  EXPECT_EQ(tracker.usage().lifetime_allocations, recorded.load());
  std::printf(
      "[ vramguard ] %d reads during %d writers: %d saw an operation unfinished, all within "
      "the bytes in flight\n",
      rounds, writer_count, overlapped);
}
}  // namespace

TEST(Tracker, ReadsDuringUpdatesStayWithinTheOperationsInFlight) {
  expect_reads_within_the_operations_in_flight(8, 400);
}

// More writers than stripes: those beyond the 63 private stripes share the last one (atomic adds)
// while the others write their own (plain stores).
TEST(Tracker, ReadsDuringUpdatesOfMoreThreadsThanStripesStayWithinTheOperationsInFlight) {
  expect_reads_within_the_operations_in_flight(100, 200);
}

// Peaks are exact when updates are not concurrent, whichever threads make them: threads taking
// turns (one at a time) reach a peak that no single thread's stripe ever held.
TEST(Tracker, PeaksAreExactForUpdatesTakingTurnsAcrossThreads) {
  VramTracker tracker;
  auto on_thread = [](auto work) { std::thread(work).join(); };
  auto p = [](std::uintptr_t i) { return reinterpret_cast<void*>(i << 12); };
  on_thread([&] { tracker.record_allocation(p(1), 100, VramPurpose::ModelWeights); });
  on_thread([&] { tracker.record_allocation(p(2), 50, VramPurpose::KVCache); });
  on_thread([&] { tracker.record_deallocation(p(1)); });  // a third thread frees the first's
  EXPECT_EQ(tracker.peak_usage(), 150u);
  on_thread([&] { tracker.record_allocation(p(3), 120, VramPurpose::KVCache); });
  EXPECT_EQ(tracker.total_usage(), 170u);
  EXPECT_EQ(tracker.peak_usage(), 170u);
  const UsageStats usage = tracker.usage();
  EXPECT_EQ(usage.peak_purpose_bytes[static_cast<int>(VramPurpose::ModelWeights)], 100u);
  EXPECT_EQ(usage.peak_purpose_bytes[static_cast<int>(VramPurpose::KVCache)], 170u);
  EXPECT_EQ(usage.purpose_count[static_cast<int>(VramPurpose::KVCache)], 2u);
  EXPECT_EQ(usage.allocation_count, 2u);
  EXPECT_EQ(usage.lifetime_allocations, 3u);
  on_thread([&] {
    tracker.record_deallocation(p(2));
    tracker.record_deallocation(p(3));
  });
  EXPECT_EQ(tracker.total_usage(), 0u);
  EXPECT_EQ(tracker.peak_usage(), 170u);
}

namespace {
// Work a thread does as it exits. Constructed before the thread's first update of a tracker, so
// destroyed after the tracker has taken the thread's stripe back (thread_locals are destroyed in
// the reverse order of their construction).
struct AtThreadExit {
  std::function<void()> work;
  ~AtThreadExit() {
    if (work) work();
  }
};
}  // namespace

// A thread's stripe goes back when the thread exits, and the next thread to update takes it. A
// thread_local destroyed after that (a buffer freed at exit) still updates the counters: those
// updates must not land in the stripe its new owner writes with plain stores, or the two lose
// each other's updates. Here the late updates run while the stripe's new owner updates, for many
// operations, so lost updates show in the totals.
TEST(Tracker, UpdatesAtThreadExitAfterTheStripeWentBackAreNotLost) {
  constexpr int kRounds = 20;
  constexpr std::uintptr_t kOperations = 20'000;
  constexpr std::size_t kBaseline = kGiB, kLeaving = 3000, kLate = 5000, kTaker = 7000;
  auto pointer = [](std::uintptr_t thread, std::uintptr_t i) {
    return reinterpret_cast<void*>((thread << 40) + (i << 8));
  };
  for (int round = 0; round < kRounds; ++round) {
    VramTracker tracker;
    tracker.record_allocation(pointer(1, 1), kBaseline, VramPurpose::IntermediateBuffers);
    std::atomic<bool> stripe_given_back{false};
    std::atomic<bool> stripe_taken{false};
    std::thread leaving([&] {
      thread_local AtThreadExit at_exit;
      at_exit.work = [&] {
        stripe_given_back.store(true);
        while (!stripe_taken.load()) std::this_thread::yield();
        for (std::uintptr_t i = 1; i <= kOperations; ++i) {
          tracker.record_allocation(pointer(3, i), kLate, VramPurpose::KVCache);
          tracker.record_deallocation(pointer(3, i));
        }
        tracker.record_deallocation(pointer(2, 1));
      };
      tracker.record_allocation(pointer(2, 1), kLeaving, VramPurpose::KVCache);
    });
    std::thread taker([&] {
      while (!stripe_given_back.load()) std::this_thread::yield();
      // The stripe free most recently: the leaving thread's.
      tracker.record_allocation(pointer(4, 1), kTaker, VramPurpose::ModelWeights);
      stripe_taken.store(true);
      for (std::uintptr_t i = 2; i <= kOperations + 1; ++i) {
        tracker.record_allocation(pointer(4, i), kTaker, VramPurpose::ModelWeights);
        tracker.record_deallocation(pointer(4, i));
      }
    });
    leaving.join();
    taker.join();
    const VramTracker::Snapshot snapshot = tracker.consistent_snapshot();
    const UsageStats& usage = snapshot.usage;
    std::uint64_t recorded = 0;
    for (const auto& r : snapshot.records) recorded += r.bytes;
    ASSERT_EQ(usage.total_bytes, kBaseline + kTaker) << "round " << round;
    ASSERT_EQ(recorded, usage.total_bytes) << "round " << round;
    ASSERT_EQ(usage.allocation_count, 2u) << "round " << round;
    ASSERT_EQ(usage.lifetime_allocations, 3 + 2 * kOperations) << "round " << round;
    ASSERT_EQ(usage.purpose_bytes[static_cast<int>(VramPurpose::KVCache)], 0u) << "round " << round;
    ASSERT_EQ(usage.purpose_count[static_cast<int>(VramPurpose::KVCache)], 0u) << "round " << round;
    ASSERT_EQ(usage.purpose_bytes[static_cast<int>(VramPurpose::ModelWeights)], kTaker)
        << "round " << round;
    ASSERT_EQ(usage.purpose_count[static_cast<int>(VramPurpose::ModelWeights)], 1u)
        << "round " << round;
  }
}
