// I1: the checksum kernels (definition in checksum_hash.hpp) and the synchronous device API.
//
// One pass, grid-stride. The fast path (16-byte-aligned start) issues `unroll` independent
// 16-byte non-coherent loads per thread before mixing them; a misaligned start reads the aligned
// 16-byte words that overlap the range and shifts them into the logical words, so every start
// gives the same value. Bytes outside [ptr, ptr + bytes) are never read: words that the range
// covers only in part are read byte by byte. Each thread sums its terms; a block adds its sums with
// warp shuffles and shared memory, then one atomicAdd per lane per block into a 16-byte slot of a
// module-global scratch array (no device allocation: nothing to leak, nothing to free). Sums mod
// 2^64 are order-independent, so the result is the same for every launch shape.
//
// The synchronous API runs on vramguard's own per-device stream and waits by polling up to a
// deadline (checksum_slots.hpp): a busy or hung GPU costs the caller the deadline, never more.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "checksum_hash.hpp"
#include "checksum_launch.hpp"
#include "checksum_slots.hpp"
#include "cuda_call.hpp"
#include "scoped_device.hpp"
#include "vramguard/checksum.hpp"
#include "vramguard/device.hpp"
#include "vramguard/error.hpp"

namespace vramguard {

namespace detail::checksum {

namespace {

// Measured on the H100 (4 GiB, kernel alone, against the sweep with the same shape): every shape
// with 2048 resident threads per SM reached 98.8-99.9 % of the read-only sweep; 1024 threads per
// SM with 4 loads in flight 92-96 %, 512 per SM 78-95 %. So: 4 blocks of 512 threads per SM, two
// 16-byte loads in flight each (32 registers), never more blocks than fit at once.
constexpr unsigned kDefaultThreads = 512;
constexpr unsigned kDefaultBlocksPerSm = 4;
constexpr unsigned kDefaultUnroll = 2;
constexpr unsigned kMaxThreads = 1024;

// Two lanes per slot, per device (each context has its own copy of a __device__ variable).
__device__ unsigned long long g_lanes[kSlots * 2];
// read_only_sweep's one written value.
__device__ unsigned long long g_sweep_sink;

__device__ __forceinline__ std::uint64_t warp_sum(std::uint64_t value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    value += __shfl_down_sync(0xFFFFFFFFu, value, offset);
  return value;
}

// Adds the block's two lane sums to lanes[0], lanes[1] with one atomicAdd each.
// blockDim.x is a multiple of 32 (resolve_shape checks it), so every warp is full.
__device__ __forceinline__ void add_block_lanes(std::uint64_t s0, std::uint64_t s1,
                                                unsigned long long* lanes) {
  __shared__ std::uint64_t warp0[kMaxThreads / 32];
  __shared__ std::uint64_t warp1[kMaxThreads / 32];
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  s0 = warp_sum(s0);
  s1 = warp_sum(s1);
  if (lane == 0) {
    warp0[warp] = s0;
    warp1[warp] = s1;
  }
  __syncthreads();
  if (warp == 0) {
    const unsigned warps = blockDim.x >> 5;
    s0 = lane < warps ? warp0[lane] : 0;
    s1 = lane < warps ? warp1[lane] : 0;
    s0 = warp_sum(s0);
    s1 = warp_sum(s1);
    if (lane == 0) {
      atomicAdd(lanes, static_cast<unsigned long long>(s0));
      atomicAdd(lanes + 1, static_cast<unsigned long long>(s1));
    }
  }
}

// Little-endian bytes [from, to) of the 16 bytes at `word`, others zero, byte by byte.
__device__ ulonglong2 load_partial(const unsigned char* word, std::uintptr_t from,
                                   std::uintptr_t to) {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  const auto address = reinterpret_cast<std::uintptr_t>(word);
  for (unsigned i = 0; i < 16; ++i) {
    if (address + i >= from && address + i < to) {
      const std::uint64_t byte = __ldg(word + i);
      if (i < 8) {
        lo |= byte << (8 * i);
      } else {
        hi |= byte << (8 * (i - 8));
      }
    }
  }
  return make_ulonglong2(lo, hi);
}

// 16-byte-aligned start: `full_words` whole words at `words`, then `tail_bytes` (< 16) bytes.
template <unsigned kUnroll>
__global__ void __launch_bounds__(kMaxThreads)
    checksum_aligned(const ulonglong2* __restrict__ words, std::uint64_t full_words,
                     unsigned tail_bytes, unsigned long long* __restrict__ lanes) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  std::uint64_t k = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  std::uint64_t key_a = key0(k);
  std::uint64_t key_b = key1(k);
  const std::uint64_t step_a = stride * kKeyStep0;
  const std::uint64_t step_b = stride * kKeyStep1;
  std::uint64_t s0 = 0;
  std::uint64_t s1 = 0;
  const std::uint64_t last_offset = (kUnroll - 1) * stride;
  while (k + last_offset < full_words) {
    ulonglong2 w[kUnroll];
#pragma unroll
    for (unsigned u = 0; u < kUnroll; ++u) w[u] = __ldg(words + k + u * stride);
#pragma unroll
    for (unsigned u = 0; u < kUnroll; ++u) {
      s0 += fmix64(w[u].x ^ key_a);
      s1 += fmix64(w[u].y ^ key_b);
      key_a += step_a;
      key_b += step_b;
    }
    k += kUnroll * stride;
  }
  for (; k < full_words; k += stride) {
    const ulonglong2 w = __ldg(words + k);
    s0 += fmix64(w.x ^ key_a);
    s1 += fmix64(w.y ^ key_b);
    key_a += step_a;
    key_b += step_b;
  }
  if (tail_bytes != 0 && blockIdx.x == 0 && threadIdx.x == 0) {
    const auto* tail = reinterpret_cast<const unsigned char*>(words + full_words);
    const auto from = reinterpret_cast<std::uintptr_t>(tail);
    const ulonglong2 w = load_partial(tail, from, from + tail_bytes);
    s0 += fmix64(w.x ^ key0(full_words));
    s1 += fmix64(w.y ^ key1(full_words));
  }
  add_block_lanes(s0, s1, lanes);
}

// Bits [shift, shift + 64) of the 128-bit value hi:lo, 0 < shift < 64.
__device__ __forceinline__ std::uint64_t funnel(std::uint64_t lo, std::uint64_t hi,
                                                unsigned shift) {
  return (lo >> shift) | (hi << (64 - shift));
}

// Any start (1..15 bytes past a 16-byte boundary): logical word k is the last 16 - m bytes of
// aligned word k and the first m bytes of aligned word k + 1, counted from the aligned base.
__global__ void __launch_bounds__(kMaxThreads)
    checksum_misaligned(const unsigned char* __restrict__ start, std::uint64_t bytes,
                        unsigned long long* __restrict__ lanes) {
  const auto from = reinterpret_cast<std::uintptr_t>(start);
  const std::uintptr_t to = from + bytes;
  const unsigned m = static_cast<unsigned>(from & 15u);
  const auto* base = reinterpret_cast<const ulonglong2*>(from - m);
  const std::uint64_t words = (bytes + kWordBytes - 1) / kWordBytes;
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  const auto aligned = [&](std::uint64_t j) {
    const auto address = reinterpret_cast<std::uintptr_t>(base + j);
    if (address >= from && address + kWordBytes <= to) return __ldg(base + j);
    return load_partial(reinterpret_cast<const unsigned char*>(base + j), from, to);
  };
  std::uint64_t s0 = 0;
  std::uint64_t s1 = 0;
  for (std::uint64_t k = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       k < words; k += stride) {
    const ulonglong2 p = aligned(k);
    const ulonglong2 q = aligned(k + 1);
    std::uint64_t a;
    std::uint64_t b;
    if (m < 8) {
      a = funnel(p.x, p.y, 8 * m);
      b = funnel(p.y, q.x, 8 * m);
    } else if (m == 8) {
      a = p.y;
      b = q.x;
    } else {
      a = funnel(p.y, q.x, 8 * (m - 8));
      b = funnel(q.x, q.y, 8 * (m - 8));
    }
    s0 += fmix64(a ^ key0(k));
    s1 += fmix64(b ^ key1(k));
  }
  add_block_lanes(s0, s1, lanes);
}

// The ceiling: every aligned 16-byte word of the range loaded once (as in checksum_aligned),
// the unaligned head and tail byte by byte, all XORed; one atomicXor per warp.
template <unsigned kUnroll>
__global__ void __launch_bounds__(kMaxThreads)
    sweep(const ulonglong2* __restrict__ words, std::uint64_t full_words, const unsigned char* head,
          unsigned head_bytes, const unsigned char* tail, unsigned tail_bytes) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  std::uint64_t k = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  std::uint64_t x = 0;
  const std::uint64_t last_offset = (kUnroll - 1) * stride;
  while (k + last_offset < full_words) {
    ulonglong2 w[kUnroll];
#pragma unroll
    for (unsigned u = 0; u < kUnroll; ++u) w[u] = __ldg(words + k + u * stride);
#pragma unroll
    for (unsigned u = 0; u < kUnroll; ++u) x ^= w[u].x ^ w[u].y;
    k += kUnroll * stride;
  }
  for (; k < full_words; k += stride) {
    const ulonglong2 w = __ldg(words + k);
    x ^= w.x ^ w.y;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    for (unsigned i = 0; i < head_bytes; ++i) x ^= __ldg(head + i);
    for (unsigned i = 0; i < tail_bytes; ++i) x ^= __ldg(tail + i);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x ^= __shfl_down_sync(0xFFFFFFFFu, x, offset);
  if ((threadIdx.x & 31u) == 0) atomicXor(&g_sweep_sink, static_cast<unsigned long long>(x));
}

int multiprocessors(int device) {
  int count = 0;
  VG_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count > 0 ? count : 1;
}

// Blocks of the kernel that will run that fit on one SM at once (at least 1).
int resident_blocks(bool misaligned, unsigned unroll, unsigned threads) {
  int blocks = 0;
  cudaError_t result;
  if (misaligned) {
    result =
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, checksum_misaligned, threads, 0);
  } else {
    switch (unroll) {
      case 1:
        result =
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, checksum_aligned<1>, threads, 0);
        break;
      case 2:
        result =
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, checksum_aligned<2>, threads, 0);
        break;
      case 8:
        result =
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, checksum_aligned<8>, threads, 0);
        break;
      default:
        result =
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, checksum_aligned<4>, threads, 0);
        break;
    }
  }
  ::vramguard::detail::check(result, "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  return blocks > 0 ? blocks : 1;
}

void check_launch(const char* kernel) {
  const cudaError_t result = cudaGetLastError();
  if (result != cudaSuccess) throw CudaError(static_cast<int>(result), kernel);
}

std::string describe_timeout(std::chrono::milliseconds timeout, int device) {
  return "device_checksum: GPU " + std::to_string(device) + " did not finish within " +
         std::to_string(timeout.count()) +
         " ms (busy or hung); the kernel is left to the GPU, nothing waits for it";
}

Checksum checksum_on_device(const void* ptr, std::size_t bytes, int device, LaunchShape requested,
                            CUstream_st* stream, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = deadline_after(timeout);
  require_valid_device(device);
  if (bytes == 0) return host_checksum(nullptr, 0);
  ScopedDevice scope(device);
  const void* readable = prepare(ptr, bytes, device, "device_checksum");
  const bool misaligned = reinterpret_cast<std::uintptr_t>(readable) % kWordBytes != 0;
  const LaunchShape shape = resolve_shape(device, bytes, requested, misaligned);
  unsigned long long* all_lanes = nullptr;
  VG_CUDA_CHECK(cudaGetSymbolAddress(reinterpret_cast<void**>(&all_lanes), g_lanes));

  SlotLease lease(device, deadline);
  CUstream_st* on = stream != nullptr ? stream : device_stream(device);
  unsigned long long* lanes = all_lanes + 2 * lease.slot();
  lease.enqueuing_on(on);
  VG_CUDA_CHECK(cudaMemsetAsync(lanes, 0, 2 * sizeof(unsigned long long), on));
  enqueue_lanes(readable, bytes, lanes, shape, on);
  VG_CUDA_CHECK(cudaMemcpyAsync(lease.readback(), lanes, 2 * sizeof(unsigned long long),
                                cudaMemcpyDeviceToHost, on));
  if (!lease.wait_until(deadline)) throw Error(VG_ERR_TIMEOUT, describe_timeout(timeout, device));
  const Folded folded = finalize(lease.readback()[0], lease.readback()[1], bytes);
  return Checksum{folded.lo, folded.hi};
}

}  // namespace

// The address the device reads the memory at; refuses memory it cannot read.
static const void* readable_address(const void* ptr, int device, const std::string& function) {
  cudaPointerAttributes attributes{};
  VG_CUDA_CHECK(cudaPointerGetAttributes(&attributes, ptr));
  switch (attributes.type) {
    case cudaMemoryTypeDevice:
      if (attributes.device == device) return ptr;
      throw Error(VG_ERR_NOT_READABLE, function + ": the memory belongs to GPU " +
                                           std::to_string(attributes.device) + ", not GPU " +
                                           std::to_string(device));
    case cudaMemoryTypeManaged: return ptr;
    case cudaMemoryTypeHost:
      if (attributes.devicePointer != nullptr) return attributes.devicePointer;
      throw Error(VG_ERR_NOT_READABLE,
                  function + ": the pinned host memory is not mapped into the device");
    default:
      throw Error(VG_ERR_NOT_READABLE, function +
                                           ": the memory is not readable by the GPU (pageable "
                                           "host memory, or a freed or wild address)");
  }
}

// Arguments common to the checksum and the sweep; returns the device-readable address.
const void* prepare(const void* ptr, std::size_t bytes, int device, const char* function) {
  if (ptr == nullptr) throw Error(VG_ERR_NULL_ARGUMENT, std::string(function) + ": ptr is null");
  if (reinterpret_cast<std::uintptr_t>(ptr) + bytes < reinterpret_cast<std::uintptr_t>(ptr)) {
    throw Error(VG_ERR_INVALID_SIZE, std::string(function) + ": ptr + bytes wraps around");
  }
  return readable_address(ptr, device, function);
}

LaunchShape resolve_shape(int device, std::size_t bytes, LaunchShape requested, bool misaligned) {
  LaunchShape shape = requested;
  if (shape.threads == 0) shape.threads = kDefaultThreads;
  if (shape.threads % 32 != 0 || shape.threads > kMaxThreads) {
    throw Error(VG_ERR_INVALID_SIZE, "checksum launch: threads per block " +
                                         std::to_string(shape.threads) +
                                         " is not a multiple of 32 between 32 and 1024");
  }
  if (shape.unroll == 0) shape.unroll = kDefaultUnroll;
  if (shape.unroll != 1 && shape.unroll != 2 && shape.unroll != 4 && shape.unroll != 8) {
    throw Error(VG_ERR_INVALID_SIZE,
                "checksum launch: unroll " + std::to_string(shape.unroll) + " is not 1, 2, 4 or 8");
  }
  if (shape.blocks > 0x7FFFFFFFu) {
    throw Error(VG_ERR_INVALID_SIZE,
                "checksum launch: " + std::to_string(shape.blocks) + " blocks exceed 2^31 - 1");
  }
  if (shape.blocks == 0) {
    // Enough blocks to fill the GPU in one wave, fewer when the buffer cannot keep them busy.
    const int per_sm = std::min<int>(kDefaultBlocksPerSm,
                                     resident_blocks(misaligned, shape.unroll, shape.threads));
    const std::uint64_t full = std::uint64_t(per_sm) * multiprocessors(device);
    const std::uint64_t per_block = std::uint64_t{shape.threads} * shape.unroll * kWordBytes;
    const std::uint64_t needed = (bytes + per_block - 1) / per_block;
    shape.blocks = static_cast<unsigned>(needed < 1 ? 1 : (needed < full ? needed : full));
  }
  return shape;
}

void enqueue_lanes(const void* ptr, std::size_t bytes, unsigned long long* lanes_device,
                   LaunchShape shape, CUstream_st* stream) {
  (void)cudaGetLastError();  // a failure left by an earlier, unrelated call is not this launch's
  const auto address = reinterpret_cast<std::uintptr_t>(ptr);
  const dim3 grid(shape.blocks);
  const dim3 block(shape.threads);
  if (address % kWordBytes != 0) {
    checksum_misaligned<<<grid, block, 0, stream>>>(static_cast<const unsigned char*>(ptr), bytes,
                                                    lanes_device);
    check_launch("checksum_misaligned<<<>>>");
    return;
  }
  const auto* words = static_cast<const ulonglong2*>(ptr);
  const std::uint64_t full_words = bytes / kWordBytes;
  const auto tail = static_cast<unsigned>(bytes % kWordBytes);
  switch (shape.unroll) {
    case 1:
      checksum_aligned<1><<<grid, block, 0, stream>>>(words, full_words, tail, lanes_device);
      break;
    case 2:
      checksum_aligned<2><<<grid, block, 0, stream>>>(words, full_words, tail, lanes_device);
      break;
    case 8:
      checksum_aligned<8><<<grid, block, 0, stream>>>(words, full_words, tail, lanes_device);
      break;
    default:
      checksum_aligned<4><<<grid, block, 0, stream>>>(words, full_words, tail, lanes_device);
      break;
  }
  check_launch("checksum_aligned<<<>>>");
}

void enqueue_sweep(const void* ptr, std::size_t bytes, LaunchShape shape, CUstream_st* stream) {
  (void)cudaGetLastError();
  const auto from = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uintptr_t to = from + bytes;
  std::uintptr_t first = (from + kWordBytes - 1) & ~std::uintptr_t{kWordBytes - 1};
  if (first > to) first = to;
  std::uintptr_t last = to & ~std::uintptr_t{kWordBytes - 1};
  if (last < first) last = first;
  const dim3 grid(shape.blocks);
  const dim3 block(shape.threads);
  const auto* words = reinterpret_cast<const ulonglong2*>(first);
  const std::uint64_t full_words = (last - first) / kWordBytes;
  const auto* head = reinterpret_cast<const unsigned char*>(from);
  const auto head_bytes = static_cast<unsigned>(first - from);
  const auto* tail = reinterpret_cast<const unsigned char*>(last);
  const auto tail_bytes = static_cast<unsigned>(to - last);
  switch (shape.unroll) {
    case 1:
      sweep<1><<<grid, block, 0, stream>>>(words, full_words, head, head_bytes, tail, tail_bytes);
      break;
    case 2:
      sweep<2><<<grid, block, 0, stream>>>(words, full_words, head, head_bytes, tail, tail_bytes);
      break;
    case 8:
      sweep<8><<<grid, block, 0, stream>>>(words, full_words, head, head_bytes, tail, tail_bytes);
      break;
    default:
      sweep<4><<<grid, block, 0, stream>>>(words, full_words, head, head_bytes, tail, tail_bytes);
      break;
  }
  check_launch("sweep<<<>>>");
}

}  // namespace detail::checksum

Checksum device_checksum(const void* device_ptr, std::size_t bytes, int device,
                         CUstream_st* stream) {
  return device_checksum(device_ptr, bytes, device, kDefaultChecksumTimeout, stream);
}

Checksum device_checksum(const void* device_ptr, std::size_t bytes, int device,
                         std::chrono::milliseconds timeout, CUstream_st* stream) {
  return detail::checksum::checksum_on_device(device_ptr, bytes, device, {}, stream, timeout);
}

Checksum device_checksum_with_shape(const void* device_ptr, std::size_t bytes, int device,
                                    unsigned blocks, unsigned threads, CUstream_st* stream) {
  if (blocks == 0 || threads == 0) {
    throw Error(VG_ERR_INVALID_SIZE, "device_checksum_with_shape: blocks and threads must be > 0");
  }
  detail::checksum::LaunchShape shape;
  shape.blocks = blocks;
  shape.threads = threads;
  return detail::checksum::checksum_on_device(device_ptr, bytes, device, shape, stream,
                                              kDefaultChecksumTimeout);
}

void read_only_sweep(const void* device_ptr, std::size_t bytes, int device, CUstream_st* stream) {
  namespace cs = detail::checksum;
  const cs::Clock::time_point deadline = cs::deadline_after(kDefaultChecksumTimeout);
  require_valid_device(device);
  if (bytes == 0) return;
  detail::ScopedDevice scope(device);
  const void* readable = cs::prepare(device_ptr, bytes, device, "read_only_sweep");
  CUstream_st* on = stream != nullptr ? stream : cs::device_stream(device);
  cs::enqueue_sweep(readable, bytes, cs::resolve_shape(device, bytes, {}), on);
  if (!cs::wait_for_stream(on, deadline)) {
    throw Error(VG_ERR_TIMEOUT, "read_only_sweep: GPU " + std::to_string(device) +
                                    " did not finish within the default checksum timeout");
  }
}

}  // namespace vramguard
