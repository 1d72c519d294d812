// I1: integrity checksums of device memory at memory bandwidth, and the host reference they equal
// bit for bit. The checksum is a 128-bit non-cryptographic hash (not a defence against someone who
// means to forge a match): each 16-byte word of the buffer is mixed with its position by a
// bijective finalizer and the terms are summed, so one pass reads every byte once, any single
// changed byte always changes the result, and the value does not depend on the launch shape.
// The exact definition is in cuda/src/checksum_hash.hpp; src/checksum.rs ports it to Rust.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

// cudaStream_t is `CUstream_st*`: declared here so that this header needs no CUDA include.
struct CUstream_st;

namespace vramguard {

struct Checksum {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;

  // 32 lowercase hex digits, hi then lo: the same text as the Rust Checksum's Display.
  std::string to_hex() const;

  friend bool operator==(const Checksum& a, const Checksum& b) noexcept {
    return a.lo == b.lo && a.hi == b.hi;
  }
  friend bool operator!=(const Checksum& a, const Checksum& b) noexcept { return !(a == b); }
};

// The CPU reference: the checksum of `bytes` host bytes at `data` (data may be null when bytes is
// 0). Throws Error(VG_ERR_NULL_ARGUMENT) for a null data with bytes > 0.
Checksum host_checksum(const void* data, std::size_t bytes);

// How long device_checksum waits for the GPU unless told otherwise (vg_checksum_device's
// VG_CHECKSUM_DEFAULT_TIMEOUT_MS): thousands of times what 16 GiB takes on an H200 (3.9 ms).
inline constexpr std::chrono::milliseconds kDefaultChecksumTimeout{30'000};

// The checksum of `bytes` bytes at `device_ptr`, computed on `device` by one pass of a CUDA
// kernel, and waited for: the call is synchronous, but never waits past `timeout` (counted from
// the call): a GPU that is busy or hung makes it throw Error(VG_ERR_TIMEOUT) then, and the
// kernel is left to finish, or not, without anyone waiting for it.
//
// The kernel runs on `stream`, or with nullptr (the default) on vramguard's own non-blocking
// stream for the device, which does not wait for the legacy default stream or any other: memory
// written by the caller must be complete before the call. cudaMemcpy, and vramguard's copies,
// return complete; a kernel or an asynchronous copy that writes the buffer on any stream must be
// synchronised first.
//
// Any start address works; 16-byte-aligned ones take the fast path, and every start gives the same
// value for the same bytes. The memory must be readable by `device`: device memory of that device,
// managed memory, or pinned (mapped) host memory; anything else (pageable host memory, a freed or
// wild address) is refused with CudaError(cudaErrorInvalidValue) before any kernel runs. The caller
// guarantees that the whole range lies inside one allocation, which stays allocated until the
// call returns; after a timeout, until the GPU has finished (the late kernel may still read it: a
// later checksum that succeeds, or a device synchronisation, says it is done). bytes == 0
// gives the checksum of nothing. Throws Error for bad arguments (a timeout under 1 ms:
// VG_ERR_INVALID_SIZE), CudaError for CUDA failures (VG_ERR_CUDA_STICKY when the context is lost).
// The calling thread's current CUDA context is left as it was.
Checksum device_checksum(const void* device_ptr, std::size_t bytes, int device,
                         std::chrono::milliseconds timeout, CUstream_st* stream = nullptr);
// The same with kDefaultChecksumTimeout.
Checksum device_checksum(const void* device_ptr, std::size_t bytes, int device,
                         CUstream_st* stream = nullptr);

// device_checksum with the launch shape given: `blocks` blocks of `threads` threads (threads a
// multiple of 32, 32..1024; blocks 1..2^31-1). For tests of the determinism across shapes and for
// tuning; the result is the same for every shape. kDefaultChecksumTimeout applies.
Checksum device_checksum_with_shape(const void* device_ptr, std::size_t bytes, int device,
                                    unsigned blocks, unsigned threads,
                                    CUstream_st* stream = nullptr);

// The bandwidth ceiling the checksum is measured against: a kernel with the checksum's default
// launch shape and access pattern that loads every 16-byte word of the range once (the unaligned
// head and tail, if any, byte by byte), combines them by XOR and writes one value, so that no load
// can be dropped. Synchronous on `stream` (nullptr: vramguard's stream for the device), waited for
// as device_checksum does with kDefaultChecksumTimeout; the same readability rules.
void read_only_sweep(const void* device_ptr, std::size_t bytes, int device,
                     CUstream_st* stream = nullptr);

}  // namespace vramguard
