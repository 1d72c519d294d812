// Internal: checking CUDA runtime calls, and switching the calling thread's device for a scope.
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

// Makes `device` current for the scope and restores the previous device, so that calls on behalf
// of one tracker never move the caller's thread to another GPU.
class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    VG_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      VG_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
  }
  ~ScopedDevice() {
    if (switched_) (void)cudaSetDevice(previous_);
  }
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

}  // namespace vramguard::detail
