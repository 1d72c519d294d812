// H1-H3: is a pointer, and is every tracked allocation, really in device memory?
//
// cudaPointerGetAttributes succeeds for pageable host memory, freed device pointers, nullptr and
// wild addresses (type Unregistered), so residency is decided from the attributes, never from the
// return code: resident = success, type Device, no host pointer, and the expected device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vramguard/allocation_record.hpp"
#include "vramguard/device.hpp"
#include "vramguard/tracker.hpp"

namespace vramguard {

enum class MemoryType { Unregistered = 0, Host = 1, Device = 2, Managed = 3 };
enum class ViolationReason {
  NotDeviceMemory = 0,
  HostPointer = 1,
  WrongDevice = 2,
  QueryFailed = 3
};

const char* to_string(MemoryType type) noexcept;
const char* to_string(ViolationReason reason) noexcept;

struct PointerResidency {
  bool resident = false;
  MemoryType type = MemoryType::Unregistered;
  int device = -2;
  bool has_host_pointer = false;
  int cuda_error = 0;
  ViolationReason reason = ViolationReason::NotDeviceMemory;  // meaningful when !resident
};

struct Violation {
  AllocationRecord allocation;
  PointerResidency observed;
};

struct ResidencyReport {
  bool resident = true;
  int device = 0;
  std::uint64_t checked = 0;      // allocations of the mask queried by this sweep
  std::uint64_t not_queried = 0;  // own Device/Pool allocations of the mask the sample left out
  std::vector<Violation> violations;
  std::uint64_t tracked_bytes = 0;
  std::uint64_t allocation_count = 0;
  MemoryInfo memory;  // device-used = total - free
};

class ResidencyCheck {
 public:
  // H1. A null pointer is never resident. Throws Error(VG_ERR_INVALID_DEVICE) for a device that
  // does not exist, CudaError when there is no driver/GPU or the context is lost (sticky).
  static PointerResidency inspect_pointer(const void* ptr, int expected_device);
  static bool check_pointer_residency(const void* ptr, int expected_device);
  // Against the calling thread's current device (that of its current context; with none, the
  // runtime's device for the thread).
  static bool check_pointer_residency(const void* ptr);

  // H2: snapshot under the tracker's locks, query CUDA outside them. An allocation freed while
  // the sweep runs is not reported. Throws CudaError when the check itself cannot run. The
  // sample says which of vramguard's own allocations are queried (every one by default).
  static ResidencyReport check_residency(const VramTracker& tracker,
                                         unsigned purpose_mask = kAllPurposes,
                                         SweepSample sample = {});
  static bool check_vram_residency(const VramTracker& tracker);
  // Device-wide used VRAM (total - free from cudaMemGetInfo) for the tracker's device.
  static std::uint64_t device_used_bytes(int device);
  // H3: human-readable; lists each violation with its description and kind.
  static std::string residency_report(const VramTracker& tracker);
  static std::string format(const ResidencyReport& report);
};

}  // namespace vramguard
