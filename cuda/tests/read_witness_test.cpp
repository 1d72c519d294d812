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

#include "faults.h"
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

ReadWitness& witness() {
  static ReadWitness* const made = new ReadWitness(0, kWitnessControlBytes);  // lives for the run
  return *made;
}

const WitnessCalibration& calibration() {
  static const WitnessCalibration calibrated = witness().calibrate(kMinRead, kTimeout);
  return calibrated;
}

ReadBandwidth measure_read_bandwidth(const void* ptr, std::size_t bytes, std::uint64_t min_read) {
  return witness().measure(ptr, bytes, min_read, kTimeout);
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
    const ReadBandwidth on_device = measure_read_bandwidth(device.ptr, bytes, kMinRead);
    const ReadBandwidth on_host = measure_read_bandwidth(host.device, bytes, kMinRead);
    std::printf("[ witness ] %8zu KiB %14.0f %14.1f\n", bytes / 1024, on_device.gb_per_second(),
                on_host.gb_per_second());
    EXPECT_EQ(on_device.range_bytes, bytes);
    if (bytes < kWitnessSmallestJudgedBytes) continue;
    EXPECT_GT(on_device.gb_per_second(), threshold) << bytes << " bytes of device memory";
    EXPECT_LT(on_host.gb_per_second(), threshold) << bytes << " bytes of mapped host memory";
  }
  // The host pointer and its device alias are the same memory: either judges it.
  const ReadBandwidth by_host_address = measure_read_bandwidth(host.host, 64 * kMiB, kMinRead);
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
      const ReadBandwidth read = measure_read_bandwidth(buffer->ptr, bytes, kMinRead);
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

// Checked before any device is touched: these answer the same with or without a GPU.
TEST(ReadWitness, BadArgumentsThroughTheCAbi) {
  vg_read_bandwidth out{};
  vg_bracketed_reading window{};
  vg_witness_calibration calibrated{};
  vg_read_witness* witness = nullptr;
  EXPECT_EQ(vg_read_witness_create(0, kMiB, nullptr), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_read_witness_create(0, kMiB - 1, &witness), VG_ERR_INVALID_SIZE);
  EXPECT_EQ(vg_read_witness_create(0, VG_MAX_ALLOCATION_BYTES + 1, &witness), VG_ERR_INVALID_SIZE);
  EXPECT_EQ(witness, nullptr);
  EXPECT_EQ(vg_read_witness_destroy(nullptr), VG_OK);
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  void* const fake = reinterpret_cast<void*>(0x1000);
  EXPECT_EQ(vg_read_witness_measure(nullptr, tracker, fake, 0, 16, 16, 1000, &out),
            VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_read_witness_measure_bracketed(nullptr, tracker, fake, 0, 16, 16, 1000, &window),
            VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_read_witness_calibrate(nullptr, 16, 1000, &calibrated), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
}

// The arguments a witness checks before it reads: with one made on the GPU.
TEST(ReadWitness, BadReadingsAreRefusedWithTheirStatuses) {
  VG_REQUIRE_GPU();
  vg_read_witness* witness = nullptr;
  ASSERT_EQ(vg_read_witness_create(0, kMiB, &witness), VG_OK);
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  void* const fake = reinterpret_cast<void*>(0x1000);
  vg_read_bandwidth out{};
  EXPECT_EQ(vg_read_witness_measure(witness, tracker, fake, 0, 16, 16, 1000, nullptr),
            VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_read_witness_measure(witness, tracker, fake, 0, 16, 16, 0, &out),
            VG_ERR_INVALID_SIZE);
  EXPECT_EQ(vg_read_witness_measure(witness, tracker, fake, 0, 16, 16, 1000, &out),
            VG_ERR_UNKNOWN_POINTER);
  ASSERT_EQ(vg_adopt(tracker, fake, 64, 0, "fake", nullptr), VG_OK);
  EXPECT_EQ(vg_read_witness_measure(witness, tracker, fake, 32, 64, 16, 1000, &out),
            VG_ERR_OUT_OF_RANGE);
  // An address no allocation has: refused as unreadable before any kernel touches it.
  EXPECT_EQ(vg_read_witness_measure(witness, tracker, fake, 0, 64, 16, 1000, &out),
            VG_ERR_NOT_READABLE);
  std::vector<unsigned char> pageable(1 << 20, 7);
  ASSERT_EQ(vg_adopt(tracker, pageable.data(), pageable.size(), 0, "pageable", nullptr), VG_OK);
  EXPECT_EQ(vg_read_witness_measure(witness, tracker, pageable.data(), 0, pageable.size(), 16, 1000,
                                    &out),
            VG_ERR_NOT_READABLE);
  EXPECT_EQ(vg_forget(tracker, pageable.data()), VG_OK);
  EXPECT_EQ(vg_forget(tracker, fake), VG_OK);
  // A tracker of another device than the witness's.
  vg_tracker* other = nullptr;
  ASSERT_EQ(vg_tracker_create(1, &other), VG_OK);
  ASSERT_EQ(vg_adopt(other, fake, 64, 0, "on GPU 1", nullptr), VG_OK);
  EXPECT_EQ(vg_read_witness_measure(witness, other, fake, 0, 64, 16, 1000, &out),
            VG_ERR_INVALID_DEVICE);
  EXPECT_EQ(vg_forget(other, fake), VG_OK);
  EXPECT_EQ(vg_tracker_destroy(other), VG_OK);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
  EXPECT_EQ(vg_read_witness_destroy(witness), VG_OK);
}

// min_bytes_read near 2^64 must not wrap the passes to a handful: it is capped at the most passes.
TEST(ReadWitness, PassesNeverWrapForAnyMinimum) {
  VG_REQUIRE_GPU();
  DeviceBytes device(kMiB);
  const ReadBandwidth capped = measure_read_bandwidth(device.ptr, 16, UINT64_MAX);
  EXPECT_EQ(capped.range_bytes, 16u);
  EXPECT_EQ(capped.bytes_read, 16u * kMaxWitnessPasses);
  const ReadBandwidth exact = measure_read_bandwidth(device.ptr, 4096, 4096 * 3 + 1);
  EXPECT_EQ(exact.bytes_read, 4096u * 4);
}

TEST(ReadWitness, RangeWithoutAnAlignedWordIsRefused) {
  VG_REQUIRE_GPU();
  DeviceBytes device(kMiB);
  try {
    measure_read_bandwidth(static_cast<char*>(device.ptr) + 1, 20, kMinRead);
    FAIL() << "a 20-byte range starting at offset 1 holds no aligned word";
  } catch (const Error& error) {
    EXPECT_EQ(error.status(), VG_ERR_INVALID_SIZE);
  }
  EXPECT_EQ(measure_read_bandwidth(static_cast<char*>(device.ptr) + 1, 40, 16).range_bytes,
            16u);  // [16, 32): the one whole aligned word inside [1, 41)
}

// One window: control, target, control. Device memory reads like the control; mapped host memory
// reads at a small fraction of it.
TEST(ReadWitness, TimedBracketedWindowsSeparateHostFromDeviceByRatio) {
  VG_REQUIRE_GPU();
  MappedHost host(64 * kMiB);
  DeviceBytes device(64 * kMiB);
  const BracketedReading on_device =
      witness().measure_bracketed(device.ptr, 64 * kMiB, kMinRead, kTimeout);
  const BracketedReading on_host =
      witness().measure_bracketed(host.device, 64 * kMiB, kMinRead, kTimeout);
  const auto slower = [](const BracketedReading& w) {
    return std::min(w.control_before.gb_per_second(), w.control_after.gb_per_second());
  };
  std::printf(
      "[ witness ] windows: device %.0f GB/s beside controls of %.0f+ GB/s; mapped host %.1f "
      "GB/s beside %.0f+ GB/s\n",
      on_device.target.gb_per_second(), slower(on_device), on_host.target.gb_per_second(),
      slower(on_host));
  EXPECT_GT(on_device.target.gb_per_second(), slower(on_device) / 4);
  EXPECT_LT(on_host.target.gb_per_second() * 4, slower(on_host));
  EXPECT_GE(on_host.target.bytes_read, kMinRead);
}

// The worker's own kernels fill every SM (kernels of 2 ms, back to back, on the legacy stream):
// the witness's readings, timed on the GPU from first block to last on a stream of the greatest
// priority, still read device memory faster than host memory could ever be read. Both timings are
// printed: the events' include the wait for SMs.
TEST(ReadWitness, TimedDeviceMemoryReadsFasterThanHostMemoryBesideFullOccupancyKernels) {
  VG_REQUIRE_GPU();
  const double host_ceiling = 2.0 * calibration().host_memory.gb_per_second();
  DeviceBytes device(256 * kMiB);
  double slowest = 1e30;
  double slowest_by_events = 1e30;
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 4; ++k) ASSERT_EQ(vg_test_spin_all_sms(0, 2), 0);
    const ReadBandwidth read = measure_read_bandwidth(device.ptr, 256 * kMiB, kMinRead);
    slowest = std::min(slowest, read.gb_per_second());
    slowest_by_events = std::min(slowest_by_events,
                                 static_cast<double>(read.bytes_read) / read.event_seconds / 1e9);
    EXPECT_GT(read.gb_per_second(), host_ceiling) << "round " << round;
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::printf(
      "[ witness ] beside full-occupancy kernels: slowest device reading %.0f GB/s on the GPU's "
      "timer (%.0f GB/s between events), host ceiling %.0f GB/s\n",
      slowest, slowest_by_events, host_ceiling);
}
