// VramTracker accounting (T1-T7). Pure bookkeeping: runs without a GPU. Addresses are synthetic
// because the tracker never dereferences them; allocation through the device is in
// device_memory_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "vramguard/error.hpp"
#include "vramguard/tracker.hpp"

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
  EXPECT_EQ(status_of([&] { tracker.record_allocation(address(2), 8, VramPurpose::Unknown, long_text); }),
            VG_ERR_DESCRIPTION_TOO_LONG);
  EXPECT_EQ(status_of([&] { tracker.record_allocation(address(3), 8, static_cast<VramPurpose>(7)); }),
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
  EXPECT_NE(report.find("Total: 1.50 GiB (1610612736 bytes) in 2 allocation(s)"), std::string::npos) << report;
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
