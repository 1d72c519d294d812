#include "raw_allocation.hpp"

#include <cuda_runtime_api.h>

#include "cuda_call.hpp"
#include "scoped_device.hpp"

namespace vramguard::detail {

CUstream_st* pool_stream() noexcept { return cudaStreamLegacy; }

void* raw_allocate(AllocationKind kind, std::size_t bytes, MemoryPool* pool) {
  void* ptr = nullptr;
  switch (kind) {
    case AllocationKind::Device: VG_CUDA_CHECK(cudaMalloc(&ptr, bytes)); break;
    case AllocationKind::Pool:
      // The legacy default stream orders the allocation before any later cudaMemcpy.
      VG_CUDA_CHECK(cudaMallocFromPoolAsync(&ptr, bytes, static_cast<cudaMemPool_t>(pool->handle()),
                                            pool_stream()));
      break;
    case AllocationKind::Managed:
      VG_CUDA_CHECK(cudaMallocManaged(&ptr, bytes, cudaMemAttachGlobal));
      break;
    case AllocationKind::PinnedHost: VG_CUDA_CHECK(cudaMallocHost(&ptr, bytes)); break;
    case AllocationKind::Adopted:
    default:
      throw Error(VG_ERR_INVALID_ENUM, "kind Adopted is recorded with adopt(), not allocated");
  }
  return ptr;
}

int raw_free(AllocationKind kind, void* ptr) noexcept {
  cudaError_t result = cudaSuccess;
  switch (kind) {
    case AllocationKind::Device:
    case AllocationKind::Managed: result = cudaFree(ptr); break;
    case AllocationKind::Pool: result = cudaFreeAsync(ptr, pool_stream()); break;
    case AllocationKind::PinnedHost: result = cudaFreeHost(ptr); break;
    case AllocationKind::Adopted: break;
  }
  if (result != cudaSuccess) (void)cudaGetLastError();
  return static_cast<int>(result);
}

}  // namespace vramguard::detail

namespace vramguard::detail {

Removal release_owned(VramTracker& tracker, const void* ptr, int* cuda_error) noexcept {
  AllocationRecord record;
  const Removal removal = tracker.take_owned(ptr, &record);
  if (removal != Removal::Removed) return removal;
  int result = 0;
  try {
    ScopedDevice scope(tracker.device());
    result = raw_free(record.kind, record.ptr);
  } catch (const CudaError& e) {
    // The device's context cannot be made current (a sticky error, say): the memory cannot be
    // freed now, and goes with the context. The record is gone either way.
    result = e.cuda_code();
  } catch (...) {
    result = static_cast<int>(cudaErrorUnknown);
  }
  if (cuda_error != nullptr) *cuda_error = result;
  return removal;
}

}  // namespace vramguard::detail
