// Internal: checking CUDA runtime calls. Switching the calling thread's device for a scope is
// ScopedDevice (scoped_device.hpp).
#pragma once

#include <cuda_runtime_api.h>

#include "vramguard/error.hpp"

namespace vramguard::detail {

// Throws CudaError naming the call. Clears the runtime's last error first so that a failure such
// as cudaErrorMemoryAllocation does not resurface in an unrelated later call.
inline void check(cudaError_t result, const char* call) {
  if (result != cudaSuccess) {
    (void)cudaGetLastError();
    throw CudaError(static_cast<int>(result), call);
  }
}

#define VG_CUDA_CHECK(expr) ::vramguard::detail::check((expr), #expr)

}  // namespace vramguard::detail
