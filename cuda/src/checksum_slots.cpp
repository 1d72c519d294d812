#include "checksum_slots.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "cuda_call.hpp"
#include "scoped_device.hpp"

namespace vramguard::detail::checksum {

namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

// Polling. For the first 2 ms the waiter only yields between queries: a checksum of up to about
// 8 GiB (H200, 4.4 TB/s) ends inside them and the caller sees its end within a query's time, as
// with the spin-wait of cudaStreamSynchronize it replaces. Later it sleeps a 32nd of the time
// waited so far, from 20 us up to 1 ms, so that a late wake-up costs at most about 3 % of the wait
// (plus the kernel's timer slack, 50 us by default) and a GPU that never finishes costs a
// thousand queries a second.
constexpr microseconds kYieldFor{2000};
constexpr microseconds kShortestNap{20};
constexpr microseconds kLongestNap{1000};
constexpr milliseconds kLongestTimeout{1ll << 40};

// Per device: the stream, the pinned readback of every slot, and each slot's state.
struct DeviceSlots {
  cudaStream_t stream = nullptr;
  unsigned long long* readback = nullptr;    // 2 per slot, pinned host memory
  std::array<cudaEvent_t, kSlots> events{};  // each made on its slot's first lease
  std::uint64_t busy = 0;                    // leased or abandoned
  std::uint64_t abandoned = 0;               // abandoned with an event to watch (within busy)
};

class SlotTable {
 public:
  // The device's slots, with its stream and readback made. Within the device's ScopedDevice.
  DeviceSlots& prepared(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    return prepared_locked(device);
  }

  int acquire(int device, Clock::time_point deadline, cudaEvent_t* event,
              unsigned long long** readback) {
    std::unique_lock<std::mutex> lock(mutex_);
    DeviceSlots& slots = prepared_locked(device);
    for (;;) {
      reclaim(slots);
      if (slots.busy != ~std::uint64_t{0}) {
        const int slot = __builtin_ctzll(~slots.busy);
        if (slots.events[slot] == nullptr) {
          VG_CUDA_CHECK(cudaEventCreateWithFlags(&slots.events[slot], cudaEventDisableTiming));
        }
        slots.busy |= std::uint64_t{1} << slot;
        *event = slots.events[slot];
        *readback = slots.readback + 2 * slot;
        return slot;
      }
      const Clock::time_point now = Clock::now();
      if (now >= deadline) {
        throw Error(VG_ERR_TIMEOUT, "device_checksum: all " + std::to_string(kSlots) +
                                        " checksum slots of GPU " + std::to_string(device) +
                                        " stayed in use until the deadline (checksums running, "
                                        "or abandoned on a GPU that has not finished them)");
      }
      // A slot comes back through release (notified) or when an abandoned slot's work is seen
      // complete (polled here every millisecond).
      freed_.wait_until(lock, std::min(deadline, now + kLongestNap));
    }
  }

  void release(int device, int slot) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      devices_.at(device)->busy &= ~(std::uint64_t{1} << slot);
    }
    freed_.notify_all();
  }

  // The slot stays busy; with `watch`, until its event is seen complete.
  void abandon(int device, int slot, bool watch) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (watch) devices_.at(device)->abandoned |= std::uint64_t{1} << slot;
  }

  // At exit: hands back the pinned readback of every device none of whose slots is leased or
  // abandoned (a leak checker such as compute-sanitizer's memcheck counts it otherwise); one that
  // a kernel may still write stays. Later checksums are refused.
  void release_idle_readbacks() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    exiting_ = true;
    for (auto& [device, slots] : devices_) {
      if (slots->busy != 0 || slots->readback == nullptr) continue;
      try {
        ScopedDevice scope(device);  // the context it was made in, not the exiting thread's default
        if (cudaFreeHost(slots->readback) != cudaSuccess) (void)cudaGetLastError();
      } catch (...) {
        // The context is gone or broken: the memory goes with the process.
      }
      slots->readback = nullptr;
    }
  }

 private:
  DeviceSlots& prepared_locked(int device) {
    if (exiting_) {
      throw CudaError(static_cast<int>(cudaErrorCudartUnloading),
                      "device_checksum: the process is exiting");
    }
    std::unique_ptr<DeviceSlots>& entry = devices_[device];
    if (!entry) entry = std::make_unique<DeviceSlots>();
    DeviceSlots& slots = *entry;
    if (slots.stream == nullptr) {
      VG_CUDA_CHECK(cudaStreamCreateWithFlags(&slots.stream, cudaStreamNonBlocking));
    }
    if (slots.readback == nullptr) {
      // Portable: pinned for every context, so any device's copy engine may write it.
      void* pinned = nullptr;
      VG_CUDA_CHECK(
          cudaHostAlloc(&pinned, 2 * kSlots * sizeof(unsigned long long), cudaHostAllocPortable));
      slots.readback = static_cast<unsigned long long*>(pinned);
    }
    return slots;
  }

  // Frees the abandoned slots whose work has completed. Within the device's ScopedDevice.
  static void reclaim(DeviceSlots& slots) noexcept {
    for (std::uint64_t left = slots.abandoned; left != 0; left &= left - 1) {
      const int slot = __builtin_ctzll(left);
      const cudaError_t state = cudaEventQuery(slots.events[slot]);
      if (state == cudaErrorNotReady) continue;
      // Complete; or an error, which leaves a broken context (a sticky error) where no kernel
      // runs any more: either way nothing writes the slot now.
      if (state != cudaSuccess) (void)cudaGetLastError();
      const std::uint64_t bit = std::uint64_t{1} << slot;
      slots.abandoned &= ~bit;
      slots.busy &= ~bit;
    }
  }

  std::mutex mutex_;
  std::condition_variable freed_;
  std::unordered_map<int, std::unique_ptr<DeviceSlots>> devices_;
  bool exiting_ = false;
};

struct ExitHook {
  SlotTable* table;
  ~ExitHook() { table->release_idle_readbacks(); }
};

// Kept for the life of the process (never destroyed: a thread may still be in a checksum when
// the process exits), with the streams and events it made: destroying them would mean waiting
// for work that may never finish. Only the idle readbacks go back at exit, through the hook: a
// static made after the CUDA runtime was initialised (the table's first use follows CUDA calls),
// so it is destroyed before the runtime tears itself down.
SlotTable& slot_table() {
  static SlotTable* const table = new SlotTable;
  static const ExitHook hook{table};
  return *table;
}

}  // namespace

Clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  if (timeout < milliseconds{1}) {
    throw Error(VG_ERR_INVALID_SIZE, "a timeout of " + std::to_string(timeout.count()) +
                                         " ms was asked for; it must be at least 1 ms");
  }
  return Clock::now() + std::min(timeout, kLongestTimeout);
}

bool wait_for_event(CUevent_st* event, Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  for (;;) {
    const cudaError_t state = cudaEventQuery(event);
    if (state == cudaSuccess) return true;
    if (state != cudaErrorNotReady) check(state, "cudaEventQuery");
    const Clock::time_point now = Clock::now();
    if (now >= deadline) return false;
    const auto waited = std::chrono::duration_cast<microseconds>(now - start);
    if (waited < kYieldFor) {
      std::this_thread::yield();
      continue;
    }
    const microseconds nap = std::clamp(waited / 32, kShortestNap, kLongestNap);
    std::this_thread::sleep_for(std::min<Clock::duration>(nap, deadline - now));
  }
}

bool wait_for_stream(CUstream_st* stream, Clock::time_point deadline) {
  cudaEvent_t event = nullptr;
  VG_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  // Destroying an event that has not completed is allowed: CUDA frees it once it completes.
  struct Destroy {
    cudaEvent_t event;
    ~Destroy() { (void)cudaEventDestroy(event); }
  } destroy{event};
  VG_CUDA_CHECK(cudaEventRecord(event, stream));
  return wait_for_event(event, deadline);
}

CUstream_st* device_stream(int device) { return slot_table().prepared(device).stream; }

SlotLease::SlotLease(int device, Clock::time_point deadline) : device_(device) {
  slot_ = slot_table().acquire(device, deadline, &event_, &readback_);
}

SlotLease::~SlotLease() noexcept {
  if (!enqueued_ || completed_) {
    slot_table().release(device_, slot_);
    return;
  }
  // Work that writes the slot may still run (the deadline passed, or a call after the first
  // enqueue failed): never reuse or synchronise on it; watch its event if one can be recorded
  // after that work, else leave the slot busy for good (16 bytes).
  if (!recorded_) {
    recorded_ = cudaEventRecord(event_, stream_) == cudaSuccess;
    if (!recorded_) (void)cudaGetLastError();
  }
  slot_table().abandon(device_, slot_, recorded_);
}

void SlotLease::enqueuing_on(CUstream_st* stream) noexcept {
  stream_ = stream;
  enqueued_ = true;
}

bool SlotLease::wait_until(Clock::time_point deadline) {
  if (!recorded_) {
    VG_CUDA_CHECK(cudaEventRecord(event_, stream_));
    recorded_ = true;
  }
  completed_ = wait_for_event(event_, deadline);
  return completed_;
}

}  // namespace vramguard::detail::checksum
