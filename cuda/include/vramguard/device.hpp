// Devices: count, properties, free/total memory. Each call throws CudaError; without a driver
// or a GPU its status is VG_ERR_NO_DEVICE.
#pragma once

#include <cstdint>
#include <string>

namespace vramguard {

struct MemoryInfo {
  std::uint64_t free_bytes = 0;
  std::uint64_t total_bytes = 0;
  std::uint64_t used_bytes() const { return total_bytes - free_bytes; }
};

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  bool integrated = false;  // shares physical memory with the host
  bool managed_memory = false;
  bool concurrent_managed_access = false;
  bool pageable_memory_access = false;  // unified with host memory (HMM / ATS)
  bool memory_pools = false;
  std::string pci_bus_id;  // "0000:1B:00.0": how NVML and nvidia-smi name this GPU
  MemoryInfo memory;
};

int device_count();
DeviceInfo device_info(int device);
MemoryInfo memory_info(int device);
void set_device(int device);
// Throws Error(VG_ERR_INVALID_DEVICE) unless 0 <= device < device_count().
void require_valid_device(int device);

}  // namespace vramguard
