#include "vramguard/memory_pool.hpp"

#include <cstdint>
#include <cuda_runtime_api.h>

#include "cuda_call.hpp"
#include "vramguard/device.hpp"

namespace vramguard {

MemoryPool::MemoryPool(int device) : device_(device) {
  require_valid_device(device);
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

MemoryPool::~MemoryPool() noexcept {
  // Frees still queued on the default stream must finish before the pool goes.
  (void)cudaStreamSynchronize(nullptr);
  if (cudaMemPoolDestroy(static_cast<cudaMemPool_t>(pool_)) != cudaSuccess) (void)cudaGetLastError();
}

}  // namespace vramguard
