// The residency check (H1-H3) on memory the product allocated: device memory is resident; the
// RAM-fallback kinds (Managed, PinnedHost) are detected as violations.
#include "vramguard/residency_check.hpp"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "gpu_gate.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/error.hpp"

using namespace vramguard;

namespace {
constexpr std::size_t kMiB = 1ull << 20;
}

TEST(ResidencyCheck, DevicePointerIsResident) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory memory(kMiB, &tracker, VramPurpose::ModelWeights);
  EXPECT_TRUE(ResidencyCheck::check_pointer_residency(memory.get()));
  const auto observed = ResidencyCheck::inspect_pointer(memory.get(), 0);
  EXPECT_EQ(observed.type, MemoryType::Device);
  EXPECT_FALSE(observed.has_host_pointer);
  // An interior pointer of the block is device memory too.
  EXPECT_TRUE(ResidencyCheck::check_pointer_residency(static_cast<char*>(memory.get()) + 4096, 0));
}

TEST(ResidencyCheck, PoolPointerIsResident) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  MemoryPool pool(0);
  DeviceMemory memory(kMiB, &tracker, VramPurpose::KVCache, "pool", AllocationKind::Pool, &pool);
  EXPECT_TRUE(ResidencyCheck::check_pointer_residency(memory.get(), 0));
}

TEST(ResidencyCheck, PinnedHostPointerIsNotResident) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory memory(kMiB, &tracker, VramPurpose::ModelWeights, "pinned",
                      AllocationKind::PinnedHost);
  const auto observed = ResidencyCheck::inspect_pointer(memory.get(), 0);
  EXPECT_FALSE(observed.resident);
  EXPECT_EQ(observed.type, MemoryType::Host);
  EXPECT_EQ(observed.reason, ViolationReason::NotDeviceMemory);
}

TEST(ResidencyCheck, PageableHostAndNullPointersAreNotResident) {
  VG_REQUIRE_GPU();
  auto pageable = std::make_unique<char[]>(4096);
  int on_stack = 0;
  EXPECT_FALSE(ResidencyCheck::check_pointer_residency(pageable.get(), 0));
  EXPECT_FALSE(ResidencyCheck::check_pointer_residency(&on_stack, 0));
  EXPECT_FALSE(ResidencyCheck::check_pointer_residency(nullptr, 0));
  EXPECT_EQ(ResidencyCheck::inspect_pointer(pageable.get(), 0).type, MemoryType::Unregistered);
}

TEST(ResidencyCheck, ManagedMemoryIsDetectedAsFallback) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory weights(kMiB, &tracker, VramPurpose::ModelWeights, "real weights");
  DeviceMemory fallback(kMiB, &tracker, VramPurpose::ModelWeights, "fallen back",
                        AllocationKind::Managed);
  const auto report = ResidencyCheck::check_residency(tracker);
  EXPECT_FALSE(report.resident);
  EXPECT_EQ(report.checked, 2u);
  ASSERT_EQ(report.violations.size(), 1u);
  EXPECT_EQ(report.violations[0].allocation.description, "fallen back");
  EXPECT_EQ(report.violations[0].allocation.kind, AllocationKind::Managed);
  EXPECT_EQ(report.violations[0].observed.type, MemoryType::Managed);
  EXPECT_FALSE(ResidencyCheck::check_vram_residency(tracker));
}

TEST(ResidencyCheck, AllDeviceAllocationsAreResident) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  MemoryPool pool(0);
  DeviceMemory weights(8 * kMiB, &tracker, VramPurpose::ModelWeights);
  DeviceMemory kv(4 * kMiB, &tracker, VramPurpose::KVCache, "kv", AllocationKind::Pool, &pool);
  const auto report = ResidencyCheck::check_residency(tracker);
  EXPECT_TRUE(report.resident);
  EXPECT_EQ(report.checked, 2u);
  EXPECT_EQ(report.tracked_bytes, 12 * kMiB);
}

TEST(ResidencyCheck, PurposeMaskLimitsTheCheck) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory staging(kMiB, &tracker, VramPurpose::IntermediateBuffers, "staging",
                       AllocationKind::PinnedHost);
  EXPECT_TRUE(
      ResidencyCheck::check_residency(tracker, purpose_bit(VramPurpose::ModelWeights)).resident);
  EXPECT_FALSE(ResidencyCheck::check_residency(tracker).resident);
}

TEST(ResidencyCheck, DeviceUsedVramIsPositive) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory memory(64 * kMiB, &tracker, VramPurpose::ModelWeights);
  EXPECT_GE(ResidencyCheck::device_used_bytes(0), 64 * kMiB);
}

TEST(ResidencyCheck, ReportNamesEachViolation) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  DeviceMemory ok(kMiB, &tracker, VramPurpose::ModelWeights, "resident weights");
  DeviceMemory bad(kMiB, &tracker, VramPurpose::ModelWeights, "pinned weights",
                   AllocationKind::PinnedHost);
  const std::string report = ResidencyCheck::residency_report(tracker);
  EXPECT_NE(report.find("Status: VIOLATION"), std::string::npos) << report;
  EXPECT_NE(report.find("\"pinned weights\""), std::string::npos) << report;
  EXPECT_NE(report.find("kind PinnedHost"), std::string::npos) << report;
  EXPECT_EQ(report.find("\"resident weights\""), std::string::npos) << report;
  EXPECT_NE(report.find("Device VRAM used:"), std::string::npos);
}

TEST(ResidencyCheck, AdoptedForeignDevicePointerIsChecked) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  // The "framework" here is another tracker's DeviceMemory: a pointer vramguard did not make for
  // this tracker, adopted with a purpose (T7).
  VramTracker framework;
  DeviceMemory tensor(kMiB, &framework, VramPurpose::Unknown);
  tracker.adopt(tensor.get(), kMiB, VramPurpose::ModelWeights, "adopted tensor");
  EXPECT_TRUE(ResidencyCheck::check_residency(tracker).resident);
  tracker.record_deallocation(tensor.get());
}

TEST(ResidencyCheck, NoGpuCheckIsAnErrorNotAPass) {
  if (vramguard::testing::gpu_available())
    GTEST_SKIP() << "checks the no-GPU error path; this host has a GPU";
  VramTracker tracker;
  try {
    (void)ResidencyCheck::check_residency(tracker);
    FAIL() << "a residency check without a GPU must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), VG_ERR_NO_DEVICE);
  }
}
