// A residency sweep over 100,000 live allocations against a raw cudaPointerGetAttributes loop
// over the same pointers, and tracked allocation latency while sweeps run against idle: the sweep
// must not hold the tracker's locks while it asks CUDA.
#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench.hpp"
#include "timing.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/memory_pool.hpp"
#include "vramguard/residency_check.hpp"

namespace bench {
namespace {

constexpr std::size_t kLive = 100'000;
constexpr std::size_t kSpacing = 256;

std::vector<double> allocation_latencies_us(vramguard::VramTracker& tracker,
                                            vramguard::MemoryPool& pool, int n) {
  std::vector<double> samples;
  samples.reserve(n);
  for (int i = 0; i < n; ++i) {
    const double start = now_seconds();
    {
      vramguard::DeviceMemory memory(4096, &tracker, vramguard::VramPurpose::KVCache, {},
                                     vramguard::AllocationKind::Pool, &pool);
    }
    samples.push_back((now_seconds() - start) * 1e6);
  }
  return samples;
}

std::vector<double> tracker_pair_latencies_us(vramguard::VramTracker& tracker, int n) {
  std::vector<double> samples;
  samples.reserve(n);
  for (int i = 0; i < n; ++i) {
    const void* p =
        reinterpret_cast<const void*>(0x600000000000ull + (static_cast<std::uint64_t>(i) << 8));
    const double start = now_seconds();
    tracker.record_allocation(p, 4096, vramguard::VramPurpose::KVCache);
    tracker.record_deallocation(p);
    samples.push_back((now_seconds() - start) * 1e6);
  }
  return samples;
}

std::vector<double> raw_pool_latencies_us(int n) {
  std::vector<double> samples;
  samples.reserve(n);
  for (int i = 0; i < n; ++i) {
    void* p = nullptr;
    const double start = now_seconds();
    cudaMallocAsync(&p, 4096, nullptr);
    cudaFreeAsync(p, nullptr);
    samples.push_back((now_seconds() - start) * 1e6);
  }
  cudaDeviceSynchronize();
  return samples;
}

}  // namespace

void sampled_check_benchmarks(int device);

void residency_benchmarks(int device) {
  cudaSetDevice(device);
  char* block = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&block), kLive * kSpacing);
  vramguard::VramTracker tracker(device);
  std::vector<const void*> pointers;
  for (std::size_t i = 0; i < kLive; ++i) {
    pointers.push_back(block + i * kSpacing);
    tracker.adopt(pointers.back(), kSpacing, vramguard::VramPurpose::ModelWeights);
  }
  std::vector<double> raw, ours, collect, raw_in_our_order;
  for (int round = 0; round < 7; ++round) {
    // Where a sweep's time goes: copying the candidates under the shard locks, and CUDA's query
    // over them in the order the tracker lists them (not address order).
    double phase = now_seconds();
    const auto candidates = tracker.residency_candidates(vramguard::kAllPurposes).queried;
    collect.push_back(now_seconds() - phase);
    phase = now_seconds();
    for (const auto& candidate : candidates) {
      cudaPointerAttributes attributes{};
      cudaPointerGetAttributes(&attributes, candidate.ptr);
    }
    raw_in_our_order.push_back(now_seconds() - phase);

    double start = now_seconds();
    std::size_t resident = 0;
    for (const void* p : pointers) {
      cudaPointerAttributes attributes{};
      if (cudaPointerGetAttributes(&attributes, p) == cudaSuccess &&
          attributes.type == cudaMemoryTypeDevice && attributes.hostPointer == nullptr &&
          attributes.device == device) {
        ++resident;
      }
    }
    raw.push_back(now_seconds() - start);
    start = now_seconds();
    const auto report = vramguard::ResidencyCheck::check_residency(tracker);
    ours.push_back(now_seconds() - start);
    if (!report.resident || resident != kLive) std::printf("unexpected: not all resident\n");
  }
  const double ratio = median(ours) / median(raw);
  rows().push_back({"residency sweep, 100,000 live allocations", fmt("%.1f ms", median(ours) * 1e3),
                    fmt("%.1f ms (raw cudaPointerGetAttributes loop)", median(raw) * 1e3),
                    fmt("%.2fx", ratio), "<= 1.2x", ratio <= 1.2});
  rows().push_back({"  of which: copying the candidates under shard locks",
                    fmt("%.2f ms", median(collect) * 1e3), "-", "-", "reported", true});
  rows().push_back({"  raw cudaPointerGetAttributes loop in the tracker's order",
                    fmt("%.1f ms", median(raw_in_our_order) * 1e3),
                    fmt("%.1f ms (address order)", median(raw) * 1e3),
                    fmt("%.2fx", median(raw_in_our_order) / median(raw)), "reported", true});

  vramguard::MemoryPool pool(device);
  vramguard::VramTracker churn(device);
  allocation_latencies_us(churn, pool, 2000);  // warm the pool
  const double idle = median(allocation_latencies_us(churn, pool, 20000));
  std::atomic<bool> stop{false};
  std::atomic<int> sweeps{0};
  std::thread sweeper([&] {
    cudaSetDevice(device);
    while (!stop.load()) {
      vramguard::ResidencyCheck::check_residency(tracker);
      sweeps.fetch_add(1);
    }
  });
  while (sweeps.load() == 0) {
  }
  const double busy = median(allocation_latencies_us(tracker, pool, 20000));
  // What the sweep costs our locks alone, and what a raw query loop costs CUDA's allocator.
  vramguard::VramTracker bookkeeping(device);
  const double tracker_busy = median(tracker_pair_latencies_us(tracker, 200000));
  stop.store(true);
  sweeper.join();
  const double tracker_idle = median(tracker_pair_latencies_us(bookkeeping, 200000));
  const double raw_idle = median(raw_pool_latencies_us(20000));
  std::atomic<bool> raw_stop{false};
  std::thread raw_sweeper([&] {
    cudaSetDevice(device);
    while (!raw_stop.load()) {
      for (const void* p : pointers) {
        cudaPointerAttributes attributes{};
        cudaPointerGetAttributes(&attributes, p);
      }
    }
  });
  const double raw_busy = median(raw_pool_latencies_us(20000));
  raw_stop.store(true);
  raw_sweeper.join();
  rows().push_back({"tracker record+deallocate during sweeps (our locks only)",
                    fmt("%.3f us", tracker_busy), fmt("%.3f us idle", tracker_idle),
                    fmt("%.2fx", tracker_busy / tracker_idle), "<= 2x idle",
                    tracker_busy / tracker_idle <= 2.0});
  rows().push_back({"raw cudaMallocAsync+cudaFreeAsync during a raw query loop (CUDA alone)",
                    fmt("%.2f us", raw_busy), fmt("%.2f us idle", raw_idle),
                    fmt("%.2fx", raw_busy / raw_idle), "reference", true});
  rows().push_back({"tracked Pool allocation + free during full sweeps (100,000 adopted)",
                    fmt("%.2f us", busy), fmt("%.2f us idle", idle), fmt("%.2fx", busy / idle),
                    "reference", true});
  cudaFree(block);
  sampled_check_benchmarks(device);
}

// Issue 16, part 2: the same allocations made by vramguard itself (Pool), swept in full as
// before and as the health check now sweeps them (1,024 own allocations queried per check, a
// different part each time), with tracked Pool allocation latency during each, back to back.
void sampled_check_benchmarks(int device) {
  vramguard::MemoryPool pool(device);
  vramguard::VramTracker owned(device);
  std::vector<std::unique_ptr<vramguard::DeviceMemory>> live;
  live.reserve(kLive);
  for (std::size_t i = 0; i < kLive; ++i) {
    live.push_back(std::make_unique<vramguard::DeviceMemory>(
        kSpacing, &owned, vramguard::VramPurpose::KVCache, std::string_view{},
        vramguard::AllocationKind::Pool, &pool));
  }
  const vramguard::SweepSample sampled{1024, 0};
  std::vector<double> full_times, sampled_times;
  for (int round = 0; round < 7; ++round) {
    double start = now_seconds();
    vramguard::ResidencyCheck::check_residency(owned);
    full_times.push_back(now_seconds() - start);
    start = now_seconds();
    vramguard::ResidencyCheck::check_residency(owned, vramguard::kAllPurposes,
                                               {sampled.own_limit, std::uint64_t(round)});
    sampled_times.push_back(now_seconds() - start);
  }
  vramguard::VramTracker churn(device);
  allocation_latencies_us(churn, pool, 2000);  // warm the pool
  const std::vector<double> idle_samples = allocation_latencies_us(owned, pool, 100000);
  // Tracked Pool pairs while `check(n)` (n: the checks so far) runs on another thread, every
  // `period` (0: back to back).
  auto pairs_during = [&](auto check, std::chrono::microseconds period, int pairs) {
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> checks{0};
    std::thread checker([&] {
      cudaSetDevice(device);
      auto next = std::chrono::steady_clock::now();
      while (!stop.load()) {
        check(checks.load());
        checks.fetch_add(1);
        next += period;
        std::this_thread::sleep_until(next);
      }
    });
    while (checks.load() == 0) {
    }
    std::vector<double> busy = allocation_latencies_us(owned, pool, pairs);
    stop.store(true);
    checker.join();
    return busy;
  };
  auto during = [&](auto check) { return median(pairs_during(check, {}, 20000)); };
  const double during_full =
      during([&](std::uint64_t) { vramguard::ResidencyCheck::check_residency(owned); });
  const double during_sampled = during([&](std::uint64_t n) {
    vramguard::ResidencyCheck::check_residency(owned, vramguard::kAllPurposes,
                                               {sampled.own_limit, n});
  });
  const double idle = median(idle_samples);
  // At the shortest health-check interval the service accepts (10 ms): the pairs a check's
  // queries stall are about one in two hundred, so the far tail shows them and the median does
  // not.
  const std::vector<double> at_interval = pairs_during(
      [&](std::uint64_t n) {
        vramguard::ResidencyCheck::check_residency(owned, vramguard::kAllPurposes,
                                                   {sampled.own_limit, n});
      },
      std::chrono::milliseconds(10), 100000);
  // The sampled check split in two: its walk of the tracker's shards alone (no CUDA call), and
  // its CUDA calls alone (the free-memory reading and 1,024 pointer queries, no tracker).
  const double during_walks = during([&](std::uint64_t n) {
    (void)owned.residency_candidates(vramguard::kAllPurposes, {sampled.own_limit, n});
  });
  const std::vector<vramguard::ResidencyCandidate> queried =
      owned.residency_candidates(vramguard::kAllPurposes, sampled).queried;
  auto query_all = [&] {
    for (const auto& candidate : queried) {
      cudaPointerAttributes attributes{};
      cudaPointerGetAttributes(&attributes, candidate.ptr);
    }
  };
  auto read_free_memory = [] {
    std::size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
  };
  const double during_queries = during([&](std::uint64_t) {
    read_free_memory();
    query_all();
  });
  const double during_free_memory = during([&](std::uint64_t) { read_free_memory(); });
  const double during_queries_only = during([&](std::uint64_t) { query_all(); });
  std::vector<double> free_memory_times, queries_times;
  for (int round = 0; round < 21; ++round) {
    double start = now_seconds();
    read_free_memory();
    free_memory_times.push_back(now_seconds() - start);
    start = now_seconds();
    query_all();
    queries_times.push_back(now_seconds() - start);
  }
  rows().push_back({"residency check, 100,000 own Pool allocations: sampled (1,024 own queried)",
                    fmt("%.2f ms", median(sampled_times) * 1e3),
                    fmt("%.1f ms full sweep", median(full_times) * 1e3),
                    fmt("%.3fx", median(sampled_times) / median(full_times)), "reported", true});
  rows().push_back({"tracked Pool allocation + free during full sweeps of own allocations",
                    fmt("%.2f us", during_full), fmt("%.2f us idle", idle),
                    fmt("%.2fx", during_full / idle), "reference (today's sweep)", true});
  rows().push_back({"tracked Pool allocation + free during sampled checks, back to back",
                    fmt("%.2f us", during_sampled), fmt("%.2f us idle", idle),
                    fmt("%.2fx", during_sampled / idle), "<= 2x idle",
                    during_sampled / idle <= 2.0});
  rows().push_back(
      {"tracked Pool allocation + free during sampled checks every 10 ms (median, p99.9)",
       fmt("%.2f us", median(at_interval)) + fmt(", p99.9 %.2f us", percentile(at_interval, 0.999)),
       fmt("%.2f us", idle) + fmt(", p99.9 %.2f us idle", percentile(idle_samples, 0.999)),
       fmt("%.2fx", median(at_interval) / idle) +
           fmt(", %.2fx", percentile(at_interval, 0.999) / percentile(idle_samples, 0.999)),
       "reported", true});
  rows().push_back({"  of which: during the checks' shard walks alone (no CUDA call)",
                    fmt("%.2f us", during_walks), fmt("%.2f us idle", idle),
                    fmt("%.2fx", during_walks / idle), "reported", true});
  rows().push_back({"  of which: during their CUDA calls alone (cudaMemGetInfo + " +
                        std::to_string(queried.size()) + " queries)",
                    fmt("%.2f us", during_queries), fmt("%.2f us idle", idle),
                    fmt("%.2fx", during_queries / idle), "reported", true});
  rows().push_back({"    of which: during cudaMemGetInfo alone, back to back",
                    fmt("%.2f us", during_free_memory), fmt("%.2f us idle", idle),
                    fmt("%.2fx", during_free_memory / idle), "reported", true});
  rows().push_back({"    of which: during the queries alone, back to back",
                    fmt("%.2f us", during_queries_only), fmt("%.2f us idle", idle),
                    fmt("%.2fx", during_queries_only / idle), "reported", true});
  rows().push_back({"  one cudaMemGetInfo / the check's queries, idle",
                    fmt("%.1f us", median(free_memory_times) * 1e6),
                    fmt("%.1f us queries", median(queries_times) * 1e6), "-", "reported", true});
}

}  // namespace bench
