// Kinds Pool and Device at 1, 4 and 16 threads, by pairs per second and median latency: raw
// cudaMallocFromPoolAsync + cudaFreeAsync on a pool like vramguard's (release threshold at the
// maximum, the legacy default stream), and raw cudaMalloc + cudaFree, against the same through
// DeviceMemory and the tracker (issue 18: <= 1.10x for Pool, <= 1.05x for Device).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench.hpp"
#include "timing.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/memory_pool.hpp"

namespace bench {
namespace {

struct Measured {
  double pairs_per_second = 0;
  double median_us = 0;
};

// `pairs` pairs on each of `threads` threads released together: pairs per second over the run,
// and the median latency of a pair over every thread's pairs.
template <typename Pair>
Measured measure(int device, int threads, int pairs, Pair pair) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  std::vector<std::vector<double>> latencies(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      cudaSetDevice(device);
      std::vector<double>& mine = latencies[t];
      mine.reserve(pairs);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int i = 0; i < pairs; ++i) {
        const double start = now_seconds();
        pair();
        mine.push_back(now_seconds() - start);
      }
    });
  }
  while (ready.load() < threads) {
  }
  const double start = now_seconds();
  go.store(true, std::memory_order_release);
  for (auto& thread : pool) thread.join();
  const double seconds = now_seconds() - start;
  cudaDeviceSynchronize();
  std::vector<double> all;
  for (const auto& mine : latencies) all.insert(all.end(), mine.begin(), mine.end());
  return {threads * static_cast<double>(pairs) / seconds, median(all) * 1e6};
}

// Five rounds of tracked and raw in turn (so that a drift of the machine falls on both): the
// median round of each, by pairs per second, and the median latency of that round.
template <typename Ours, typename Raw>
std::pair<Measured, Measured> alternated(int device, int threads, int pairs, Ours ours, Raw raw) {
  std::vector<Measured> mine, theirs;
  for (int round = 0; round < 5; ++round) {
    theirs.push_back(measure(device, threads, pairs, raw));
    mine.push_back(measure(device, threads, pairs, ours));
  }
  auto median_round = [](std::vector<Measured> rounds) {
    std::sort(rounds.begin(), rounds.end(), [](const Measured& a, const Measured& b) {
      return a.pairs_per_second < b.pairs_per_second;
    });
    return rounds[rounds.size() / 2];
  };
  return {median_round(mine), median_round(theirs)};
}

// One row: tracked against raw at one thread count, by throughput and by median latency; the
// target is a ratio of the two (tracked cost / raw cost) for both.
void row(const std::string& what, int threads, const Measured& ours, const Measured& raw,
         const char* raw_name, double target) {
  const double slower =
      std::max(raw.pairs_per_second / ours.pairs_per_second, ours.median_us / raw.median_us);
  rows().push_back(
      {what + ", " + std::to_string(threads) + " thread(s)",
       fmt("%.3f M pairs/s", ours.pairs_per_second / 1e6) + fmt(", median %.2f us", ours.median_us),
       fmt("%.3f M pairs/s", raw.pairs_per_second / 1e6) + fmt(", median %.2f us ", raw.median_us) +
           raw_name,
       fmt("%.3fx pairs/s", raw.pairs_per_second / ours.pairs_per_second) +
           fmt(", %.3fx median", ours.median_us / raw.median_us),
       fmt("<= %.2fx", target), slower <= target});
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
  auto raw_device = [] {
    void* p = nullptr;
    cudaMalloc(&p, 4096);
    cudaFree(p);
  };
  auto tracked_device = [&] {
    vramguard::DeviceMemory memory(4096, &tracker, vramguard::VramPurpose::KVCache, {},
                                   vramguard::AllocationKind::Device);
  };
  measure(device, 1, 10'000, raw);  // warm the pool
  for (int threads : {1, 4, 16}) {
    const auto [ours, cuda] = alternated(device, threads, 20'000, tracked, raw);
    row("Pool (cudaMallocAsync) alloc+free 4 KiB, one pool", threads, ours, cuda,
        "raw cudaMallocFromPoolAsync+cudaFreeAsync", 1.10);
  }
  for (int threads : {1, 4, 16}) {
    const auto [ours, cuda] = alternated(device, threads, 400, tracked_device, raw_device);
    row("Device (cudaMalloc) alloc+free 4 KiB", threads, ours, cuda, "raw cudaMalloc+cudaFree",
        1.05);
  }
}

}  // namespace bench
