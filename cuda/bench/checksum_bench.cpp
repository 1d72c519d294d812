// Integrity checksum throughput over 1, 4 and 16 GiB against, in the same run, a plain read-only
// kernel that loads every 16-byte word once: the checksum must reach 90 % of its bytes per second.
#include <cuda_runtime_api.h>

#include <vector>

#include "bench.hpp"
#include "timing.hpp"
#include "vramguard/checksum.hpp"

namespace bench {
namespace {

template <typename Kernel>
double gigabytes_per_second(std::size_t bytes, Kernel kernel) {
  kernel();  // warm-up
  cudaDeviceSynchronize();
  std::vector<double> seconds;
  for (int i = 0; i < 5; ++i) {
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    cudaEventRecord(start);
    kernel();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    seconds.push_back(ms / 1e3);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  return bytes / median(seconds) / 1e9;
}

}  // namespace

void checksum_benchmarks(int device) {
  cudaSetDevice(device);
  for (std::size_t gib : {1, 4, 16}) {
    const std::size_t bytes = gib << 30;
    void* buffer = nullptr;
    if (cudaMalloc(&buffer, bytes) != cudaSuccess) {
      cudaGetLastError();
      rows().push_back({"checksum " + std::to_string(gib) + " GiB", "not enough memory", "-", "-",
                        ">= 90 %", false});
      continue;
    }
    cudaMemset(buffer, 0x5a, bytes);
    const double checksum =
        gigabytes_per_second(bytes, [&] { vramguard::device_checksum(buffer, bytes, device); });
    const double read_only =
        gigabytes_per_second(bytes, [&] { vramguard::read_only_sweep(buffer, bytes, device); });
    rows().push_back({"integrity checksum, " + std::to_string(gib) + " GiB",
                      fmt("%.0f GB/s", checksum), fmt("%.0f GB/s read-only kernel", read_only),
                      fmt("%.1f %%", 100.0 * checksum / read_only), ">= 90 %",
                      checksum >= 0.9 * read_only});
    cudaFree(buffer);
  }
}

}  // namespace bench
