#include "scoped_device.hpp"

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <string>

#include "cuda_call.hpp"

namespace vramguard::detail {

namespace {

// The driver functions ScopedDevice needs, resolved once through the runtime. Version 12000: the
// ABI of these functions as of CUDA 12.0 (cuCtxGetId is new in it); the reference driver is newer.
struct DriverContextApi {
  CUresult (*get_current)(CUcontext*) = nullptr;
  CUresult (*set_current)(CUcontext) = nullptr;
  CUresult (*get_id)(CUcontext, unsigned long long*) = nullptr;
  CUresult (*get_device)(CUdevice*) = nullptr;
};

constexpr unsigned kDriverAbiVersion = 12000;

template <typename Function>
void resolve(const char* symbol, Function* out) {
  void* function = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  // Without a driver this fails like every runtime call (cudaErrorInsufficientDriver ->
  // VG_ERR_NO_DEVICE).
  check(cudaGetDriverEntryPointByVersion(symbol, &function, kDriverAbiVersion, cudaEnableDefault,
                                         &found),
        "cudaGetDriverEntryPointByVersion");
  if (found != cudaDriverEntryPointSuccess || function == nullptr) {
    throw CudaError(static_cast<int>(cudaErrorSymbolNotFound),
                    ("cudaGetDriverEntryPointByVersion(" + std::string(symbol) +
                     "): the driver lacks it (a driver for CUDA 12.0 or newer is needed)")
                        .c_str());
  }
  *out = reinterpret_cast<Function>(function);
}

// A function-local static: initialised once, thread-safely; if resolving throws (no driver), the
// next call tries again.
const DriverContextApi& driver() {
  static const DriverContextApi api = [] {
    DriverContextApi resolved;
    resolve("cuCtxGetCurrent", &resolved.get_current);
    resolve("cuCtxSetCurrent", &resolved.set_current);
    resolve("cuCtxGetId", &resolved.get_id);
    resolve("cuCtxGetDevice", &resolved.get_device);
    return resolved;
  }();
  return api;
}

// CUresult and cudaError_t give the errors these calls can return the same numbers (invalid
// value, invalid context, the sticky 7xx family), so CudaError names them correctly.
void check_driver(CUresult result, const char* call) {
  if (result != CUDA_SUCCESS) throw CudaError(static_cast<int>(result), call);
}

// The id (cuCtxGetId: unique for the life of the process, never reused) of each device's primary
// context as last seen, 0 while unknown. When the current context has the cached id, it is the
// device's primary context and the scope has nothing to do: the common case of a thread that
// works on one device, at the cost of two driver calls of a few nanoseconds. After
// cudaDeviceReset the primary context gets a new id; the first scope afterwards takes the slow
// path and caches it.
constexpr int kCachedDevices = 64;
std::array<std::atomic<unsigned long long>, kCachedDevices> g_primary_id{};

bool is_primary_of(const DriverContextApi& api, CUcontext context, int device) {
  if (device < 0 || device >= kCachedDevices) return false;
  const unsigned long long known = g_primary_id[device].load(std::memory_order_relaxed);
  unsigned long long id = 0;
  return known != 0 && api.get_id(context, &id) == CUDA_SUCCESS && id == known;
}

void remember_primary(const DriverContextApi& api, int device) {
  if (device < 0 || device >= kCachedDevices) return;
  CUcontext primary = nullptr;
  unsigned long long id = 0;
  if (api.get_current(&primary) == CUDA_SUCCESS && primary != nullptr &&
      api.get_id(primary, &id) == CUDA_SUCCESS) {
    g_primary_id[device].store(id, std::memory_order_relaxed);
  }
}

}  // namespace

ScopedDevice::ScopedDevice(int device) {
  const DriverContextApi& api = driver();
  CUcontext current = nullptr;
  check_driver(api.get_current(&current), "cuCtxGetCurrent");
  if (current != nullptr && is_primary_of(api, current, device)) return;
  // cudaSetDevice initialises the device's primary context if need be and makes it current
  // (cuCtxSetCurrent), so that every runtime call in the scope works on it.
  const cudaError_t result = cudaSetDevice(device);
  if (result != cudaSuccess) {
    (void)api.set_current(current);  // whatever the failed call left current, put back the caller's
    check(result, "cudaSetDevice");
  }
  previous_ = current;
  switched_ = true;
  remember_primary(api, device);
}

ScopedDevice::~ScopedDevice() noexcept {
  // driver() returned in the constructor, so it returns now without throwing. A null previous_
  // leaves no context current: what a thread that never chose a device had.
  if (switched_) (void)driver().set_current(static_cast<CUcontext>(previous_));
}

int current_device() {
  const DriverContextApi& api = driver();
  CUcontext current = nullptr;
  check_driver(api.get_current(&current), "cuCtxGetCurrent");
  if (current != nullptr) {
    CUdevice device = 0;
    check_driver(api.get_device(&device), "cuCtxGetDevice");
    return static_cast<int>(device);
  }
  int device = 0;
  VG_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

}  // namespace vramguard::detail
