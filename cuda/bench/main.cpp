// vramguard's GPU benchmark: runs on a GPU host without Rust and prints one table.
//   vramguard_bench [--device N] [--skip-checksum] [--tracker-only] [--residency-only]
// (--tracker-only needs no GPU)
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "bench.hpp"
#include "timing.hpp"

int main(int argc, char** argv) {
  int device = 0;
  bool checksum = true;
  bool residency_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = std::atoi(argv[++i]);
    if (std::strcmp(argv[i], "--skip-checksum") == 0) checksum = false;
    if (std::strcmp(argv[i], "--residency-only") == 0) residency_only = true;
    if (std::strcmp(argv[i], "--tracker-only") == 0) {
      bench::tracker_benchmarks();
      bench::print_table("vramguard_bench (tracker only)");
      return 0;
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= device) {
    std::fprintf(stderr, "vramguard_bench: [VRAM-E001] no usable GPU %d\n", device);
    return 101;
  }
  cudaDeviceProp properties{};
  cudaGetDeviceProperties(&properties, device);
  std::printf("GPU%d: %s, %d SMs, %.1f GiB; host: %u hardware threads\n", device, properties.name,
              properties.multiProcessorCount, properties.totalGlobalMem / 1073741824.0,
              std::thread::hardware_concurrency());
  if (residency_only) {
    bench::residency_benchmarks(device);
    bench::print_table("vramguard_bench (residency only)");
    return 0;
  }
  bench::tracker_benchmarks();
  bench::residency_benchmarks(device);
  bench::pool_benchmarks(device);
  if (checksum) bench::checksum_benchmarks(device);
  bench::print_table("vramguard_bench (C++ core)");
  return 0;
}
