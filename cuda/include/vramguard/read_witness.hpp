// The bandwidth witness (issue 16, part 1): where a buffer's bytes are, judged by how fast the GPU
// reads them, not by how the memory was allocated.
//
// cudaPointerGetAttributes says how memory was allocated; a driver that backs "device" memory with
// system memory (NVIDIA's system-memory fallback on Windows and WSL) keeps that answer the same.
// Physics does not: on the H200 the GPU reads its HBM at about 4.5 TB/s and mapped host memory
// over PCIe at about 50 GB/s. The witness kernel reads a range with ld.global.cv loads, which
// re-fetch system memory on every load instead of serving it from L2 (device memory is served
// from L2, which only makes it faster), `passes` times over, so that a small range is read often
// enough for the time to be measured; the time comes from CUDA events around the kernel.
//
// Calibration measures, on the device, a device buffer and a mapped pinned host buffer of the same
// size through the same kernel; a range read below the geometric mean of the two figures is judged
// host-backed. The two are about 90x apart on the H200, so the threshold is about 10x from each.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "vramguard.h"

namespace vramguard {

// One timed read.
struct ReadBandwidth {
  std::uint64_t range_bytes = 0;  // the 16-byte-aligned part of the range that was read
  std::uint64_t bytes_read = 0;   // range_bytes x passes
  double seconds = 0.0;           // kernel time between CUDA events
  double gb_per_second() const noexcept {
    return seconds > 0.0 ? static_cast<double>(bytes_read) / seconds / 1e9 : 0.0;
  }
};

// The smallest range the witness reads: one 16-byte word. A range too small to contain one
// aligned word is refused (Error(VG_ERR_INVALID_SIZE)).
inline constexpr std::size_t kWitnessWordBytes = 16;
// The smallest range whose reading the witness judges: below it, loads of mapped host memory can
// be served faster than PCIe delivers them (the test of every size prints the figures).
inline constexpr std::size_t kWitnessSmallestJudgedBytes = VG_WITNESS_SMALLEST_JUDGED_BYTES;
// The calibration's buffers: large enough to leave L2 behind for host memory, small enough to pin
// in milliseconds.
inline constexpr std::size_t kWitnessCalibrationBytes = 64ull << 20;
// At most this many passes over one range (a 16-byte range needs 2^24 passes for 256 MiB; it is
// measured over fewer bytes instead).
inline constexpr std::uint64_t kMaxWitnessPasses = 1ull << 20;

// Reads the 16-byte-aligned words inside [ptr, ptr + bytes) on `device`, as many passes as it
// takes to read at least `min_bytes_read` bytes (at most kMaxWitnessPasses), and times the kernel
// with CUDA events on vramguard's stream for the device. Waits up to `timeout` (Error(VG_ERR_
// TIMEOUT) past it; the kernel is left to the GPU). The memory must be readable by the device
// (device memory of `device`, managed, or mapped pinned host memory: CudaError otherwise) and stay
// allocated until the call returns. The calling thread's current context is left as it was.
ReadBandwidth measure_read_bandwidth(const void* ptr, std::size_t bytes, int device,
                                     std::uint64_t min_bytes_read,
                                     std::chrono::milliseconds timeout);

// What a device reads its own memory and mapped pinned host memory at, through the witness.
struct WitnessCalibration {
  int device = 0;
  std::uint64_t buffer_bytes = 0;
  ReadBandwidth device_memory;
  ReadBandwidth host_memory;
  // The geometric mean of the two: a range read slower than this is judged host-backed.
  double threshold_gb_per_second() const noexcept;
};

// Calibrates `device`: allocates `buffer_bytes` of device memory (cudaMalloc) and of mapped pinned
// host memory (cudaHostAlloc), reads each through measure_read_bandwidth (the best of three
// readings), and frees both before returning, also on failure. Throws Error/CudaError.
WitnessCalibration calibrate_read_witness(int device, std::size_t buffer_bytes,
                                          std::uint64_t min_bytes_read,
                                          std::chrono::milliseconds timeout);

}  // namespace vramguard
