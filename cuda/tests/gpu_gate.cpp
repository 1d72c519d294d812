#include "gpu_gate.hpp"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "vramguard/checksum.hpp"

namespace vramguard::testing {

bool gpu_available() {
  static const bool available = [] {
    int count = 0;
    const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    (void)cudaGetLastError();
    return ok;
  }();
  return available;
}

bool gpu_required() {
  const char* value = std::getenv("VRAM_REQUIRE_GPU");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

namespace {

// Q5: the driver's free memory on every device is back to its starting value after the suite.
// A lone small allocation moves the figure by 2 MiB, so that is the tolerance.
class DriverMemoryIsReturned : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!gpu_available()) return;
    cudaGetDeviceCount(&devices_);
    for (int d = 0; d < devices_ && d < kMaxDevices; ++d) {
      touch_managed_memory(d);
      free_at_start_[d] = free_bytes(d);
    }
  }
  void TearDown() override {
    if (!gpu_available()) return;
    for (int d = 0; d < devices_ && d < kMaxDevices; ++d) {
      const long long after = free_bytes(d);
      std::printf("[ vramguard ] GPU%d driver free memory: %lld bytes before, %lld after\n", d,
                  free_at_start_[d], after);
      EXPECT_LE(free_at_start_[d] - after, kToleranceBytes) << "device memory leaked on GPU" << d;
    }
  }

 private:
  static constexpr int kMaxDevices = 16;
  static constexpr long long kToleranceBytes = 2ll << 20;
  // Measured on the H100 (README, "GPU test suite"): the first migration of managed memory makes
  // the driver reserve about 124 MiB of device memory for its unified-memory bookkeeping, once per
  // context, never returned while the context lives. That is not a leak, so the baseline is taken
  // after it. Likewise the first kernel launch loads vramguard's CUDA module (2 MiB, kept by the
  // context): a checksum of the same buffer loads it before the baseline.
  static void touch_managed_memory(int device) {
    cudaSetDevice(device);
    void* managed = nullptr;
    unsigned char byte = 1;
    if (cudaMallocManaged(&managed, 1 << 20) == cudaSuccess) {
      cudaMemcpy(managed, &byte, 1, cudaMemcpyDefault);
      cudaMemcpy(&byte, managed, 1, cudaMemcpyDefault);
      try {
        (void)vramguard::device_checksum(managed, 1 << 20, device);
      } catch (...) {
      }
      cudaFree(managed);
    }
    (void)cudaGetLastError();
  }
  static long long free_bytes(int device) {
    cudaSetDevice(device);
    cudaDeviceSynchronize();
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    return static_cast<long long>(free);
  }
  int devices_ = 0;
  long long free_at_start_[kMaxDevices] = {};
};

[[maybe_unused]] ::testing::Environment* const environment =
    ::testing::AddGlobalTestEnvironment(new DriverMemoryIsReturned);

}  // namespace
}  // namespace vramguard::testing
