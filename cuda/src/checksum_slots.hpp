// Internal: what a device checksum needs besides its kernel, so that a checksum never hangs its
// caller (I1; R2's "a check past its deadline").
//
// The checksum used to run on the legacy default stream and wait with cudaStreamSynchronize: it
// queued behind every kernel on that stream, and when the GPU hung, the health-check thread hung,
// and shutdown and drops behind it. Now, per device, made once on first use and kept for the
// life of the process: vramguard's own non-blocking stream (it neither waits for the legacy
// stream nor makes it wait), and 64 slots, each two 64-bit lanes of the module's g_lanes that the
// kernel adds into, an event, and 16 bytes of pinned host memory the lanes are copied back to
// (a copy into pageable memory would block until the kernel ends). A checksum leases a slot,
// enqueues its work, records the slot's event and polls it up to the deadline. Past it the
// caller gets VG_ERR_TIMEOUT and the slot is abandoned: the kernel may still add into its lanes
// and copy into its readback, so the slot is neither reused nor waited for until its event is
// seen complete by a later lease of the device (or never, if the GPU never finishes: 16 bytes).
#pragma once

#include <chrono>

struct CUstream_st;
struct CUevent_st;

namespace vramguard::detail::checksum {

using Clock = std::chrono::steady_clock;

inline constexpr int kSlots = 64;  // concurrent checksums per device before a caller waits

// `now + timeout`, for a timeout of at least 1 ms (Error(VG_ERR_INVALID_SIZE) otherwise) and at
// most 2^40 ms (larger ones are cut to it, so that the sum cannot overflow the clock).
Clock::time_point deadline_after(std::chrono::milliseconds timeout);

// Polls `event` until it has completed (true) or `deadline` has passed (false), never blocking
// in CUDA. Throws CudaError for a failure other than "not ready" (a sticky error, say).
bool wait_for_event(CUevent_st* event, Clock::time_point deadline);

// Records an event on `stream` and waits for it as wait_for_event does. Call within the stream's
// device's ScopedDevice.
bool wait_for_stream(CUstream_st* stream, Clock::time_point deadline);

// vramguard's stream for `device`, made on first use (thread-safe). Call within the device's
// ScopedDevice.
CUstream_st* device_stream(int device);

// One slot of `device` for one checksum. Make and use it within the device's ScopedDevice.
class SlotLease {
 public:
  // Waits up to `deadline` for a free slot (all 64 leased or abandoned: Error(VG_ERR_TIMEOUT)).
  // Throws CudaError when the device's stream, readback or the slot's event cannot be made.
  SlotLease(int device, Clock::time_point deadline);
  // Releases the slot; or, when work was enqueued but not seen complete, abandons it.
  ~SlotLease() noexcept;
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;

  int slot() const noexcept { return slot_; }
  // Two values of pinned host memory for this slot's lanes; read them once wait_until said true.
  unsigned long long* readback() const noexcept { return readback_; }
  // To be called before the first work on `stream` that touches the slot's lanes or readback.
  void enqueuing_on(CUstream_st* stream) noexcept;
  // Records the slot's event on the stream after the enqueued work, then polls it up to
  // `deadline`: true when the work has completed. Throws CudaError.
  bool wait_until(Clock::time_point deadline);

 private:
  int device_;
  int slot_ = -1;
  CUevent_st* event_ = nullptr;
  unsigned long long* readback_ = nullptr;
  CUstream_st* stream_ = nullptr;
  bool enqueued_ = false;
  bool recorded_ = false;
  bool completed_ = false;
};

}  // namespace vramguard::detail::checksum
