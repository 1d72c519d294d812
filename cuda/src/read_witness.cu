// The bandwidth witness: its kernel, the timed read and the calibration (read_witness.hpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "checksum_launch.hpp"
#include "checksum_slots.hpp"
#include "cuda_call.hpp"
#include "scoped_device.hpp"
#include "vramguard/device.hpp"
#include "vramguard/error.hpp"
#include "vramguard/read_witness.hpp"

namespace vramguard {

namespace {

namespace cs = detail::checksum;

constexpr unsigned kThreads = 512;
constexpr unsigned kBlocksPerSm = 4;
constexpr unsigned kUnroll = 4;

// Written only when the XOR of everything read has an impossible-to-predict value, so that the
// compiler must keep every load and the kernel almost never writes.
__device__ unsigned long long g_witness_sink;

// `passes` passes over `words` 16-byte words. Within a pass each word is read by one thread, so
// that no two loads of one pass ask for the same line at once (the memory system could merge them
// and read host memory once for several loads); ld.global.cv refetches system memory each time.
__global__ void __launch_bounds__(kThreads)
    witness_read(const uint4* __restrict__ words, std::uint64_t count, std::uint64_t passes) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  const std::uint64_t first = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned x = 0;
  for (std::uint64_t pass = 0; pass < passes; ++pass) {
    std::uint64_t k = first;
    for (; k + (kUnroll - 1) * stride < count; k += kUnroll * stride) {
      uint4 w[kUnroll];
#pragma unroll
      for (unsigned u = 0; u < kUnroll; ++u) w[u] = __ldcv(words + k + u * stride);
#pragma unroll
      for (unsigned u = 0; u < kUnroll; ++u) x ^= w[u].x ^ w[u].y ^ w[u].z ^ w[u].w;
    }
    for (; k < count; k += stride) {
      const uint4 w = __ldcv(words + k);
      x ^= w.x ^ w.y ^ w.z ^ w.w;
    }
    x = (x << 1) | (x >> 31);  // so that an even number of passes does not cancel to 0
  }
  if (x == 0x9E3779B9u) g_witness_sink = x;
}

unsigned blocks_for(int device, std::uint64_t words) {
  int sms = 0;
  VG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const std::uint64_t full = std::uint64_t(std::max(sms, 1)) * kBlocksPerSm;
  const std::uint64_t per_block = std::uint64_t{kThreads} * kUnroll;
  const std::uint64_t needed = (words + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<std::uint64_t>(needed, 1, full));
}

void launch(const uint4* words, std::uint64_t count, std::uint64_t passes, unsigned blocks,
            CUstream_st* stream) {
  (void)cudaGetLastError();  // an earlier, unrelated failure is not this launch's
  witness_read<<<blocks, kThreads, 0, stream>>>(words, count, passes);
  const cudaError_t result = cudaGetLastError();
  if (result != cudaSuccess) throw CudaError(static_cast<int>(result), "witness_read<<<>>>");
}

// Timing events, destroyed on every way out (destroying one the GPU has not reached is allowed:
// CUDA frees it once it completes).
struct TimingEvents {
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  TimingEvents() {
    VG_CUDA_CHECK(cudaEventCreate(&start));
    const cudaError_t made = cudaEventCreate(&stop);
    if (made != cudaSuccess) {
      (void)cudaEventDestroy(start);
      detail::check(made, "cudaEventCreate");
    }
  }
  ~TimingEvents() {
    (void)cudaEventDestroy(start);
    (void)cudaEventDestroy(stop);
  }
  TimingEvents(const TimingEvents&) = delete;
  TimingEvents& operator=(const TimingEvents&) = delete;
};

ReadBandwidth measure_in_scope(const void* readable, std::size_t bytes, int device,
                               std::uint64_t min_bytes_read, cs::Clock::time_point deadline) {
  const auto from = reinterpret_cast<std::uintptr_t>(readable);
  const std::uintptr_t first = (from + kWitnessWordBytes - 1) & ~std::uintptr_t{15};
  const std::uintptr_t last = (from + bytes) & ~std::uintptr_t{15};
  if (last <= first) {
    throw Error(VG_ERR_INVALID_SIZE, "read witness: a range of " + std::to_string(bytes) +
                                         " bytes holds no aligned 16-byte word to read");
  }
  const std::uint64_t count = (last - first) / kWitnessWordBytes;
  const std::uint64_t range_bytes = count * kWitnessWordBytes;
  const std::uint64_t passes = std::clamp<std::uint64_t>(
      (min_bytes_read + range_bytes - 1) / range_bytes, 1, kMaxWitnessPasses);
  const auto* words = reinterpret_cast<const uint4*>(first);
  const unsigned blocks = blocks_for(device, count);
  CUstream_st* stream = cs::device_stream(device);
  TimingEvents events;
  // An untimed one-word read first: the module's lazy load and the first launch's set-up then
  // happen before the start event, not between it and the timed kernel.
  launch(words, 1, 1, 1, stream);
  VG_CUDA_CHECK(cudaEventRecord(events.start, stream));
  launch(words, count, passes, blocks, stream);
  VG_CUDA_CHECK(cudaEventRecord(events.stop, stream));
  if (!cs::wait_for_event(events.stop, deadline)) {
    throw Error(VG_ERR_TIMEOUT, "read witness: GPU " + std::to_string(device) +
                                    " did not finish reading " + std::to_string(range_bytes) +
                                    " bytes before the deadline (busy or hung)");
  }
  float milliseconds = 0.0f;
  VG_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, events.start, events.stop));
  ReadBandwidth result;
  result.range_bytes = range_bytes;
  result.bytes_read = range_bytes * passes;
  result.seconds = static_cast<double>(milliseconds) / 1e3;
  return result;
}

}  // namespace

double WitnessCalibration::threshold_gb_per_second() const noexcept {
  return std::sqrt(device_memory.gb_per_second() * host_memory.gb_per_second());
}

ReadBandwidth measure_read_bandwidth(const void* ptr, std::size_t bytes, int device,
                                     std::uint64_t min_bytes_read,
                                     std::chrono::milliseconds timeout) {
  const cs::Clock::time_point deadline = cs::deadline_after(timeout);
  require_valid_device(device);
  detail::ScopedDevice scope(device);
  const void* readable = cs::prepare(ptr, bytes, device, "read witness");
  return measure_in_scope(readable, bytes, device, min_bytes_read, deadline);
}

WitnessCalibration calibrate_read_witness(int device, std::size_t buffer_bytes,
                                          std::uint64_t min_bytes_read,
                                          std::chrono::milliseconds timeout) {
  if (buffer_bytes < kWitnessWordBytes) {
    throw Error(VG_ERR_INVALID_SIZE, "read witness calibration: a buffer of " +
                                         std::to_string(buffer_bytes) + " bytes is too small");
  }
  const cs::Clock::time_point deadline = cs::deadline_after(timeout);
  require_valid_device(device);
  detail::ScopedDevice scope(device);
  struct Buffers {
    void* device_memory = nullptr;
    void* host_memory = nullptr;
    ~Buffers() {
      // Waits for nothing: a kernel past its deadline may still read them; the GPU finishing it
      // or the context being torn down is then what frees them safely, so they leak instead.
      if (abandoned) return;
      if (device_memory != nullptr) (void)cudaFree(device_memory);
      if (host_memory != nullptr) (void)cudaFreeHost(host_memory);
    }
    bool abandoned = false;
  } buffers;
  VG_CUDA_CHECK(cudaMalloc(&buffers.device_memory, buffer_bytes));
  VG_CUDA_CHECK(cudaHostAlloc(&buffers.host_memory, buffer_bytes,
                              cudaHostAllocMapped | cudaHostAllocPortable));
  void* host_on_device = nullptr;
  VG_CUDA_CHECK(cudaHostGetDevicePointer(&host_on_device, buffers.host_memory, 0));
  // Defined contents (the reads do not depend on them, but a sanitizer would flag the reads).
  VG_CUDA_CHECK(
      cudaMemsetAsync(buffers.device_memory, 0x5A, buffer_bytes, cs::device_stream(device)));
  std::fill_n(static_cast<unsigned char*>(buffers.host_memory), buffer_bytes, 0x5A);

  WitnessCalibration calibration;
  calibration.device = device;
  calibration.buffer_bytes = buffer_bytes;
  try {
    for (int round = 0; round < 3; ++round) {
      const ReadBandwidth on_device =
          measure_in_scope(buffers.device_memory, buffer_bytes, device, min_bytes_read, deadline);
      const ReadBandwidth on_host =
          measure_in_scope(host_on_device, buffer_bytes, device, min_bytes_read, deadline);
      if (on_device.gb_per_second() > calibration.device_memory.gb_per_second())
        calibration.device_memory = on_device;
      if (on_host.gb_per_second() > calibration.host_memory.gb_per_second())
        calibration.host_memory = on_host;
    }
  } catch (const Error& error) {
    if (error.status() == VG_ERR_TIMEOUT) buffers.abandoned = true;
    throw;
  }
  return calibration;
}

}  // namespace vramguard
