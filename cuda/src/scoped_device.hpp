// Internal: CUDA work for one device that leaves the calling thread's CUDA context as it found it
// (R4).
//
// The CUDA runtime works on whichever driver context is current to the thread; when none is, its
// first call that needs one makes the primary context of the thread's runtime device current,
// creating it if need be (device 0 unless the thread chose another). A guard that saves the
// device with cudaGetDevice and restores it with cudaSetDevice therefore creates a context on GPU
// 0 for a thread that never chose a device (cudaGetDevice says 0), on the way out: a worker serving
// GPU 1 then holds hundreds of MiB on GPU 0. ScopedDevice saves the driver's current context
// itself (cuCtxGetCurrent; none is a value too), makes the device's primary context current for
// the scope (cudaSetDevice), and puts back exactly what it found (cuCtxSetCurrent).
//
// The driver functions come through the runtime (cudaGetDriverEntryPointByVersion): vramguard
// links cudart_static and never libcuda, so that binaries built without a GPU run unchanged on a
// GPU host.
//
// Every CUDA call of vramguard that needs a context runs inside a ScopedDevice. The one exception
// is set_device (vg_set_device), whose purpose is to change the calling thread's device.
//
// Cost, measured on the H200 (driver 580, 1 / 4 / 16 threads at once): a scope on a thread whose
// current context is already the device's primary one costs 50 / 50 / 61 ns (cuCtxGetCurrent and
// cuCtxGetId; cudaGetDevice alone, the old guard's test, was 32 / 41 / 50 ns). From a thread with
// no context, the switch and the way back cost 157 / 851 / 3800 ns: the driver serialises context
// switches (cuCtxSetCurrent there and back directly was 67 / 330 / 1538 ns, push and pop 52 / 372 /
// 2194 ns, beside a contended cudaMallocAsync + cudaFreeAsync pair of 1 / 16 / 60 us), so threads
// that call vramguard often are best given the device's context once (cudaSetDevice).
//
// What is not restored: the runtime's own per-thread "device" (what it falls back to when no
// context is current) may be left at `device`. It creates nothing until some runtime call on that
// thread needs a context while none is current, and then it is the primary context of a device
// vramguard already worked on.
#pragma once

namespace vramguard::detail {

class ScopedDevice {
 public:
  // Throws CudaError: status VG_ERR_NO_DEVICE without a driver; the runtime's error when the
  // device's primary context cannot be made current (VG_ERR_INVALID_DEVICE, VG_ERR_CUDA_STICKY,
  // ...).
  explicit ScopedDevice(int device);
  ~ScopedDevice() noexcept;
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  void* previous_ = nullptr;  // the CUcontext current before the scope; null when there was none
  bool switched_ = false;
};

// The calling thread's device, creating no context: the device of the current context, or, when
// none is current, the runtime's device for the thread (cudaGetDevice: 0 unless chosen).
int current_device();

}  // namespace vramguard::detail
