#include "vramguard/device.hpp"

#include <cuda_runtime_api.h>

#include "cuda_call.hpp"
#include "scoped_device.hpp"

namespace vramguard {

namespace {
bool attribute(cudaDeviceAttr attr, int device) {
  int value = 0;
  VG_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, device));
  return value != 0;
}

// CUDA ordinals are renumbered by CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER; the PCI bus id is
// what NVML and nvidia-smi match on.
std::string pci_bus_id(int device) {
  char buffer[32] = {};
  VG_CUDA_CHECK(cudaDeviceGetPCIBusId(buffer, static_cast<int>(sizeof(buffer)), device));
  buffer[sizeof(buffer) - 1] = '\0';
  return buffer;
}
}  // namespace

int device_count() {
  int count = 0;
  VG_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (count == 0) throw Error(VG_ERR_NO_DEVICE, "the CUDA driver reports no GPU");
  return count;
}

void require_valid_device(int device) {
  const int count = device_count();
  if (device < 0 || device >= count) {
    throw Error(VG_ERR_INVALID_DEVICE, "device " + std::to_string(device) + " does not exist (" +
                                           std::to_string(count) + " visible)");
  }
}

// The one vramguard call that changes the calling thread's device (and current context): asking
// for that is its purpose.
void set_device(int device) {
  require_valid_device(device);
  VG_CUDA_CHECK(cudaSetDevice(device));
}

MemoryInfo memory_info(int device) {
  require_valid_device(device);
  detail::ScopedDevice scope(device);
  MemoryInfo info;
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
  VG_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  info.free_bytes = free_bytes;
  info.total_bytes = total_bytes;
  return info;
}

DeviceInfo device_info(int device) {
  require_valid_device(device);
  // The memory figures need the device's context; any other query that might want one gets it too,
  // never the thread's default device's.
  detail::ScopedDevice scope(device);
  cudaDeviceProp props{};
  VG_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
  DeviceInfo info;
  info.ordinal = device;
  info.name = props.name;
  info.compute_major = props.major;
  info.compute_minor = props.minor;
  info.integrated = attribute(cudaDevAttrIntegrated, device);
  info.managed_memory = attribute(cudaDevAttrManagedMemory, device);
  info.concurrent_managed_access = attribute(cudaDevAttrConcurrentManagedAccess, device);
  info.pageable_memory_access = attribute(cudaDevAttrPageableMemoryAccess, device);
  info.memory_pools = attribute(cudaDevAttrMemoryPoolsSupported, device);
  info.pci_bus_id = pci_bus_id(device);
  info.memory = memory_info(device);
  return info;
}

}  // namespace vramguard
