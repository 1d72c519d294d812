// Test support: the CUDA driver's view of contexts, reached through the runtime
// (cudaGetDriverEntryPointByVersion) as vramguard reaches it, so that the tests link no libcuda
// either and run unchanged on a GPU host. Resolved independently of the product's own lookup.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

namespace vramguard::testing {

struct DriverProbe {
  CUresult (*get_current)(CUcontext*) = nullptr;
  CUresult (*primary_state)(CUdevice, unsigned*, int*) = nullptr;
  bool ok = false;  // every function resolved
};

inline const DriverProbe& driver_probe() {
  static const DriverProbe probe = [] {
    DriverProbe resolved;
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found{};
    bool ok = cudaGetDriverEntryPointByVersion("cuCtxGetCurrent", &function, 12000,
                                               cudaEnableDefault, &found) == cudaSuccess &&
              found == cudaDriverEntryPointSuccess;
    resolved.get_current = reinterpret_cast<CUresult (*)(CUcontext*)>(function);
    ok = ok &&
         cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &function, 12000,
                                          cudaEnableDefault, &found) == cudaSuccess &&
         found == cudaDriverEntryPointSuccess;
    resolved.primary_state = reinterpret_cast<CUresult (*)(CUdevice, unsigned*, int*)>(function);
    resolved.ok = ok;
    (void)cudaGetLastError();
    return resolved;
  }();
  return probe;
}

// The calling thread's current context (null when none). The probe must be ok.
inline CUcontext current_context() {
  CUcontext context = nullptr;
  if (driver_probe().get_current(&context) != CUDA_SUCCESS) return reinterpret_cast<CUcontext>(-1);
  return context;
}

// Whether `device`'s primary context exists (is active) in this process.
inline bool primary_context_active(int device) {
  unsigned flags = 0;
  int active = 0;
  return driver_probe().primary_state(device, &flags, &active) == CUDA_SUCCESS && active != 0;
}

}  // namespace vramguard::testing
