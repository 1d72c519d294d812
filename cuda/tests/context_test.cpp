// R4: every vramguard call leaves the calling thread's current CUDA context as it found it, none
// included, and makes no context on a GPU the caller does not work on. Observed through the
// driver (cuCtxGetCurrent, cuDevicePrimaryCtxGetState), reached through the runtime.
//
// This binary has its own main: with --vramguard-fresh-process-probe DEVICE it does not run the
// tests but checks, in a process that has touched no GPU yet, that a thread working on DEVICE
// only leaves no primary context on any other GPU (the multi-GPU test below runs it that way).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "driver_probe.hpp"
#include "gpu_gate.hpp"
#include "vramguard.h"
#include "vramguard/checksum.hpp"
#include "vramguard/device.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/error.hpp"
#include "vramguard/memory_pool.hpp"
#include "vramguard/residency_check.hpp"

extern char** environ;

namespace {

using vramguard::testing::current_context;
using vramguard::testing::driver_probe;
using vramguard::testing::primary_context_active;

constexpr std::size_t kMiB = 1ull << 20;
constexpr const char* kProbeFlag = "--vramguard-fresh-process-probe";

// Where a failure goes: ADD_FAILURE in a test, stderr in the probe process.
using Report = std::function<void(const std::string&)>;

// Every kind of vramguard operation for `device`, through the C ABI and the C++ API, each
// followed by the check that the thread's current context is still `expected`. Stops at the
// first failing operation; returns whether everything held.
bool exercise(int device, CUcontext expected, const Report& report) {
  bool held = true;
  const auto still = [&](const std::string& what) {
    const CUcontext now = current_context();
    if (now != expected) {
      held = false;
      report(what + " changed the thread's current context (GPU" + std::to_string(device) + ")");
    }
  };
  const auto ok = [&](vg_status status, const std::string& what) {
    if (status == VG_OK) return true;
    report(what + " failed: " + vg_status_name(status) + ": " + vg_last_error());
    return false;
  };

  std::vector<unsigned char> data(kMiB);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 13 + 1);
  std::vector<unsigned char> back(kMiB);

  // The C ABI.
  vg_tracker* tracker = nullptr;
  if (!ok(vg_tracker_create(device, &tracker), "vg_tracker_create")) return false;
  still("vg_tracker_create");
  void* plain = nullptr;
  void* pooled = nullptr;
  if (!ok(vg_alloc(tracker, kMiB, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "w", &plain),
          "vg_alloc(Device)")) {
    return false;
  }
  still("vg_alloc(Device)");
  if (!ok(vg_alloc(tracker, kMiB, VG_PURPOSE_KV_CACHE, VG_KIND_POOL, "kv", &pooled),
          "vg_alloc(Pool)")) {
    return false;
  }
  still("vg_alloc(Pool), which made the tracker's pool");
  if (!ok(vg_copy_to_device(tracker, plain, 0, data.data(), kMiB), "vg_copy_to_device"))
    return false;
  still("vg_copy_to_device");
  if (!ok(vg_copy_to_device(tracker, pooled, 0, data.data(), kMiB), "vg_copy_to_device(Pool)")) {
    return false;
  }
  still("vg_copy_to_device(Pool)");
  if (!ok(vg_copy_to_host(tracker, back.data(), plain, 0, kMiB), "vg_copy_to_host")) return false;
  still("vg_copy_to_host");
  vg_checksum checksum{};
  if (!ok(vg_checksum_device(tracker, plain, 0, kMiB, &checksum), "vg_checksum_device"))
    return false;
  still("vg_checksum_device");
  if (!ok(vg_checksum_device_within(tracker, pooled, 1, kMiB - 1, 10'000, &checksum),
          "vg_checksum_device_within")) {
    return false;
  }
  still("vg_checksum_device_within");
  vg_read_witness* witness = nullptr;
  if (!ok(vg_read_witness_create(device, kMiB, &witness), "vg_read_witness_create")) return false;
  still("vg_read_witness_create (stream, control buffer, warm-up reading)");
  vg_read_bandwidth reading{};
  if (!ok(vg_read_witness_measure(witness, tracker, plain, 0, kMiB, 4 * kMiB, 10'000, &reading),
          "vg_read_witness_measure")) {
    return false;
  }
  still("vg_read_witness_measure");
  vg_bracketed_reading window{};
  if (!ok(vg_read_witness_measure_bracketed(witness, tracker, plain, 0, kMiB, 4 * kMiB, 10'000,
                                            &window),
          "vg_read_witness_measure_bracketed")) {
    return false;
  }
  still("vg_read_witness_measure_bracketed");
  vg_witness_calibration calibration{};
  if (!ok(vg_read_witness_calibrate(witness, 4 * kMiB, 10'000, &calibration),
          "vg_read_witness_calibrate")) {
    return false;
  }
  still("vg_read_witness_calibrate (control buffer and mapped pinned host memory)");
  if (!ok(vg_read_witness_destroy(witness), "vg_read_witness_destroy")) return false;
  still("vg_read_witness_destroy");
  const vg_loader_options loader_options{4 * kMiB, 2};
  vg_loader* loader = nullptr;
  if (!ok(vg_loader_create(device, &loader_options, &loader), "vg_loader_create")) return false;
  still("vg_loader_create (pinned staging, streams)");
  if (!ok(vg_loader_destroy(loader), "vg_loader_destroy")) return false;
  still("vg_loader_destroy");
  vg_residency residency{};
  if (!ok(vg_verify(tracker, VG_PURPOSE_MASK_ALL, &residency, nullptr, 0), "vg_verify"))
    return false;
  still("vg_verify");
  uint64_t needed = 0;
  (void)vg_residency_report(tracker, nullptr, 0, &needed);  // VG_ERR_BUFFER_TOO_SMALL, by design
  still("vg_residency_report");
  vg_pointer_check check{};
  if (!ok(vg_check_pointer(device, plain, &check), "vg_check_pointer")) return false;
  still("vg_check_pointer");
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  if (!ok(vg_memory_info(device, &free_bytes, &total_bytes), "vg_memory_info")) return false;
  still("vg_memory_info");
  vg_device_info info{};
  if (!ok(vg_device_info_get(device, &info), "vg_device_info_get")) return false;
  still("vg_device_info_get");
  if (!ok(vg_free(tracker, plain), "vg_free(Device)")) return false;
  still("vg_free(Device)");
  if (!ok(vg_free(tracker, pooled), "vg_free(Pool)")) return false;
  still("vg_free(Pool)");
  if (!ok(vg_alloc(tracker, kMiB, VG_PURPOSE_KV_CACHE, VG_KIND_POOL, "left", &pooled),
          "vg_alloc(Pool)")) {
    return false;
  }
  if (!ok(vg_tracker_destroy(tracker), "vg_tracker_destroy")) return false;
  still("vg_tracker_destroy, which freed a Pool allocation and destroyed the pool");

  // The C++ API.
  try {
    vramguard::VramTracker cpp_tracker(device);
    {
      vramguard::MemoryPool pool(device);
      still("MemoryPool()");
      vramguard::DeviceMemory memory(kMiB, &cpp_tracker, vramguard::VramPurpose::KVCache, "kv",
                                     vramguard::AllocationKind::Pool, &pool);
      still("DeviceMemory(Pool)");
      memory.copy_from_host(data.data(), kMiB);
      still("DeviceMemory::copy_from_host");
      memory.copy_to_host(back.data(), kMiB);
      still("DeviceMemory::copy_to_host");
      (void)vramguard::device_checksum(memory.get(), kMiB, device);
      still("device_checksum");
      vramguard::read_only_sweep(memory.get(), kMiB, device);
      still("read_only_sweep");
      (void)vramguard::ResidencyCheck::check_residency(cpp_tracker);
      still("ResidencyCheck::check_residency");
      (void)vramguard::ResidencyCheck::inspect_pointer(memory.get(), device);
      still("ResidencyCheck::inspect_pointer");
      (void)vramguard::memory_info(device);
      still("memory_info");
      (void)vramguard::device_info(device);
      still("device_info");
      vramguard::DeviceMemory plain_memory(kMiB, &cpp_tracker, vramguard::VramPurpose::KVCache);
      still("DeviceMemory(Device)");
      memory.reset();
      still("DeviceMemory::reset(Pool)");
    }
    still("~DeviceMemory(Device), ~MemoryPool");
  } catch (const vramguard::Error& e) {
    report(std::string("the C++ API failed: ") + e.what());
    return false;
  }
  return held;
}

Report gtest_report() {
  return [](const std::string& message) { ADD_FAILURE() << message; };
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  (void)cudaGetLastError();
  return count;
}

#define VG_REQUIRE_TWO_GPUS()                                                                  \
  do {                                                                                         \
    VG_REQUIRE_GPU();                                                                          \
    if (device_count() < 2) GTEST_SKIP() << "needs 2 GPUs (" << device_count() << " visible)"; \
  } while (0)

// In a process that has touched no GPU: a fresh thread works on `device`; afterwards no other
// GPU may have a primary context. Exit status 0 when that holds.
int fresh_process_probe(int device) {
  if (!driver_probe().ok) {
    std::fprintf(stderr, "probe: the driver's context functions are not available\n");
    return 3;
  }
  const int count = device_count();
  for (int d = 0; d < count; ++d) {
    if (primary_context_active(d)) {
      std::fprintf(stderr, "probe: GPU%d already has a primary context before any work\n", d);
      return 3;
    }
  }
  bool held = false;
  std::thread worker([&] {
    held = exercise(device, nullptr, [](const std::string& message) {
      std::fprintf(stderr, "probe: %s\n", message.c_str());
    });
  });
  worker.join();
  int result = held ? 0 : 1;
  for (int d = 0; d < count; ++d) {
    const bool active = primary_context_active(d);
    if (d != device && active) {
      std::fprintf(stderr, "probe: work on GPU%d left a primary context on GPU%d\n", device, d);
      result = 1;
    }
    if (d == device && !active) {
      std::fprintf(stderr, "probe: GPU%d has no primary context after working on it\n", d);
      result = 1;
    }
  }
  return result;
}

}  // namespace

TEST(ContextHygiene, FreshThreadIsLeftWithoutAContext) {
  VG_REQUIRE_GPU();
  ASSERT_TRUE(driver_probe().ok);
  for (int device = 0; device < device_count(); ++device) {
    std::thread fresh([device] {
      ASSERT_EQ(current_context(), nullptr) << "a new thread starts without a context";
      EXPECT_TRUE(exercise(device, nullptr, gtest_report())) << "GPU" << device;
    });
    fresh.join();
  }
}

TEST(ContextHygiene, CallersContextOfTheSameDeviceIsKept) {
  VG_REQUIRE_GPU();
  ASSERT_TRUE(driver_probe().ok);
  for (int device = 0; device < device_count(); ++device) {
    std::thread caller([device] {
      ASSERT_EQ(cudaSetDevice(device), cudaSuccess);
      const CUcontext mine = current_context();
      ASSERT_NE(mine, nullptr);
      EXPECT_TRUE(exercise(device, mine, gtest_report())) << "GPU" << device;
    });
    caller.join();
  }
}

TEST(ContextHygiene, MultiGpuCallersContextOfAnotherDeviceIsKept) {
  VG_REQUIRE_TWO_GPUS();
  ASSERT_TRUE(driver_probe().ok);
  std::thread caller([] {
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    const CUcontext gpu0 = current_context();
    ASSERT_NE(gpu0, nullptr);
    EXPECT_TRUE(exercise(1, gpu0, gtest_report()));
    // The caller's own runtime work still goes to GPU 0.
    void* mine = nullptr;
    ASSERT_EQ(cudaMalloc(&mine, kMiB), cudaSuccess);
    cudaPointerAttributes attributes{};
    EXPECT_EQ(cudaPointerGetAttributes(&attributes, mine), cudaSuccess);
    EXPECT_EQ(attributes.device, 0);
    EXPECT_EQ(cudaFree(mine), cudaSuccess);
    EXPECT_EQ(current_context(), gpu0);
  });
  caller.join();
}

TEST(ContextHygiene, MultiGpuFreshProcessMakesNoContextOnOtherGpus) {
  VG_REQUIRE_TWO_GPUS();
  // In a child process: this one has contexts on every GPU already (the suite's baseline).
  const std::string device = std::to_string(device_count() - 1);
  char* argv[] = {const_cast<char*>("/proc/self/exe"), const_cast<char*>(kProbeFlag),
                  const_cast<char*>(device.c_str()), nullptr};
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, argv, environ), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the probe process died (status " << status << ")";
  EXPECT_NE(WEXITSTATUS(status), 3) << "the probe could not run (see its stderr above)";
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "work on GPU" << device << " from a fresh process touched another GPU (stderr above)";
}

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], kProbeFlag) == 0) {
    return fresh_process_probe(std::atoi(argv[2]));
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
