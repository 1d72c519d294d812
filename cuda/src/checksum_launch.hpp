// Internal: the checksum and sweep kernels without the synchronous wrapper, for the throughput
// figures (cuda/tests/checksum_test.cpp times the kernels alone with CUDA events) and for tuning.
#pragma once

#include <cstddef>

struct CUstream_st;

namespace vramguard::detail::checksum {

// 0 in a field means "the default for this device and size".
struct LaunchShape {
  unsigned blocks = 0;
  unsigned threads = 0;
  unsigned unroll = 0;  // 16-byte loads in flight per thread in the fast path: 1, 2, 4 or 8
};

// The shape a launch over `bytes` bytes on `device` (the current device) gets, with every 0 field
// of `requested` filled in: by default 4 blocks per SM, or as many as fit at once if fewer, and
// fewer still when the buffer is too small to keep them busy. `misaligned`: the start is not
// 16-byte aligned (a different kernel runs). Throws Error(VG_ERR_INVALID_SIZE) for a shape the
// kernels cannot run.
LaunchShape resolve_shape(int device, std::size_t bytes, LaunchShape requested,
                          bool misaligned = false);

// Enqueues the kernel that adds the two lane sums of the `bytes` bytes at `ptr` (readable by the
// current device) into lanes_device[0] and lanes_device[1], which the caller has zeroed. The
// current device must be the one that runs it. Does not wait. Throws CudaError.
void enqueue_lanes(const void* ptr, std::size_t bytes, unsigned long long* lanes_device,
                   LaunchShape shape, CUstream_st* stream);

// The address at which `device` (the current device) reads the `bytes` bytes at `ptr`: ptr itself
// for its device memory and managed memory, the device pointer of mapped pinned host memory.
// `function` names the caller in errors: Error(VG_ERR_NULL_ARGUMENT) for a null ptr,
// Error(VG_ERR_INVALID_SIZE) when ptr + bytes wraps, CudaError(cudaErrorInvalidValue) for memory
// the device cannot read (pageable, unmapped, freed, another GPU's).
const void* prepare(const void* ptr, std::size_t bytes, int device, const char* function);

// Enqueues read_only_sweep's kernel. Does not wait. Throws CudaError.
void enqueue_sweep(const void* ptr, std::size_t bytes, LaunchShape shape, CUstream_st* stream);

}  // namespace vramguard::detail::checksum
