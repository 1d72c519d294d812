// M1: DeviceMemory allocates, records, frees and un-records. Move-only; the destructor never
// throws. Kinds Managed and PinnedHost exist only so RAM-fallback detection can be tested on
// real memory: they must be asked for by name.
//
// Freeing and GPU work still using the memory (the destructor, reset, and vg_free): kinds Device
// and Managed are freed with cudaFree, which "may perform implicit synchronization" (the runtime
// promises no more): complete or synchronise work that uses the memory first. Kind Pool is freed
// with cudaFreeAsync on the legacy default stream of the tracker's device, so the pool may hand the
// memory out again once the work queued on that stream before the free is done. The legacy
// stream first waits for the earlier work of every blocking stream of the context (cudaStreamCreate
// streams and the per-thread default streams), so a kernel on one of those that still uses the
// buffer finishes before the memory is reused. vramguard's own writers keep to that order:
// copies run on the legacy stream, and the weights loader's streams wait for it before they write.
// It does not wait for non-blocking streams (cudaStreamNonBlocking) or other contexts: synchronise
// such work before the DeviceMemory goes.
// Every call leaves the calling thread's current CUDA context as it found it.
#pragma once

#include <cstddef>
#include <string_view>

#include "vramguard/memory_pool.hpp"
#include "vramguard/purpose.hpp"
#include "vramguard/tracker.hpp"

namespace vramguard {

class DeviceMemory {
 public:
  // Throws Error (bad arguments) or CudaError (status VG_ERR_OUT_OF_MEMORY when the device is
  // full); on a throw nothing is allocated or recorded. Kind Pool needs a pool of the tracker's
  // device.
  DeviceMemory(std::size_t bytes, VramTracker* tracker, VramPurpose purpose,
               std::string_view description = {}, AllocationKind kind = AllocationKind::Device,
               MemoryPool* pool = nullptr);
  ~DeviceMemory() noexcept { reset(); }

  // What the constructor refuses in its arguments before it touches anything, in its order:
  // purpose out of range, then zero or oversized bytes or an over-long description, then a kind
  // out of range or Adopted. Throws Error; needs no tracker and no device.
  static void validate(std::size_t bytes, VramPurpose purpose, std::string_view description,
                       AllocationKind kind);

  DeviceMemory(DeviceMemory&& other) noexcept;
  DeviceMemory& operator=(DeviceMemory&& other) noexcept;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  void* get() const noexcept { return ptr_; }
  std::size_t size() const noexcept { return bytes_; }
  VramPurpose purpose() const noexcept { return purpose_; }
  AllocationKind kind() const noexcept { return kind_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

  // Synchronous: each returns once the copy is complete in its destination.
  void copy_from_host(const void* src, std::size_t bytes, std::size_t offset = 0);
  void copy_to_host(void* dst, std::size_t bytes, std::size_t offset = 0) const;

  // Un-records and frees now. Returns the CUDA error code of the free (0 on success).
  int reset() noexcept;
  // Gives up ownership without freeing: the allocation stays recorded as owned, to be freed later
  // through the tracker (the C ABI's vg_free). Returns the pointer.
  void* release() noexcept;

 private:
  VramTracker* tracker_ = nullptr;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  VramPurpose purpose_ = VramPurpose::Unknown;
  AllocationKind kind_ = AllocationKind::Device;
};

}  // namespace vramguard
