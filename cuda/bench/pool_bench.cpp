// Kind Pool at 1, 4 and 16 threads: raw cudaMallocFromPoolAsync + cudaFreeAsync on a pool like
// vramguard's (release threshold at the maximum, the legacy default stream) against the same
// through DeviceMemory and the tracker. Shows how many pairs per second CUDA's pool itself
// serves, the scale the tracker's multi-threaded throughput must stay above.
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "bench.hpp"
#include "timing.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/memory_pool.hpp"

namespace bench {
namespace {

constexpr int kPairsPerThread = 100'000;

template <typename Pair>
double pairs_per_second(int device, int threads, Pair pair) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      cudaSetDevice(device);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int i = 0; i < kPairsPerThread; ++i) pair();
    });
  }
  while (ready.load() < threads) {
  }
  const double start = now_seconds();
  go.store(true, std::memory_order_release);
  for (auto& thread : pool) thread.join();
  const double seconds = now_seconds() - start;
  cudaDeviceSynchronize();
  return threads * static_cast<double>(kPairsPerThread) / seconds;
}

}  // namespace

void pool_benchmarks(int device) {
  cudaSetDevice(device);
  vramguard::MemoryPool pool(device);
  vramguard::VramTracker tracker(device);
  const auto raw_pool = static_cast<cudaMemPool_t>(pool.handle());
  auto raw = [&] {
    void* p = nullptr;
    cudaMallocFromPoolAsync(&p, 4096, raw_pool, nullptr);
    cudaFreeAsync(p, nullptr);
  };
  auto tracked = [&] {
    vramguard::DeviceMemory memory(4096, &tracker, vramguard::VramPurpose::KVCache, {},
                                   vramguard::AllocationKind::Pool, &pool);
  };
  pairs_per_second(device, 1, raw);  // warm the pool
  for (int threads : {1, 4, 16}) {
    const double cuda = pairs_per_second(device, threads, raw);
    const double ours = pairs_per_second(device, threads, tracked);
    rows().push_back(
        {"Pool alloc+free pairs/s, " + std::to_string(threads) + " thread(s), one pool",
         fmt("%.2f M pairs/s tracked", ours / 1e6), fmt("%.2f M pairs/s raw CUDA", cuda / 1e6),
         fmt("%.2fx", ours / cuda), "reported", true});
  }
}

}  // namespace bench
