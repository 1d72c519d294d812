// Track model weights in device memory and prove they are resident (C++ API).
#include <cstdio>
#include <vector>

#include "vramguard/device_memory.hpp"
#include "vramguard/error.hpp"
#include "vramguard/residency_check.hpp"

int main() {
  using namespace vramguard;
  try {
    VramTracker tracker(/*device=*/0);
    DeviceMemory weights(64 << 20, &tracker, VramPurpose::ModelWeights, "encoder weights");
    std::vector<char> host(64 << 20, 1);
    weights.copy_from_host(host.data(), host.size());
    DeviceMemory kv(16 << 20, &tracker, VramPurpose::KVCache, "kv cache");

    const ResidencyReport report = ResidencyCheck::check_residency(tracker);
    std::printf("%s", ResidencyCheck::format(report).c_str());
    std::printf("weights: %zu bytes, total: %zu bytes\n",
                tracker.usage_by_purpose(VramPurpose::ModelWeights), tracker.total_usage());
    return report.resident ? 0 : 1;
  } catch (const Error& e) {  // CudaError too: it names the CUDA error and the call
    std::fprintf(stderr, "vramguard: %s\n", e.what());
    return e.status() == VG_ERR_NO_DEVICE ? 101 : 1;
  }
}
