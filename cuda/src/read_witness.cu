// The read witness: its kernel, its stream and control buffer, timed windows and calibration
// (read_witness.hpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

// `passes` passes over `words` 16-byte words. Within a pass each word is read by one thread, so
// that no two loads of one pass ask for the same line at once (the memory system could merge them
// and read host memory once for several loads); ld.global.cv refetches system memory each time.
// Each block's thread 0 folds its block's start and end into span_start / span_end.
__global__ void __launch_bounds__(kThreads)
    witness_read(const uint4* __restrict__ words, std::uint64_t count, std::uint64_t passes,
                 unsigned long long* span_start, unsigned long long* span_end) {
  if (threadIdx.x == 0) atomicMin(span_start, global_ns());
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
  __syncthreads();
  if (threadIdx.x == 0) atomicMax(span_end, global_ns());
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
            unsigned long long* span_start, unsigned long long* span_end, CUstream_st* stream) {
  (void)cudaGetLastError();  // an earlier, unrelated failure is not this launch's
  witness_read<<<blocks, kThreads, 0, stream>>>(words, count, passes, span_start, span_end);
  const cudaError_t result = cudaGetLastError();
  if (result != cudaSuccess) throw CudaError(static_cast<int>(result), "witness_read<<<>>>");
}

// Passes that make at least min_bytes_read bytes, computed without overflow for any input.
std::uint64_t passes_for(std::uint64_t min_bytes_read, std::uint64_t range_bytes) {
  const std::uint64_t whole = min_bytes_read / range_bytes;
  const std::uint64_t passes = whole + (min_bytes_read % range_bytes != 0 ? 1 : 0);
  return std::clamp<std::uint64_t>(passes, 1, kMaxWitnessPasses);
}

// The aligned words of one range: where they start and how many.
struct Words {
  const uint4* first;
  std::uint64_t count;
};

Words words_of(const void* readable, std::size_t bytes) {
  const auto from = reinterpret_cast<std::uintptr_t>(readable);
  const std::uintptr_t first = (from + kWitnessWordBytes - 1) & ~std::uintptr_t{15};
  const std::uintptr_t last = (from + bytes) & ~std::uintptr_t{15};
  if (last <= first) {
    throw Error(VG_ERR_INVALID_SIZE, "read witness: a range of " + std::to_string(bytes) +
                                         " bytes holds no aligned 16-byte word to read");
  }
  return Words{reinterpret_cast<const uint4*>(first), (last - first) / kWitnessWordBytes};
}

// Timing events, destroyed on every way out (destroying one the GPU has not reached is allowed:
// CUDA frees it once it completes).
struct WindowEvents {
  static constexpr int kCount = 4;
  cudaEvent_t events[kCount] = {};
  WindowEvents() {
    for (cudaEvent_t& event : events) {
      const cudaError_t made = cudaEventCreate(&event);
      if (made != cudaSuccess) {
        destroy();
        detail::check(made, "cudaEventCreate");
      }
    }
  }
  ~WindowEvents() { destroy(); }
  void destroy() noexcept {
    for (cudaEvent_t& event : events) {
      if (event != nullptr) (void)cudaEventDestroy(event);
      event = nullptr;
    }
  }
  WindowEvents(const WindowEvents&) = delete;
  WindowEvents& operator=(const WindowEvents&) = delete;
};

}  // namespace

double WitnessCalibration::threshold_gb_per_second() const noexcept {
  return std::sqrt(device_memory.gb_per_second() * host_memory.gb_per_second());
}

ReadWitness::ReadWitness(int device, std::size_t control_bytes)
    : device_(device), control_bytes_(control_bytes) {
  if (control_bytes < (std::size_t{1} << 20) || control_bytes > VG_MAX_ALLOCATION_BYTES) {
    throw Error(VG_ERR_INVALID_SIZE, "read witness: a control buffer of " +
                                         std::to_string(control_bytes) +
                                         " bytes; it must be between 1 MiB and "
                                         "VG_MAX_ALLOCATION_BYTES");
  }
  require_valid_device(device);
  detail::ScopedDevice scope(device);
  // Everything made so far goes on a failure further on.
  struct Unwind {
    ReadWitness* witness;
    bool done = false;
    ~Unwind() {
      // A warm-up past its deadline may still run: its memory goes with the context instead.
      if (done || (witness->stream_ != nullptr && cudaStreamQuery(witness->stream_) != cudaSuccess))
        return;
      if (witness->stream_ != nullptr) (void)cudaStreamDestroy(witness->stream_);
      if (witness->control_ != nullptr) (void)cudaFree(witness->control_);
      if (witness->device_spans_ != nullptr) (void)cudaFree(witness->device_spans_);
      if (witness->host_spans_ != nullptr) (void)cudaFreeHost(witness->host_spans_);
    }
  } unwind{this};
  int least = 0;
  int greatest = 0;
  VG_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  VG_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
  VG_CUDA_CHECK(cudaMalloc(&control_, control_bytes));
  VG_CUDA_CHECK(cudaMalloc(&device_spans_, 2 * kMaxSpans * sizeof(unsigned long long)));
  VG_CUDA_CHECK(cudaHostAlloc(&host_spans_, 2 * kMaxSpans * sizeof(unsigned long long),
                              cudaHostAllocPortable));
  // Defined contents (the reads do not depend on them, but a sanitizer would flag the reads).
  VG_CUDA_CHECK(cudaMemsetAsync(control_, 0x5A, control_bytes, stream_));
  // The module's lazy load and the first launch's set-up happen now, not inside a reading.
  ReadBandwidth warm_up;
  const Target one_word{control_, kWitnessWordBytes};
  measure_window(&one_word, 1, kWitnessWordBytes, cs::deadline_after(std::chrono::seconds(30)),
                 &warm_up);
  unwind.done = true;
}

ReadWitness::~ReadWitness() noexcept {
  try {
    detail::ScopedDevice scope(device_);
    // A reading past its deadline may still run: its memory goes with the context instead.
    if (cudaStreamQuery(stream_) != cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    (void)cudaStreamDestroy(stream_);
    (void)cudaFree(control_);
    (void)cudaFree(device_spans_);
    (void)cudaFreeHost(host_spans_);
  } catch (...) {
    // No context to free them in (a sticky error, a driver gone): nothing more can be done.
  }
}

void ReadWitness::measure_window(const Target* targets, int count, std::uint64_t min_bytes_read,
                                 cs::Clock::time_point deadline, ReadBandwidth* out) {
  if (min_bytes_read == 0) {
    throw Error(VG_ERR_INVALID_SIZE, "read witness: min_bytes_read must be at least 1");
  }
  Words words[kMaxSpans];
  std::uint64_t passes[kMaxSpans];
  unsigned blocks[kMaxSpans];
  for (int i = 0; i < count; ++i) {
    words[i] = words_of(targets[i].readable, targets[i].bytes);
    passes[i] = passes_for(min_bytes_read, words[i].count * kWitnessWordBytes);
    blocks[i] = blocks_for(device_, words[i].count);
  }
  unsigned long long* starts = device_spans_;
  unsigned long long* ends = device_spans_ + kMaxSpans;
  WindowEvents events;
  VG_CUDA_CHECK(cudaMemsetAsync(starts, 0xFF, kMaxSpans * sizeof(unsigned long long), stream_));
  VG_CUDA_CHECK(cudaMemsetAsync(ends, 0x00, kMaxSpans * sizeof(unsigned long long), stream_));
  VG_CUDA_CHECK(cudaEventRecord(events.events[0], stream_));
  for (int i = 0; i < count; ++i) {
    launch(words[i].first, words[i].count, passes[i], blocks[i], starts + i, ends + i, stream_);
    VG_CUDA_CHECK(cudaEventRecord(events.events[i + 1], stream_));
  }
  VG_CUDA_CHECK(cudaMemcpyAsync(host_spans_, device_spans_,
                                2 * kMaxSpans * sizeof(unsigned long long), cudaMemcpyDeviceToHost,
                                stream_));
  if (!cs::wait_for_stream(stream_, deadline)) {
    throw Error(VG_ERR_TIMEOUT, "read witness: GPU " + std::to_string(device_) +
                                    " did not finish its reading before the deadline (busy or "
                                    "hung)");
  }
  for (int i = 0; i < count; ++i) {
    float milliseconds = 0.0f;
    VG_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, events.events[i], events.events[i + 1]));
    ReadBandwidth& reading = out[i];
    reading.range_bytes = words[i].count * kWitnessWordBytes;
    reading.bytes_read = reading.range_bytes * passes[i];
    reading.event_seconds = static_cast<double>(milliseconds) / 1e3;
    const unsigned long long start = host_spans_[i];
    const unsigned long long end = host_spans_[kMaxSpans + i];
    // The global timer ticks in steps (up to a microsecond on some GPUs): a span it could not
    // see is timed by the events instead.
    reading.seconds = end > start && start != std::numeric_limits<unsigned long long>::max()
                          ? static_cast<double>(end - start) / 1e9
                          : reading.event_seconds;
  }
}

ReadBandwidth ReadWitness::measure(const void* ptr, std::size_t bytes, std::uint64_t min_bytes_read,
                                   std::chrono::milliseconds timeout) {
  const cs::Clock::time_point deadline = cs::deadline_after(timeout);
  std::lock_guard<std::mutex> lock(mutex_);
  detail::ScopedDevice scope(device_);
  const Target target{cs::prepare(ptr, bytes, device_, "read witness"), bytes};
  ReadBandwidth reading;
  measure_window(&target, 1, min_bytes_read, deadline, &reading);
  return reading;
}

BracketedReading ReadWitness::measure_bracketed(const void* ptr, std::size_t bytes,
                                                std::uint64_t min_bytes_read,
                                                std::chrono::milliseconds timeout) {
  const cs::Clock::time_point deadline = cs::deadline_after(timeout);
  std::lock_guard<std::mutex> lock(mutex_);
  detail::ScopedDevice scope(device_);
  const Target control{control_, control_bytes_};
  const Target window[3] = {
      control, {cs::prepare(ptr, bytes, device_, "read witness"), bytes}, control};
  ReadBandwidth readings[3];
  measure_window(window, 3, min_bytes_read, deadline, readings);
  return BracketedReading{readings[0], readings[1], readings[2]};
}

WitnessCalibration ReadWitness::calibrate(std::uint64_t min_bytes_read,
                                          std::chrono::milliseconds timeout) {
  const cs::Clock::time_point deadline = cs::deadline_after(timeout);
  std::lock_guard<std::mutex> lock(mutex_);
  detail::ScopedDevice scope(device_);
  struct HostBuffer {
    void* memory = nullptr;
    CUstream_st* stream = nullptr;
    ~HostBuffer() {
      // A reading past its deadline may still read it: then it stays allocated.
      if (memory == nullptr || cudaStreamQuery(stream) != cudaSuccess) return;
      (void)cudaFreeHost(memory);
    }
  } host{nullptr, stream_};
  VG_CUDA_CHECK(
      cudaHostAlloc(&host.memory, control_bytes_, cudaHostAllocMapped | cudaHostAllocPortable));
  std::fill_n(static_cast<unsigned char*>(host.memory), control_bytes_, 0x5A);
  void* host_on_device = nullptr;
  VG_CUDA_CHECK(cudaHostGetDevicePointer(&host_on_device, host.memory, 0));

  WitnessCalibration calibration;
  calibration.device = device_;
  calibration.buffer_bytes = control_bytes_;
  const Target pair[2] = {{control_, control_bytes_}, {host_on_device, control_bytes_}};
  for (int round = 0; round < 3; ++round) {
    ReadBandwidth readings[2];
    measure_window(pair, 2, min_bytes_read, deadline, readings);
    if (readings[0].gb_per_second() > calibration.device_memory.gb_per_second())
      calibration.device_memory = readings[0];
    if (readings[1].gb_per_second() > calibration.host_memory.gb_per_second())
      calibration.host_memory = readings[1];
  }
  return calibration;
}

}  // namespace vramguard
