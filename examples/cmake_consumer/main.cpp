// A vramguard caller outside its tree (examples/cmake_consumer): allocates a small tracked buffer,
// fills it and proves it is resident, through the C++ API; names statuses through the C ABI.
// Exit 0 when resident, 101 without a GPU (the message names VG_ERR_NO_DEVICE), 1 otherwise.
#include <cstdio>
#include <vector>

#include "vramguard.h"
#include "vramguard/device.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/error.hpp"
#include "vramguard/residency_check.hpp"

int main() {
  using namespace vramguard;
  try {
    const int devices = device_count();
    VramTracker tracker(/*device=*/0);
    DeviceMemory buffer(1 << 20, &tracker, VramPurpose::ModelWeights, "consumer buffer");
    const std::vector<unsigned char> host(1 << 20, 0x5a);
    buffer.copy_from_host(host.data(), host.size());
    const ResidencyReport report = ResidencyCheck::check_residency(tracker);
    const bool pointer_resident = ResidencyCheck::check_pointer_residency(buffer.get(), 0);
    std::printf("vramguard consumer: %d GPU(s); %zu bytes tracked; %s\n", devices,
                tracker.total_usage(),
                report.resident && pointer_resident ? "resident" : "NOT resident");
    if (!report.resident || !pointer_resident) {
      std::printf("%s", ResidencyCheck::format(report).c_str());
      return 1;
    }
    return 0;
  } catch (const Error& e) {  // CudaError too
    std::fprintf(stderr, "vramguard consumer: %s: %s\n", vg_status_name(e.status()), e.what());
    return e.status() == VG_ERR_NO_DEVICE ? 101 : 1;
  }
}
