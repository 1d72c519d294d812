// Fault injection for tests (faults.h): a kernel that breaks the context, and one that holds
// every SM for a while.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "faults.h"

namespace {

// 0x10: inside the first page of the address space, which the GPU never maps.
__global__ void write_out_of_bounds() {
  *reinterpret_cast<volatile unsigned*>(std::uintptr_t{0x10}) = 0xDEADu;
}

__device__ __forceinline__ unsigned long long global_timer_ns() {
  unsigned long long now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

// Every thread spins until `nanoseconds` have passed since its block started. The dynamic shared
// memory is claimed, never used: it keeps other kernels' blocks off the SM.
__global__ void __launch_bounds__(1024) spin(unsigned long long nanoseconds) {
  extern __shared__ unsigned char claimed[];
  (void)claimed;
  __shared__ unsigned long long start;
  if (threadIdx.x == 0) start = global_timer_ns();
  __syncthreads();
  while (global_timer_ns() - start < nanoseconds) {
  }
}

int attribute(cudaDeviceAttr attr, int device, int* value) {
  return static_cast<int>(cudaDeviceGetAttribute(value, attr, device));
}

}  // namespace

extern "C" int vg_test_fault_out_of_bounds(int device) {
  cudaError_t result = cudaSetDevice(device);
  if (result != cudaSuccess) return static_cast<int>(result);
  (void)cudaGetLastError();  // an earlier, unrelated failure is not this launch's
  write_out_of_bounds<<<1, 1>>>();
  result = cudaGetLastError();
  if (result != cudaSuccess) return static_cast<int>(result);
  return static_cast<int>(cudaDeviceSynchronize());
}

extern "C" int vg_test_spin_all_sms(int device, unsigned milliseconds) {
  cudaError_t result = cudaSetDevice(device);
  if (result != cudaSuccess) return static_cast<int>(result);
  int sms = 0;
  int shared_per_sm = 0;
  int shared_per_block_max = 0;
  int reserved_per_block = 0;
  int error = attribute(cudaDevAttrMultiProcessorCount, device, &sms);
  if (error == 0)
    error = attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor, device, &shared_per_sm);
  if (error == 0) {
    error = attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device, &shared_per_block_max);
  }
  if (error == 0) {
    error = attribute(cudaDevAttrReservedSharedMemoryPerBlock, device, &reserved_per_block);
  }
  if (error != 0) return error;
  constexpr int kThreads = 1024;
  // Blocks that fit on one SM by threads and registers; then each claims an equal share of the
  // SM's shared memory, so no block of another kernel finds room, whatever its shape.
  int blocks_per_sm = 0;
  result = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, spin, kThreads, 0);
  if (result != cudaSuccess) return static_cast<int>(result);
  blocks_per_sm = std::max(blocks_per_sm, 1);
  // The share, less what the runtime keeps per block and the kernel's own variable; then less
  // again, 256 bytes at a time, while allocation granularity keeps that many blocks from fitting.
  const int static_shared = static_cast<int>(sizeof(unsigned long long));
  int dynamic_shared = shared_per_sm / blocks_per_sm - reserved_per_block - static_shared;
  dynamic_shared = std::max(0, std::min(dynamic_shared, shared_per_block_max - static_shared));
  for (;;) {
    result =
        cudaFuncSetAttribute(spin, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic_shared);
    if (result != cudaSuccess) return static_cast<int>(result);
    int fitting = 0;
    result =
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fitting, spin, kThreads, dynamic_shared);
    if (result != cudaSuccess) return static_cast<int>(result);
    if (fitting >= blocks_per_sm || dynamic_shared == 0) break;
    dynamic_shared = std::max(0, dynamic_shared - 256);
  }
  const unsigned long long nanoseconds = static_cast<unsigned long long>(milliseconds) * 1000000ull;
  const dim3 grid(static_cast<unsigned>(blocks_per_sm * sms));
  (void)cudaGetLastError();
  spin<<<grid, kThreads, static_cast<std::size_t>(dynamic_shared)>>>(nanoseconds);
  return static_cast<int>(cudaGetLastError());
}
