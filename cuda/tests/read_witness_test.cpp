// The bandwidth witness: calibration separates device from mapped host memory; each is judged by
// the reading alone, for every size from the smallest the witness claims to judge; no device
// buffer is misjudged while copies load the memory system; bad arguments get their statuses.
#include "vramguard/read_witness.hpp"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "gpu_gate.hpp"
#include "vramguard.h"
#include "vramguard/error.hpp"

using namespace vramguard;

namespace {

constexpr std::size_t kMiB = 1ull << 20;
constexpr std::uint64_t kMinRead = 256 * kMiB;
constexpr std::chrono::milliseconds kTimeout{30'000};

struct MappedHost {
  void* host = nullptr;
  void* device = nullptr;
  explicit MappedHost(std::size_t bytes) {
    EXPECT_EQ(cudaHostAlloc(&host, bytes, cudaHostAllocMapped | cudaHostAllocPortable),
              cudaSuccess);
    std::fill_n(static_cast<unsigned char*>(host), bytes, 0x11);
    EXPECT_EQ(cudaHostGetDevicePointer(&device, host, 0), cudaSuccess);
  }
  ~MappedHost() { cudaFreeHost(host); }
};

struct DeviceBytes {
  void* ptr = nullptr;
  explicit DeviceBytes(std::size_t bytes) {
    EXPECT_EQ(cudaMalloc(&ptr, bytes), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr, 0x22, bytes), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  ~DeviceBytes() { cudaFree(ptr); }
};

const WitnessCalibration& calibration() {
  static const WitnessCalibration calibrated =
      calibrate_read_witness(0, kWitnessCalibrationBytes, kMinRead, kTimeout);
  return calibrated;
}

}  // namespace

TEST(ReadWitness, TimedCalibrationSeparatesDeviceFromHostMemory) {
  VG_REQUIRE_GPU();
  const WitnessCalibration& c = calibration();
  std::printf(
      "[ witness ] calibration on GPU 0 (%zu MiB buffers): device %.0f GB/s, mapped host "
      "%.1f GB/s, threshold %.0f GB/s\n",
      static_cast<std::size_t>(c.buffer_bytes / kMiB), c.device_memory.gb_per_second(),
      c.host_memory.gb_per_second(), c.threshold_gb_per_second());
  EXPECT_GE(c.device_memory.bytes_read, kMinRead);
  EXPECT_GE(c.host_memory.bytes_read, kMinRead);
  // Discrete GPU: HBM is an order of magnitude or more faster than PCIe.
  EXPECT_GT(c.device_memory.gb_per_second(), 8.0 * c.host_memory.gb_per_second());
  EXPECT_GT(c.threshold_gb_per_second(), c.host_memory.gb_per_second());
  EXPECT_LT(c.threshold_gb_per_second(), c.device_memory.gb_per_second());
}

// Every size from the smallest the witness claims to judge: host memory below the threshold,
// device memory above it, by the reading alone. Smaller sizes are printed, not asserted.
TEST(ReadWitness, TimedJudgementOfEachSizeByBandwidthAlone) {
  VG_REQUIRE_GPU();
  const double threshold = calibration().threshold_gb_per_second();
  MappedHost host(64 * kMiB);
  DeviceBytes device(64 * kMiB);
  std::printf("[ witness ] %10s %14s %14s\n", "range", "device GB/s", "host GB/s");
  for (std::size_t bytes = 4096; bytes <= 64 * kMiB; bytes *= 4) {
    const ReadBandwidth on_device =
        measure_read_bandwidth(device.ptr, bytes, 0, kMinRead, kTimeout);
    const ReadBandwidth on_host = measure_read_bandwidth(host.device, bytes, 0, kMinRead, kTimeout);
    std::printf("[ witness ] %8zu KiB %14.0f %14.1f\n", bytes / 1024, on_device.gb_per_second(),
                on_host.gb_per_second());
    EXPECT_EQ(on_device.range_bytes, bytes);
    if (bytes < kWitnessSmallestJudgedBytes) continue;
    EXPECT_GT(on_device.gb_per_second(), threshold) << bytes << " bytes of device memory";
    EXPECT_LT(on_host.gb_per_second(), threshold) << bytes << " bytes of mapped host memory";
  }
  // The host pointer and its device alias are the same memory: either judges it.
  const ReadBandwidth by_host_address =
      measure_read_bandwidth(host.host, 64 * kMiB, 0, kMinRead, kTimeout);
  EXPECT_LT(by_host_address.gb_per_second(), threshold);
}

// Copies on other streams saturate HBM and PCIe while the witness reads device buffers: none is
// ever judged host-backed. The lowest reading is printed against the threshold.
TEST(ReadWitness, TimedNoDeviceBufferMisjudgedUnderCopyLoad) {
  VG_REQUIRE_GPU();
  const double threshold = calibration().threshold_gb_per_second();
  DeviceBytes small(kWitnessSmallestJudgedBytes);
  DeviceBytes medium(16 * kMiB);
  DeviceBytes large(512 * kMiB);
  DeviceBytes copy_from(1024 * kMiB);
  DeviceBytes copy_to(1024 * kMiB);
  MappedHost staging(256 * kMiB);
  std::atomic<bool> stop{false};
  std::atomic<int> copies{0};
  std::thread load([&] {
    cudaSetDevice(0);
    cudaStream_t d2d = nullptr;
    cudaStream_t h2d = nullptr;
    cudaStreamCreateWithFlags(&d2d, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&h2d, cudaStreamNonBlocking);
    while (!stop.load()) {
      cudaMemcpyAsync(copy_to.ptr, copy_from.ptr, 1024 * kMiB, cudaMemcpyDeviceToDevice, d2d);
      cudaMemcpyAsync(copy_to.ptr, staging.host, 256 * kMiB, cudaMemcpyHostToDevice, h2d);
      cudaStreamSynchronize(d2d);
      cudaStreamSynchronize(h2d);
      copies.fetch_add(1);
    }
    cudaStreamDestroy(d2d);
    cudaStreamDestroy(h2d);
  });
  while (copies.load() == 0) std::this_thread::yield();
  double lowest = 1e30;
  int readings = 0;
  for (int round = 0; round < 40; ++round) {
    for (const DeviceBytes* buffer : {&small, &medium, &large}) {
      const std::size_t bytes = buffer == &small    ? kWitnessSmallestJudgedBytes
                                : buffer == &medium ? 16 * kMiB
                                                    : 512 * kMiB;
      const ReadBandwidth read = measure_read_bandwidth(buffer->ptr, bytes, 0, kMinRead, kTimeout);
      lowest = std::min(lowest, read.gb_per_second());
      ++readings;
      EXPECT_GT(read.gb_per_second(), threshold) << bytes << " bytes, round " << round;
    }
  }
  stop.store(true);
  load.join();
  std::printf(
      "[ witness ] under copy load (%d copy rounds of 1 GiB device-to-device + 256 MiB "
      "host-to-device): %d readings, lowest %.0f GB/s, threshold %.0f GB/s\n",
      copies.load(), readings, lowest, threshold);
  EXPECT_GT(copies.load(), 1);
}

TEST(ReadWitness, BadArgumentsThroughTheCAbi) {
  vg_read_bandwidth out{};
  EXPECT_EQ(
      vg_read_bandwidth_measure(nullptr, reinterpret_cast<void*>(0x1000), 0, 16, 0, 1000, &out),
      VG_ERR_NULL_ARGUMENT);
  vg_witness_calibration calibrated{};
  EXPECT_EQ(vg_read_witness_calibrate(0, 16, 0, 1000, nullptr), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_read_witness_calibrate(0, 16, 0, 0, &calibrated), VG_ERR_INVALID_SIZE);
  EXPECT_EQ(vg_read_witness_calibrate(0, VG_MAX_ALLOCATION_BYTES + 1, 0, 1000, &calibrated),
            VG_ERR_INVALID_SIZE);
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  // Checked before any device is touched: these answer the same with or without a GPU.
  EXPECT_EQ(vg_read_bandwidth_measure(tracker, reinterpret_cast<void*>(0x1000), 0, 16, 0, 0, &out),
            VG_ERR_INVALID_SIZE);
  EXPECT_EQ(
      vg_read_bandwidth_measure(tracker, reinterpret_cast<void*>(0x1000), 0, 16, 0, 1000, &out),
      VG_ERR_UNKNOWN_POINTER);
  ASSERT_EQ(vg_adopt(tracker, reinterpret_cast<void*>(0x1000), 64, 0, "fake", nullptr), VG_OK);
  EXPECT_EQ(
      vg_read_bandwidth_measure(tracker, reinterpret_cast<void*>(0x1000), 32, 64, 0, 1000, &out),
      VG_ERR_OUT_OF_RANGE);
  EXPECT_EQ(vg_forget(tracker, reinterpret_cast<void*>(0x1000)), VG_OK);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
}

TEST(ReadWitness, RangeWithoutAnAlignedWordIsRefused) {
  VG_REQUIRE_GPU();
  DeviceBytes device(kMiB);
  try {
    measure_read_bandwidth(static_cast<char*>(device.ptr) + 1, 20, 0, kMinRead, kTimeout);
    FAIL() << "a 20-byte range starting at offset 1 holds no aligned word";
  } catch (const Error& error) {
    EXPECT_EQ(error.status(), VG_ERR_INVALID_SIZE);
  }
  EXPECT_EQ(
      measure_read_bandwidth(static_cast<char*>(device.ptr) + 1, 40, 0, 16, kTimeout).range_bytes,
      16u);  // [16, 32): the one whole aligned word inside [1, 41)
}
