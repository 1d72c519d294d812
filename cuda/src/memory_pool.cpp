#include "vramguard/memory_pool.hpp"

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda_call.hpp"
#include "raw_allocation.hpp"
#include "scoped_device.hpp"
#include "vramguard/device.hpp"

namespace vramguard {

MemoryPool::MemoryPool(int device) : device_(device) {
  require_valid_device(device);
  detail::ScopedDevice scope(device);
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;  // pinned in device memory, not host memory
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  cudaMemPool_t pool = nullptr;
  VG_CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
  std::uint64_t keep_everything = UINT64_MAX;
  const cudaError_t result =
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_everything);
  if (result != cudaSuccess) {
    (void)cudaMemPoolDestroy(pool);
    detail::check(result, "cudaMemPoolSetAttribute(cudaMemPoolAttrReleaseThreshold)");
  }
  pool_ = pool;
}

MemoryPool::Usage MemoryPool::usage() const {
  detail::ScopedDevice scope(device_);
  Usage usage;
  const auto pool = static_cast<cudaMemPool_t>(pool_);
  VG_CUDA_CHECK(
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &usage.reserved_bytes));
  VG_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &usage.used_bytes));
  return usage;
}

MemoryPool::~MemoryPool() noexcept {
  try {
    // Frees still queued on the pool's stream (raw_free's cudaFreeAsync) must finish before the
    // pool goes, so that its memory is back with the driver when this returns. That is the stream
    // of the pool's device, not of whatever device (or none) the destroying thread is on, and the
    // thread's context is left as it was.
    detail::ScopedDevice scope(device_);
    if (cudaStreamSynchronize(detail::pool_stream()) != cudaSuccess) (void)cudaGetLastError();
    if (cudaMemPoolDestroy(static_cast<cudaMemPool_t>(pool_)) != cudaSuccess)
      (void)cudaGetLastError();
  } catch (...) {
    // The device's context cannot be made current (a sticky error, a driver going away): nothing
    // can run on it any more, and the pool goes with the context.
  }
}

}  // namespace vramguard
