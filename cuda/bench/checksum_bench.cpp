// Integrity checksum throughput over 1, 4 and 16 GiB against, in the same run, a plain read-only
// kernel that loads every 16-byte word once: the checksum must reach 90 % of its bytes per second.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "bench.hpp"
#include "timing.hpp"
#include "vramguard/checksum.hpp"
#include "vramguard/read_witness.hpp"

namespace bench {

void witness_benchmarks(int device);

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
  witness_benchmarks(device);
}

// What the bandwidth witness costs a health check. A check reads one slice of each ModelWeights
// allocation, at least 256 MiB per reading; the time is the call's wall time (launch, kernel,
// polling), against the integrity checksum of the same bytes that the check already pays. A slow
// slice costs a confirming window more (control, slice, control). Medians of 7.
void witness_benchmarks(int device) {
  constexpr std::uint64_t kMinRead = 256ull << 20;
  constexpr std::chrono::milliseconds kTimeout{30'000};
  vramguard::ReadWitness witness(device, vramguard::kWitnessControlBytes);
  const vramguard::WitnessCalibration calibration = witness.calibrate(kMinRead, kTimeout);
  rows().push_back({"witness calibration: device memory vs mapped host memory (64 MiB each)",
                    fmt("%.0f GB/s", calibration.device_memory.gb_per_second()),
                    fmt("%.1f GB/s host", calibration.host_memory.gb_per_second()),
                    fmt("%.0fx", calibration.device_memory.gb_per_second() /
                                     calibration.host_memory.gb_per_second()),
                    fmt("threshold %.0f GB/s", calibration.threshold_gb_per_second()), true});
  for (std::size_t mib : {std::size_t{1}, std::size_t{64}, std::size_t{1024}, std::size_t{4096}}) {
    const std::size_t bytes = mib << 20;
    void* buffer = nullptr;
    if (cudaMalloc(&buffer, bytes) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    cudaMemset(buffer, 0x5a, bytes);
    cudaDeviceSynchronize();
    std::vector<double> witness_s, checksum_s, gbps;
    for (int i = 0; i < 7; ++i) {
      double start = now_seconds();
      const vramguard::ReadBandwidth read = witness.measure(buffer, bytes, kMinRead, kTimeout);
      witness_s.push_back(now_seconds() - start);
      gbps.push_back(read.gb_per_second());
      start = now_seconds();
      vramguard::device_checksum(buffer, bytes, device);
      checksum_s.push_back(now_seconds() - start);
    }
    rows().push_back(
        {"witness reading of a " + std::to_string(mib) + " MiB device slice (per check)",
         fmt("%.3f ms", median(witness_s) * 1e3) + fmt(" (%.0f GB/s)", median(gbps)),
         fmt("%.3f ms integrity checksum of it", median(checksum_s) * 1e3),
         fmt("%.2fx", median(witness_s) / median(checksum_s)), "reported", true});
    cudaFree(buffer);
  }
  void* host = nullptr;
  if (cudaHostAlloc(&host, 64 << 20, cudaHostAllocMapped) == cudaSuccess) {
    std::vector<double> witness_s, window_s, gbps;
    for (int i = 0; i < 7; ++i) {
      double start = now_seconds();
      const vramguard::ReadBandwidth read = witness.measure(host, 64 << 20, kMinRead, kTimeout);
      witness_s.push_back(now_seconds() - start);
      gbps.push_back(read.gb_per_second());
      start = now_seconds();
      (void)witness.measure_bracketed(host, 64 << 20, kMinRead, kTimeout);
      window_s.push_back(now_seconds() - start);
    }
    rows().push_back({"witness reading of a 64 MiB mapped host slice (a violation)",
                      fmt("%.2f ms", median(witness_s) * 1e3) + fmt(" (%.1f GB/s)", median(gbps)),
                      fmt("%.2f ms per confirming window", median(window_s) * 1e3), "-", "reported",
                      true});
    cudaFreeHost(host);
  }
}

}  // namespace bench
