// What vramguard does when the GPU is made busy or broken on purpose, through the fault-injection
// library (faults.h): the checksum's deadline (R2) and the weights load's while every SM is held,
// the sticky status after a kernel has corrupted the context (R3), and the memory pool's
// destructor waiting for its own device. Also the library itself.
//
// Not for compute-sanitizer: memcheck rightly reports the out-of-bounds write, and a tool that
// serialises kernel launches leaves nothing for a deadline to catch. Run this suite plainly.
#include "faults.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "driver_probe.hpp"
#include "gpu_gate.hpp"
#include "vramguard.h"
#include "vramguard/checksum.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/error.hpp"
#include "vramguard/memory_pool.hpp"
#include "weights_file.hpp"

using namespace vramguard;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr std::size_t kMiB = 1ull << 20;

long long milliseconds_since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  (void)cudaGetLastError();
  return count;
}

}  // namespace

// --- The library ------------------------------------------------------------------------------

TEST(FaultLibrary, SpinReturnsAtOnceAndHoldsTheGpuForItsTime) {
  VG_REQUIRE_GPU();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const Clock::time_point start = Clock::now();
  ASSERT_EQ(vg_test_spin_all_sms(0, 1000), 0);
  EXPECT_LT(milliseconds_since(start), 500) << "the launch waited for the kernel";
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaErrorNotReady);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_GE(milliseconds_since(start), 950);
  EXPECT_LT(milliseconds_since(start), 5000);
}

// --- R2: a checksum never waits past its deadline -------------------------------------------

TEST(ChecksumDeadline, TimesOutWhileEverySmIsHeldAndRecoversAfterwards) {
  VG_REQUIRE_GPU();
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  const std::size_t n = 4 * kMiB + 3;
  std::vector<unsigned char> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<unsigned char>(i * 131 + 7);
  const Checksum expected = host_checksum(data.data(), n);
  void* ptr = nullptr;
  ASSERT_EQ(vg_alloc(tracker, n, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "weights", &ptr), VG_OK)
      << vg_last_error();
  ASSERT_EQ(vg_copy_to_device(tracker, ptr, 0, data.data(), n), VG_OK);
  vg_checksum out{};
  ASSERT_EQ(vg_checksum_device(tracker, ptr, 0, n, &out), VG_OK) << vg_last_error();
  ASSERT_EQ(out.lo, expected.lo);

  constexpr unsigned kHoldMs = 4000;
  const Clock::time_point held_since = Clock::now();
  ASSERT_EQ(vg_test_spin_all_sms(0, kHoldMs), 0);
  std::this_thread::sleep_for(milliseconds(50));  // every block of the spin is resident by now

  Clock::time_point start = Clock::now();
  EXPECT_EQ(vg_checksum_device_within(tracker, ptr, 0, n, 300, &out), VG_ERR_TIMEOUT);
  const long long waited = milliseconds_since(start);
  EXPECT_GE(waited, 300);
  EXPECT_LT(waited, 1500) << "the deadline was overrun";
  EXPECT_NE(std::string(vg_last_error()).find("did not finish within 300 ms"), std::string::npos)
      << vg_last_error();

  // Later checksums do not wait for the abandoned one, nor reuse its slot: more of them than
  // there are slots, each with a short deadline, all time out on time.
  for (int i = 0; i < 70; ++i) {
    start = Clock::now();
    ASSERT_EQ(vg_checksum_device_within(tracker, ptr, 0, n, 5, &out), VG_ERR_TIMEOUT) << i;
    ASSERT_LT(milliseconds_since(start), 500) << "checksum " << i << " overran its deadline";
  }
  EXPECT_NE(std::string(vg_last_error()).find("slots"), std::string::npos)
      << "with every slot abandoned, the slot wait itself should time out: " << vg_last_error();
  try {
    (void)device_checksum(ptr, n, 0, milliseconds(50));
    ADD_FAILURE() << "the C++ API did not time out";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), VG_ERR_TIMEOUT) << e.what();
  }
  ASSERT_LT(milliseconds_since(held_since), kHoldMs - 500) << "the spin ended too early to tell";
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaErrorNotReady) << "the GPU should still be held";

  // The spin ends, the abandoned kernels run; their slots come back and every checksum is right.
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (int i = 0; i < 100; ++i) {
    out = vg_checksum{};
    ASSERT_EQ(vg_checksum_device_within(tracker, ptr, 0, n, 10'000, &out), VG_OK)
        << i << ": " << vg_last_error();
    ASSERT_EQ(out.lo, expected.lo) << i;
    ASSERT_EQ(out.hi, expected.hi) << i;
  }
  EXPECT_EQ(vg_free(tracker, ptr), VG_OK);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
}

// --- R3: after a kernel corrupts the context, every call says so ------------------------------

namespace {

// Runs in a child process (the context is lost for good). 0 when every expectation held; each
// failure is written to stderr.
int sticky_scenario() {
  int failures = 0;
  const auto expect = [&](bool held, const std::string& what) {
    if (!held) {
      std::fprintf(stderr, "sticky scenario: FAILED: %s\n", what.c_str());
      ++failures;
    }
  };
  const auto expect_sticky = [&](vg_status status, const char* call) {
    expect(status == VG_ERR_CUDA_STICKY,
           std::string(call) + " returned " + vg_status_name(status) + ": " + vg_last_error());
  };
  vg_tracker* tracker = nullptr;
  expect(vg_tracker_create(0, &tracker) == VG_OK, "vg_tracker_create");
  void* ptr = nullptr;
  void* pooled = nullptr;
  expect(vg_alloc(tracker, kMiB, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "w", &ptr) == VG_OK,
         "vg_alloc before the fault");
  expect(vg_alloc(tracker, kMiB, VG_PURPOSE_KV_CACHE, VG_KIND_POOL, "kv", &pooled) == VG_OK,
         "vg_alloc(Pool) before the fault");

  const int fault = vg_test_fault_out_of_bounds(0);
  std::fprintf(stderr, "sticky scenario: the out-of-bounds kernel gave %s (%d)\n",
               cudaGetErrorName(static_cast<cudaError_t>(fault)), fault);
  expect(is_sticky_cuda_error(fault), "the fault is not a sticky error");

  std::vector<unsigned char> data(kMiB, 1);
  void* more = nullptr;
  expect_sticky(vg_alloc(tracker, kMiB, VG_PURPOSE_KV_CACHE, VG_KIND_DEVICE, nullptr, &more),
                "vg_alloc");
  expect(std::string(vg_last_error()).find(cudaGetErrorName(static_cast<cudaError_t>(fault))) !=
             std::string::npos,
         std::string("vg_last_error names the CUDA error: ") + vg_last_error());
  expect_sticky(vg_alloc(tracker, kMiB, VG_PURPOSE_KV_CACHE, VG_KIND_POOL, nullptr, &more),
                "vg_alloc(Pool)");
  expect_sticky(vg_copy_to_device(tracker, ptr, 0, data.data(), kMiB), "vg_copy_to_device");
  expect_sticky(vg_copy_to_host(tracker, data.data(), ptr, 0, kMiB), "vg_copy_to_host");
  vg_checksum checksum{};
  expect_sticky(vg_checksum_device(tracker, ptr, 0, kMiB, &checksum), "vg_checksum_device");
  vg_residency residency{};
  expect_sticky(vg_verify(tracker, VG_PURPOSE_MASK_ALL, &residency, nullptr, 0), "vg_verify");
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  expect_sticky(vg_memory_info(0, &free_bytes, &total_bytes), "vg_memory_info");
  expect_sticky(vg_free(tracker, ptr), "vg_free");
  try {
    VramTracker cpp_tracker(0);
    DeviceMemory memory(kMiB, &cpp_tracker, VramPurpose::KVCache);
    expect(false, "DeviceMemory was allocated on a lost context");
  } catch (const CudaError& e) {
    expect(e.is_sticky(), std::string("CudaError::is_sticky() for ") + e.what());
  } catch (const Error& e) {
    expect(false, std::string("an Error that is not a CudaError: ") + e.what());
  }
  // Tearing down never throws and never hangs, whatever CUDA says.
  expect(vg_tracker_destroy(tracker) == VG_OK, "vg_tracker_destroy");
  if (failures == 0) std::fprintf(stderr, "sticky scenario: every expectation held\n");
  std::fflush(stderr);
  return failures == 0 ? 0 : 1;
}

}  // namespace

TEST(StickyError, AfterAnOutOfBoundsKernelEveryCallIsSticky) {
  VG_REQUIRE_GPU();
  // "threadsafe": the child re-executes this binary for this test alone, so it starts with a
  // fresh CUDA state and its lost context dies with it.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(sticky_scenario()), ::testing::ExitedWithCode(0),
              "sticky scenario: every expectation held");
}

// --- MemoryPool's destructor synchronises its own device -------------------------------------

TEST(MemoryPoolDestruction, WaitsForItsDevicesFreesAndLeavesAFreshThreadWithoutAContext) {
  VG_REQUIRE_GPU();
  ASSERT_TRUE(vramguard::testing::driver_probe().ok);
  VramTracker tracker(0);
  auto pool = std::make_unique<MemoryPool>(0);
  {
    DeviceMemory memory(kMiB, &tracker, VramPurpose::KVCache, "kv", AllocationKind::Pool,
                        pool.get());
    ASSERT_EQ(vg_test_spin_all_sms(0, 500), 0);  // this thread is now on GPU 0
  }  // freed with cudaFreeAsync on GPU 0's legacy stream, behind the spin
  std::thread fresh([&] {
    ASSERT_EQ(vramguard::testing::current_context(), nullptr);
    pool.reset();
    EXPECT_EQ(vramguard::testing::current_context(), nullptr)
        << "~MemoryPool left a context current on a thread that had none";
  });
  fresh.join();
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaSuccess)
      << "~MemoryPool returned before the frees queued on its device were done";
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(MemoryPoolDestruction, MultiGpuSynchronisesThePoolsDeviceNotTheCallers) {
  VG_REQUIRE_GPU();
  if (device_count() < 2) GTEST_SKIP() << "needs 2 GPUs (" << device_count() << " visible)";
  VramTracker tracker(1);
  auto pool = std::make_unique<MemoryPool>(1);
  {
    DeviceMemory memory(kMiB, &tracker, VramPurpose::KVCache, "kv", AllocationKind::Pool,
                        pool.get());
    ASSERT_EQ(vg_test_spin_all_sms(1, 1000), 0);  // this thread is now on GPU 1
  }                                               // freed on GPU 1's legacy stream, behind the spin
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  pool.reset();  // from a thread on GPU 0
  ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaSuccess)
      << "~MemoryPool synchronised the caller's device, not the pool's";
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// --- A weights load never waits past its deadline, and leaves nothing to write freed memory -----

namespace {

// Runs in a child process (a held GPU, and staging left to the process on purpose). 0 when every
// expectation held; each failure is written to stderr.
int load_deadline_scenario() {
  int failures = 0;
  const auto expect = [&](bool held, const std::string& what) {
    if (!held) {
      std::fprintf(stderr, "load deadline scenario: FAILED: %s\n", what.c_str());
      ++failures;
    }
  };
  const auto named = [](vg_status status) {
    return std::string(vg_status_name(status)) + ": " + vg_last_error();
  };
  constexpr unsigned kHoldMs = 8000;
  constexpr long long kMarginMs = 1000;  // scheduling, and one chunk read past the deadline
  const std::size_t bytes = 32 * kMiB;
  std::vector<unsigned char> data(bytes);
  for (std::size_t i = 0; i < bytes; ++i) data[i] = static_cast<unsigned char>(i * 7 + 1);
  const WeightsFile file(data);
  const vg_weights_file spec = file.spec();
  const vg_weights_copy copy{0, 0, bytes, 0};

  vg_tracker* tracker = nullptr;
  expect(vg_tracker_create(0, &tracker) == VG_OK, "vg_tracker_create");
  vg_loader_options options{};
  options.staging_bytes = 8 * kMiB;  // 4 readers x 2 slots x 1 MiB: most chunks wait for a slot
  options.readers = 4;
  vg_loader* loader = nullptr;
  vg_loader* doomed = nullptr;  // destroyed while its work is left running
  expect(vg_loader_create(0, &options, &loader) == VG_OK, "vg_loader_create");
  expect(vg_loader_create(0, &options, &doomed) == VG_OK, "vg_loader_create (second)");
  void* image = nullptr;
  void* doomed_image = nullptr;
  expect(vg_alloc(tracker, bytes, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_POOL, "w", &image) == VG_OK,
         "vg_alloc(Pool)");
  expect(vg_alloc(tracker, bytes, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "d", &doomed_image) ==
             VG_OK,
         "vg_alloc(Device)");
  vg_load_result result{};
  const vg_status warm = vg_load_weights(loader, tracker, image, bytes, &spec, 1, &copy, 1,
                                         VG_LOAD_VERIFY, nullptr, &result);
  expect(warm == VG_OK, "a load before the GPU is held: " + named(warm));
  const auto idle = [](vg_loader* of) {
    int32_t value = -1;
    return vg_loader_idle(of, &value) == VG_OK ? value : -1;
  };
  expect(idle(loader) == 1, "the loader is idle after a load");

  expect(vg_test_spin_all_sms(0, kHoldMs) == 0, "vg_test_spin_all_sms");
  std::this_thread::sleep_for(milliseconds(50));  // every block of the spin is resident by now
  const Clock::time_point held_since = Clock::now();

  // The load waits for nothing past its deadline; its work is left running, and said so.
  Clock::time_point start = Clock::now();
  vg_status status = vg_load_weights_within(loader, tracker, image, bytes, &spec, 1, &copy, 1,
                                            VG_LOAD_VERIFY, nullptr, 500, &result);
  long long waited = milliseconds_since(start);
  expect(status == VG_ERR_TIMEOUT, "a load on a held GPU: " + named(status));
  expect(waited >= 500 && waited < 500 + kMarginMs,
         "the load returned after " + std::to_string(waited) + " ms, its deadline 500 ms");
  expect(idle(loader) == 0, "the timed-out load's work is not reported as left running");

  // The next load must not refill staging the left work still copies out of: it waits for that
  // work, and not past its own deadline either.
  start = Clock::now();
  status = vg_load_weights_within(loader, tracker, image, bytes, &spec, 1, &copy, 1, VG_LOAD_VERIFY,
                                  nullptr, 200, &result);
  waited = milliseconds_since(start);
  expect(status == VG_ERR_TIMEOUT, "a second load on the held GPU: " + named(status));
  expect(std::string(vg_last_error()).find("earlier load") != std::string::npos,
         std::string("the second load does not say it waited for the first: ") + vg_last_error());
  expect(waited >= 200 && waited < 200 + kMarginMs,
         "the second load returned after " + std::to_string(waited) + " ms, its deadline 200 ms");

  // A loader destroyed with its work left running does not wait for it.
  status = vg_load_weights_within(doomed, tracker, doomed_image, bytes, &spec, 1, &copy, 1,
                                  VG_LOAD_VERIFY, nullptr, 200, &result);
  expect(status == VG_ERR_TIMEOUT, "the second loader's load: " + named(status));
  start = Clock::now();
  expect(vg_loader_destroy(doomed) == VG_OK, "vg_loader_destroy");
  waited = milliseconds_since(start);
  expect(waited < 300, "vg_loader_destroy waited " + std::to_string(waited) + " ms for the GPU");
  expect(milliseconds_since(held_since) < kHoldMs - 2000, "the spin ended too early to tell");
  expect(cudaStreamQuery(cudaStreamLegacy) == cudaErrorNotReady, "the GPU should still be held");

  // The Pool image freed at once: its block is handed out again only after the left work, so
  // what the next owner writes there stays (this copy waits for the spin, then for that work).
  expect(vg_free(tracker, image) == VG_OK, "vg_free(Pool) after the timeout");
  void* next = nullptr;
  expect(vg_alloc(tracker, bytes, VG_PURPOSE_KV_CACHE, VG_KIND_POOL, "next", &next) == VG_OK,
         "vg_alloc(Pool) again");
  if (next != image) {
    std::fprintf(stderr,
                 "load deadline scenario: the pool handed out another block (%p, not %p): "
                 "the check below shows less\n",
                 next, image);
  }
  const std::vector<unsigned char> marker(bytes, 0x5A);
  expect(vg_copy_to_device(tracker, next, 0, marker.data(), bytes) == VG_OK, "vg_copy_to_device");
  std::vector<unsigned char> back(bytes);
  expect(vg_copy_to_host(tracker, back.data(), next, 0, bytes) == VG_OK, "vg_copy_to_host");
  expect(back == marker, "the timed-out load's work wrote the block after it was handed out again");

  // Once the GPU is free the left work ends, the loader says so, and it loads again.
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(30);
  while (idle(loader) == 0 && Clock::now() < give_up) std::this_thread::sleep_for(milliseconds(10));
  expect(idle(loader) == 1, "the loader never became idle after the GPU was free");
  status = vg_load_weights(loader, tracker, next, bytes, &spec, 1, &copy, 1, VG_LOAD_VERIFY,
                           nullptr, &result);
  expect(status == VG_OK, "a load after the GPU was free: " + named(status));
  expect(vg_copy_to_host(tracker, back.data(), next, 0, bytes) == VG_OK && back == data,
         "the image after the GPU was free is not the file");

  expect(cudaDeviceSynchronize() == cudaSuccess, "cudaDeviceSynchronize");
  expect(vg_free(tracker, next) == VG_OK, "vg_free");
  expect(vg_free(tracker, doomed_image) == VG_OK, "vg_free(Device)");
  expect(vg_loader_destroy(loader) == VG_OK, "vg_loader_destroy");
  expect(vg_tracker_destroy(tracker) == VG_OK, "vg_tracker_destroy");
  if (failures == 0) std::fprintf(stderr, "load deadline scenario: every expectation held\n");
  std::fflush(stderr);
  return failures == 0 ? 0 : 1;
}

}  // namespace

TEST(LoadDeadline, AHeldGpuFailsTheLoadOnTimeAndItsWorkNeverWritesFreedMemory) {
  VG_REQUIRE_GPU();
  // A child process: its loader's staging is left to the process on purpose, and the GPU is held.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(load_deadline_scenario()), ::testing::ExitedWithCode(0),
              "load deadline scenario: every expectation held");
}
