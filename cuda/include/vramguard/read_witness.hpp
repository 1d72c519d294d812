// The read witness: where a buffer's bytes are, judged by how fast the GPU reads them, not by how
// the memory was allocated.
//
// cudaPointerGetAttributes says how memory was allocated; a driver that backs "device" memory with
// system memory (NVIDIA's system-memory fallback on Windows and WSL) keeps that answer the same.
// Physics does not: the GPU reads its HBM at terabytes per second and mapped host memory over PCIe
// at about 50 GB/s. The witness kernel reads a range with ld.global.cv loads, which re-fetch
// system memory on every load instead of serving it from L2, `passes` times over, so that a small
// range is read often enough for the time to be measured.
//
// A reading is timed by the GPU's global timer from its first block's start to its last block's
// end, not by events around the launch: the worker's own kernels may hold every SM for
// milliseconds, and the time a reading waits for an SM says nothing about where its bytes are.
// Readings run on a stream of the witness's own at the device's greatest priority, so that its
// blocks go first when SMs free up, and nothing else of vramguard's queues in front of them.
//
// A reading alone can still be slowed by the worker's kernels sharing the SMs and the memory
// system. The witness therefore owns a control buffer of device memory, and can read it right
// before and right after a target in one window on its stream: a target read as fast as the
// control is device memory, one read many times slower than both controls is not, whatever the
// GPU is doing. The decision belongs to the caller (the Rust crate's witness policy).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "vramguard.h"

struct CUstream_st;

namespace vramguard {

// One timed read.
struct ReadBandwidth {
  std::uint64_t range_bytes = 0;  // the 16-byte-aligned part of the range that was read
  std::uint64_t bytes_read = 0;   // range_bytes x passes
  double seconds = 0.0;           // from the first block's start to the last block's end
  double event_seconds = 0.0;     // between events around the launch: `seconds` plus any wait
  double gb_per_second() const noexcept {
    return seconds > 0.0 ? static_cast<double>(bytes_read) / seconds / 1e9 : 0.0;
  }
};

// A target read between two readings of the control buffer, in one window on one stream.
struct BracketedReading {
  ReadBandwidth control_before;
  ReadBandwidth target;
  ReadBandwidth control_after;
};

// What a device reads its own memory (the control buffer) and mapped pinned host memory at.
struct WitnessCalibration {
  int device = 0;
  std::uint64_t buffer_bytes = 0;
  ReadBandwidth device_memory;
  ReadBandwidth host_memory;
  // The geometric mean of the two: a reading slower than this is suspected host-backed.
  double threshold_gb_per_second() const noexcept;
};

// The smallest range the witness reads: one 16-byte word. A range too small to contain one
// aligned word is refused (Error(VG_ERR_INVALID_SIZE)).
inline constexpr std::size_t kWitnessWordBytes = 16;
// The smallest range whose reading the witness judges: below it, loads of mapped host memory can
// be served faster than PCIe delivers them (the test of every size prints the figures).
inline constexpr std::size_t kWitnessSmallestJudgedBytes = VG_WITNESS_SMALLEST_JUDGED_BYTES;
// The control buffer and the calibration's host buffer: larger than L2, so that host memory is
// not served from it, small enough to pin in milliseconds.
inline constexpr std::size_t kWitnessControlBytes = VG_WITNESS_CONTROL_BYTES;
// At most this many passes over one range (a 16-byte range needs 2^24 passes for 256 MiB; it is
// measured over fewer bytes instead).
inline constexpr std::uint64_t kMaxWitnessPasses = 1ull << 20;

// The witness of one device: its stream, its control buffer and the small buffers its readings
// report their times through. Readings are serialised (they share all of these). Thread-safe.
class ReadWitness {
 public:
  // Allocates `control_bytes` of device memory (cudaMalloc, untracked: vramguard's own) on
  // `device` and creates the stream. Throws Error (VG_ERR_INVALID_SIZE for a control buffer
  // under 1 MiB or over VG_MAX_ALLOCATION_BYTES, the device statuses of vg_alloc) or CudaError.
  // The calling thread's current context is left as it was.
  ReadWitness(int device, std::size_t control_bytes);
  // Frees what it allocated, unless a reading that passed its deadline may still use it: then
  // the memory and the stream are left to the context's end rather than freed under the GPU.
  ~ReadWitness() noexcept;
  ReadWitness(const ReadWitness&) = delete;
  ReadWitness& operator=(const ReadWitness&) = delete;

  int device() const noexcept { return device_; }
  std::size_t control_bytes() const noexcept { return control_bytes_; }

  // Reads the aligned 16-byte words inside [ptr, ptr + bytes), as many passes as make at least
  // `min_bytes_read` bytes (at most kMaxWitnessPasses). The memory must be readable by the device
  // (device memory of this device, managed, or mapped pinned host memory: Error(VG_ERR_NOT_
  // READABLE) otherwise) and stay allocated until the call returns. Waits up to `timeout`
  // (Error(VG_ERR_TIMEOUT) past it; the kernel is left to the GPU).
  ReadBandwidth measure(const void* ptr, std::size_t bytes, std::uint64_t min_bytes_read,
                        std::chrono::milliseconds timeout);
  // The control buffer, the target as measure() reads it, the control buffer again: queued back
  // to back on the witness's stream and waited for once.
  BracketedReading measure_bracketed(const void* ptr, std::size_t bytes,
                                     std::uint64_t min_bytes_read,
                                     std::chrono::milliseconds timeout);
  // The control buffer and a mapped pinned host buffer of the same size (allocated for the call,
  // freed before it returns unless the deadline passed), the best of three readings each.
  WitnessCalibration calibrate(std::uint64_t min_bytes_read, std::chrono::milliseconds timeout);

 private:
  struct Target {
    const void* readable;
    std::size_t bytes;
  };
  // Queues the readings of `targets` (at most kMaxSpans) in one window and waits for them.
  void measure_window(const Target* targets, int count, std::uint64_t min_bytes_read,
                      std::chrono::steady_clock::time_point deadline, ReadBandwidth* out);

  static constexpr int kMaxSpans = 3;
  std::mutex mutex_;
  int device_ = 0;
  std::size_t control_bytes_ = 0;
  void* control_ = nullptr;
  CUstream_st* stream_ = nullptr;
  // Per reading of a window: the earliest block start and the latest block end (global timer,
  // ns): starts in [0, kMaxSpans), ends in [kMaxSpans, 2 * kMaxSpans); copied back to host_spans_.
  unsigned long long* device_spans_ = nullptr;
  unsigned long long* host_spans_ = nullptr;
  // A reading passed its deadline: the GPU may still run it, so nothing may be freed.
  bool abandoned_ = false;
};

}  // namespace vramguard
