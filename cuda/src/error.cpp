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

// The errors whose CUDA runtime documentation (driver_types.h, CUDA 13.0) says the process is left
// in an inconsistent state and "must be terminated and relaunched", plus one it does not say so
// of: cudaErrorECCUncorrectable, whose documentation says only that an uncorrectable ECC error was
// detected during execution. Device memory then holds data that can no longer be trusted (the
// model's weights among it), and vramguard cannot tell which: only reloading everything, in a new
// process, repairs that, so it is treated as sticky. cudaErrorUnknown is not sticky by the
// definition (nothing says the context is lost) and stays VG_ERR_CUDA; so does
// cudaErrorNvlinkUncorrectable, whose documentation does not say so either.
bool is_sticky_cuda_error(int cuda_code) noexcept {
  switch (static_cast<cudaError_t>(cuda_code)) {
    case cudaErrorECCUncorrectable:     // 214
    case cudaErrorContained:            // 226
    case cudaErrorIllegalAddress:       // 700
    case cudaErrorLaunchTimeout:        // 702
    case cudaErrorAssert:               // 710
    case cudaErrorHardwareStackError:   // 714
    case cudaErrorIllegalInstruction:   // 715
    case cudaErrorMisalignedAddress:    // 716
    case cudaErrorInvalidAddressSpace:  // 717
    case cudaErrorInvalidPc:            // 718
    case cudaErrorLaunchFailure:        // 719
    case cudaErrorTensorMemoryLeak:     // 721
    case cudaErrorMpsClientTerminated:  // 810
    case cudaErrorExternalDevice:       // 911
      return true;
    default: return false;
  }
}

vg_status status_for_cuda_error(int cuda_code) noexcept {
  if (is_sticky_cuda_error(cuda_code)) return VG_ERR_CUDA_STICKY;
  switch (static_cast<cudaError_t>(cuda_code)) {
    case cudaSuccess: return VG_OK;
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorDevicesUnavailable: return VG_ERR_NO_DEVICE;
    case cudaErrorInvalidDevice: return VG_ERR_INVALID_DEVICE;
    case cudaErrorMemoryAllocation: return VG_ERR_OUT_OF_MEMORY;
    default: return VG_ERR_CUDA;
  }
}

}  // namespace vramguard
