#include "vramguard/error.hpp"

#include <cuda_runtime_api.h>

namespace vramguard {

namespace {
std::string describe(int code, const char* call) {
  const auto error = static_cast<cudaError_t>(code);
  return std::string(call) + " failed: " + cudaGetErrorName(error) + " (" +
         cudaGetErrorString(error) + ")";
}
}  // namespace

CudaError::CudaError(int cuda_code, const char* call)
    : Error(status_for_cuda_error(cuda_code), describe(cuda_code, call)),
      cuda_code_(cuda_code),
      call_(call),
      name_(cudaGetErrorName(static_cast<cudaError_t>(cuda_code))) {}

vg_status status_for_cuda_error(int cuda_code) noexcept {
  switch (static_cast<cudaError_t>(cuda_code)) {
    case cudaSuccess: return VG_OK;
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorDevicesUnavailable:
      return VG_ERR_NO_DEVICE;
    case cudaErrorInvalidDevice: return VG_ERR_INVALID_DEVICE;
    case cudaErrorMemoryAllocation: return VG_ERR_OUT_OF_MEMORY;
    default: return VG_ERR_CUDA;
  }
}

}  // namespace vramguard
