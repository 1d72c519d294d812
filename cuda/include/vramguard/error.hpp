// Errors the C++ core throws. Every one carries a stable status so the C ABI can map it without
// parsing text.
#pragma once

#include <stdexcept>
#include <string>

#include "vramguard.h"

namespace vramguard {

// A failed precondition or bookkeeping error (bad size, unknown pointer, ...).
class Error : public std::runtime_error {
 public:
  Error(vg_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  vg_status status() const noexcept { return status_; }

 private:
  vg_status status_;
};

// A CUDA runtime call that failed: its error code, the error's name and the call that failed.
// Its status is VG_ERR_CUDA_STICKY for the errors that leave the context corrupt (is_sticky()):
// every later CUDA call of the process fails too, and only a restart of the process recovers.
class CudaError : public Error {
 public:
  CudaError(int cuda_code, const char* call);
  int cuda_code() const noexcept { return cuda_code_; }
  bool is_sticky() const noexcept { return status() == VG_ERR_CUDA_STICKY; }
  const std::string& call() const noexcept { return call_; }
  const std::string& cuda_name() const noexcept { return name_; }

 private:
  int cuda_code_;
  std::string call_;
  std::string name_;
};

// The vg_status a CUDA error code stands for (no driver -> VG_ERR_NO_DEVICE, out of memory -> ...,
// a sticky error -> VG_ERR_CUDA_STICKY).
vg_status status_for_cuda_error(int cuda_code) noexcept;

// R3: whether a CUDA runtime error code leaves the process's CUDA context corrupt, so that every
// later call fails with it and the process must be restarted. The one list (error.cpp says how it
// was chosen).
bool is_sticky_cuda_error(int cuda_code) noexcept;

}  // namespace vramguard
