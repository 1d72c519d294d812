// An experiment behind BENCHMARKS.md: does any way of asking CUDA where a pointer lives avoid
// stalling cudaMallocAsync on other threads? Sweeps 100,000 pointers with the runtime's
// cudaPointerGetAttributes, the driver's cuPointerGetAttributes (1, 3 and 4 attributes) and
// cuPointerGetAttribute, and with pauses or yields between chunks of runtime queries, and prints
// each sweep's time and the allocation latency another thread sees meanwhile.
//   vramguard_query_contention [--device N]
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <sched.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "timing.hpp"

namespace {

using GetAttributes = CUresult (*)(unsigned, CUpointer_attribute*, void**, CUdeviceptr);
using GetAttribute = CUresult (*)(void*, CUpointer_attribute, CUdeviceptr);
GetAttributes get_attributes = nullptr;
GetAttribute get_attribute = nullptr;

enum class Query { Runtime, Driver1, Driver3, Driver4, DriverSingle };

void query(Query how, const void* ptr) {
  const auto address = reinterpret_cast<CUdeviceptr>(ptr);
  unsigned type = 0;
  int device = -1, managed = 0;
  void* host = nullptr;
  CUpointer_attribute names[4] = {
      CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
      CU_POINTER_ATTRIBUTE_IS_MANAGED, CU_POINTER_ATTRIBUTE_HOST_POINTER};
  void* values[4] = {&type, &device, &managed, &host};
  switch (how) {
    case Query::Runtime: {
      cudaPointerAttributes attributes{};
      cudaPointerGetAttributes(&attributes, ptr);
      break;
    }
    case Query::Driver1: get_attributes(1, names, values, address); break;
    case Query::Driver3: get_attributes(3, names, values, address); break;
    case Query::Driver4: get_attributes(4, names, values, address); break;
    case Query::DriverSingle:
      get_attribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, address);
      break;
  }
}

struct Variant {
  const char* name;
  Query how;
  int chunk;        // queries between pauses (0: none)
  double pause_us;  // spin this long between chunks, touching nothing of CUDA's
  bool yield;       // or sched_yield()
};

void sweep(const std::vector<const void*>& pointers, const Variant& v) {
  int n = 0;
  for (const void* p : pointers) {
    query(v.how, p);
    if (v.chunk == 0 || ++n % v.chunk != 0) continue;
    if (v.yield) {
      sched_yield();
    } else {
      const double end = bench::now_seconds() + v.pause_us * 1e-6;
      while (bench::now_seconds() < end) {
      }
    }
  }
}

std::vector<double> allocation_latencies_us(int n) {
  std::vector<double> samples;
  for (int i = 0; i < n; ++i) {
    void* p = nullptr;
    const double start = bench::now_seconds();
    cudaMallocAsync(&p, 4096, nullptr);
    cudaFreeAsync(p, nullptr);
    samples.push_back((bench::now_seconds() - start) * 1e6);
  }
  cudaDeviceSynchronize();
  return samples;
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0;
  if (argc == 3 && std::strcmp(argv[1], "--device") == 0) device = std::atoi(argv[2]);
  if (cudaSetDevice(device) != cudaSuccess || cudaFree(nullptr) != cudaSuccess) {
    std::fprintf(stderr, "vramguard_query_contention: [VRAM-E001] no usable GPU %d\n", device);
    return 101;
  }
  cudaGetDriverEntryPointByVersion("cuPointerGetAttributes",
                                   reinterpret_cast<void**>(&get_attributes), 12000,
                                   cudaEnableDefault, nullptr);
  cudaGetDriverEntryPointByVersion("cuPointerGetAttribute",
                                   reinterpret_cast<void**>(&get_attribute), 12000,
                                   cudaEnableDefault, nullptr);
  if (get_attributes == nullptr || get_attribute == nullptr) {
    std::fprintf(stderr, "vramguard_query_contention: driver entry points not found\n");
    return 1;
  }
  constexpr std::size_t kPointers = 100'000;
  char* block = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&block), kPointers * 256);
  std::vector<const void*> pointers;
  for (std::size_t i = 0; i < kPointers; ++i) pointers.push_back(block + i * 256);
  cudaMemPool_t pool = nullptr;
  cudaDeviceGetDefaultMemPool(&pool, device);
  unsigned long long keep_everything = ~0ull;
  cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_everything);
  allocation_latencies_us(2000);  // warm the pool
  const auto idle = allocation_latencies_us(20000);

  const Variant variants[] = {
      {"cudaPointerGetAttributes", Query::Runtime, 0, 0, false},
      {"cuPointerGetAttributes, 1 attribute", Query::Driver1, 0, 0, false},
      {"cuPointerGetAttributes, 3 attributes", Query::Driver3, 0, 0, false},
      {"cuPointerGetAttributes, 4 attributes", Query::Driver4, 0, 0, false},
      {"cuPointerGetAttribute (memory type)", Query::DriverSingle, 0, 0, false},
      {"runtime, 1 us pause every 64", Query::Runtime, 64, 1, false},
      {"runtime, 5 us pause every 256", Query::Runtime, 256, 5, false},
      {"runtime, 20 us pause every 1024", Query::Runtime, 1024, 20, false},
      {"runtime, sched_yield every 16", Query::Runtime, 16, 0, true},
  };
  std::printf(
      "\n### cudaMallocAsync+cudaFreeAsync latency while another thread queries pointers\n\n");
  std::printf("idle: median %.2f us, p99 %.2f us\n\n", bench::median(idle),
              bench::percentile(idle, 0.99));
  std::printf(
      "| sweep of 100,000 pointers | sweep time | allocation median during | p99 during "
      "|\n|---|---|---|---|\n");
  for (int round = 0; round < 2; ++round) {
    for (const Variant& v : variants) {
      std::vector<double> times;
      for (int r = 0; r < 5; ++r) {
        const double start = bench::now_seconds();
        sweep(pointers, v);
        times.push_back(bench::now_seconds() - start);
      }
      std::atomic<bool> stop{false};
      std::thread sweeper([&] {
        cudaSetDevice(device);
        while (!stop.load()) sweep(pointers, v);
      });
      const double settle = bench::now_seconds() + 0.02;
      while (bench::now_seconds() < settle) {
      }
      const auto during = allocation_latencies_us(20000);
      stop.store(true);
      sweeper.join();
      std::printf("| %s | %.1f ms | %.2f us | %.2f us |\n", v.name, bench::median(times) * 1e3,
                  bench::median(during), bench::percentile(during, 0.99));
    }
  }
  cudaFree(block);
  return 0;
}
