// DeviceMemory (M1, M3) through the product: allocation made by vramguard, observed by the test.
#include "vramguard/device_memory.hpp"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <numeric>
#include <thread>
#include <vector>

#include "gpu_gate.hpp"
#include "vramguard/error.hpp"
#include "vramguard/residency_check.hpp"

using namespace vramguard;

namespace {
constexpr std::size_t kMiB = 1ull << 20;
constexpr std::size_t kGiB = 1ull << 30;
}  // namespace

TEST(DeviceMemory, AllocationIsRecordedAndFreedOnDestruction) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  {
    DeviceMemory weights(kGiB, &tracker, VramPurpose::ModelWeights, "model");
    EXPECT_NE(weights.get(), nullptr);
    EXPECT_EQ(tracker.total_usage(), kGiB);
    EXPECT_EQ(tracker.allocation_count(), 1u);
    EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::ModelWeights), kGiB);
  }
  EXPECT_EQ(tracker.total_usage(), 0u);
  EXPECT_EQ(tracker.allocation_count(), 0u);
}

TEST(DeviceMemory, UsageByPurposeFromRealAllocations) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory weights(kGiB, &tracker, VramPurpose::ModelWeights);
  DeviceMemory kv(512 * kMiB, &tracker, VramPurpose::KVCache);
  DeviceMemory buffers(256 * kMiB, &tracker, VramPurpose::IntermediateBuffers);
  EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::ModelWeights), kGiB);
  EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::KVCache), 512 * kMiB);
  EXPECT_EQ(tracker.usage_by_purpose(VramPurpose::IntermediateBuffers), 256 * kMiB);
  EXPECT_EQ(tracker.allocation_count(), 3u);
}

TEST(DeviceMemory, DriverFreeMemoryDropsAndRecovers) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  const auto before = memory_info(0).free_bytes;
  {
    DeviceMemory block(64 * kMiB, &tracker, VramPurpose::KVCache);
    EXPECT_GE(before - memory_info(0).free_bytes, 64 * kMiB);
  }
  EXPECT_EQ(memory_info(0).free_bytes, before);
}

TEST(DeviceMemory, MoveTransfersOwnership) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory a(kMiB, &tracker, VramPurpose::KVCache);
  void* ptr = a.get();
  DeviceMemory b(std::move(a));
  EXPECT_EQ(a.get(), nullptr);
  EXPECT_EQ(b.get(), ptr);
  DeviceMemory c(kMiB, &tracker, VramPurpose::KVCache);
  c = std::move(b);  // frees c's first block
  EXPECT_EQ(c.get(), ptr);
  EXPECT_EQ(tracker.allocation_count(), 1u);
  EXPECT_EQ(tracker.total_usage(), kMiB);
}

TEST(DeviceMemory, RoundTripsBytesForEveryKind) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  MemoryPool pool(0);
  std::vector<unsigned char> data(3 * kMiB + 17);
  std::iota(data.begin(), data.end(), static_cast<unsigned char>(7));
  for (auto kind : {AllocationKind::Device, AllocationKind::Pool, AllocationKind::Managed,
                    AllocationKind::PinnedHost}) {
    DeviceMemory memory(data.size(), &tracker, VramPurpose::IntermediateBuffers, "round trip", kind,
                        &pool);
    memory.copy_from_host(data.data(), data.size());
    std::vector<unsigned char> back(data.size(), 0);
    memory.copy_to_host(back.data(), back.size());
    EXPECT_EQ(back, data) << to_string(kind);
    std::vector<unsigned char> tail(17, 0);
    memory.copy_to_host(tail.data(), tail.size(), data.size() - 17);
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), data.end() - 17)) << to_string(kind);
  }
  EXPECT_EQ(tracker.allocation_count(), 0u);
}

TEST(DeviceMemory, CopyOutOfRangeIsRejected) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory memory(1024, &tracker, VramPurpose::KVCache);
  std::vector<char> host(2048);
  try {
    memory.copy_from_host(host.data(), 1000, 100);
    FAIL() << "expected an out-of-range error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), VG_ERR_OUT_OF_RANGE);
  }
}

TEST(DeviceMemory, ZeroBytesRejectedBeforeTouchingTheDevice) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  try {
    DeviceMemory memory(0, &tracker, VramPurpose::KVCache);
    FAIL() << "expected an invalid-size error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), VG_ERR_INVALID_SIZE);
  }
  EXPECT_EQ(tracker.usage().lifetime_allocations, 0u);
}

TEST(DeviceMemory, DeviceOutOfMemoryIsReportedAndCleared) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  try {
    DeviceMemory huge(1ull << 40, &tracker, VramPurpose::KVCache, "1 TiB");
    FAIL() << "1 TiB should not fit";
  } catch (const CudaError& e) {
    EXPECT_EQ(e.status(), VG_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(e.cuda_name(), "cudaErrorMemoryAllocation");
    EXPECT_NE(std::string(e.what()).find("cudaMalloc"), std::string::npos);
  }
  EXPECT_EQ(tracker.allocation_count(), 0u);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the sticky error was cleared
  DeviceMemory next(kMiB, &tracker, VramPurpose::KVCache);
  EXPECT_EQ(tracker.total_usage(), kMiB);
}

TEST(DeviceMemory, ConcurrentAllocationsFromTenThreads) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  std::vector<std::thread> threads;
  for (int t = 0; t < 10; ++t) {
    threads.emplace_back([&tracker, t] {
      std::vector<DeviceMemory> held;
      for (int i = 0; i < 20; ++i)
        held.emplace_back((t + 1) * kMiB, &tracker, VramPurpose::KVCache);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(tracker.total_usage(), 0u);
  EXPECT_EQ(tracker.usage().lifetime_allocations, 200u);
  EXPECT_EQ(tracker.usage().peak_total_bytes <= 20 * 55 * kMiB, true);
}

TEST(DeviceMemory, SurvivesLoadUnloadCycles) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  for (int cycle = 0; cycle < 20; ++cycle) {
    DeviceMemory weights(16 * kMiB, &tracker, VramPurpose::ModelWeights);
    DeviceMemory kv(8 * kMiB, &tracker, VramPurpose::KVCache);
    ASSERT_EQ(tracker.total_usage(), 24 * kMiB);
  }
  EXPECT_EQ(tracker.total_usage(), 0u);
  EXPECT_EQ(tracker.usage().lifetime_allocations, 40u);
}

TEST(DeviceMemory, NoGpuGivesNoDeviceError) {
  if (vramguard::testing::gpu_available())
    GTEST_SKIP() << "checks the no-GPU error path; this host has a GPU";
  VramTracker tracker;
  try {
    DeviceMemory memory(kMiB, &tracker, VramPurpose::KVCache);
    FAIL() << "allocation without a GPU must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), VG_ERR_NO_DEVICE);
  }
  EXPECT_EQ(tracker.allocation_count(), 0u);
}
