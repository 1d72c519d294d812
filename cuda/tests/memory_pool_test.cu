// Kind Pool (M3) and freeing pool memory that GPU work still uses. vg_free frees it with
// cudaFreeAsync on the legacy default stream of the tracker's device; that stream first waits for
// the earlier work of every blocking stream (cudaStreamCreate streams, per-thread default
// streams), so a kernel still reading the buffer there is done before the pool hands the memory
// out again, to a copy or to a weights load. The contract is documented at vg_free (vramguard.h),
// DeviceMemory and the Rust DeviceBuffer; these are its tests, with a reader that outlives the
// free.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gpu_gate.hpp"
#include "vramguard.h"
#include "vramguard/device_memory.hpp"
#include "vramguard/memory_pool.hpp"
#include "weights_file.hpp"

namespace {

constexpr std::size_t kWords = 1u << 18;  // 1 MiB of 32-bit words
constexpr unsigned long long kReaderDelayNs = 200'000'000ull;

__device__ __forceinline__ unsigned long long global_timer_ns() {
  unsigned long long now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

// Waits `delay_ns`, then adds up the words into *sum: a reader still queued or running when the
// host frees the buffer and allocates it again.
__global__ void late_sum(const unsigned* words, std::size_t count, unsigned long long delay_ns,
                         unsigned long long* sum) {
  __shared__ unsigned long long start;
  if (threadIdx.x == 0) start = global_timer_ns();
  __syncthreads();
  while (global_timer_ns() - start < delay_ns) {
  }
  unsigned long long partial = 0;
  for (std::size_t i = threadIdx.x; i < count; i += blockDim.x) partial += words[i];
  atomicAdd(sum, partial);
}

}  // namespace

TEST(PoolFreeOrdering, ReaderOnABlockingStreamFinishesBeforeTheMemoryIsReused) {
  VG_REQUIRE_GPU();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  std::vector<unsigned> first(kWords);
  std::vector<unsigned> second(kWords);
  unsigned long long expected = 0;
  for (std::size_t i = 0; i < kWords; ++i) {
    first[i] = static_cast<unsigned>(i) * 2654435761u + 1u;
    second[i] = ~first[i];
    expected += first[i];
  }
  const std::size_t bytes = kWords * sizeof(unsigned);
  unsigned long long* sum = nullptr;
  ASSERT_EQ(cudaMalloc(&sum, sizeof *sum), cudaSuccess);
  cudaStream_t created = nullptr;
  ASSERT_EQ(cudaStreamCreate(&created), cudaSuccess);  // a blocking stream

  const struct {
    cudaStream_t stream;
    const char* name;
  } readers[] = {{created, "cudaStreamCreate stream"},
                 {cudaStreamPerThread, "per-thread default stream"}};
  for (const auto& reader : readers) {
    SCOPED_TRACE(reader.name);
    void* ptr = nullptr;
    ASSERT_EQ(vg_alloc(tracker, bytes, VG_PURPOSE_KV_CACHE, VG_KIND_POOL, "read late", &ptr), VG_OK)
        << vg_last_error();
    ASSERT_EQ(vg_copy_to_device(tracker, ptr, 0, first.data(), bytes), VG_OK);
    ASSERT_EQ(cudaMemset(sum, 0, sizeof *sum), cudaSuccess);
    late_sum<<<1, 256, 0, reader.stream>>>(static_cast<const unsigned*>(ptr), kWords,
                                           kReaderDelayNs, sum);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    // While the reader waits: free, allocate the same size from the same pool, overwrite.
    ASSERT_EQ(vg_free(tracker, ptr), VG_OK);
    void* again = nullptr;
    ASSERT_EQ(vg_alloc(tracker, bytes, VG_PURPOSE_KV_CACHE, VG_KIND_POOL, "next", &again), VG_OK);
    if (again != ptr) {
      std::printf(
          "[ vramguard ] the pool did not hand out the freed block again (%p, then %p): "
          "the reader's result below shows less\n",
          ptr, again);
    }
    ASSERT_EQ(vg_copy_to_device(tracker, again, 0, second.data(), bytes), VG_OK);
    ASSERT_EQ(cudaStreamSynchronize(reader.stream), cudaSuccess);
    unsigned long long got = 0;
    ASSERT_EQ(cudaMemcpy(&got, sum, sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(got, expected) << "the reader saw the memory after it was reused";
    std::vector<unsigned> back(kWords);
    ASSERT_EQ(vg_copy_to_host(tracker, back.data(), again, 0, bytes), VG_OK);
    EXPECT_EQ(back, second);
    ASSERT_EQ(vg_free(tracker, again), VG_OK);
  }
  EXPECT_EQ(cudaStreamDestroy(created), cudaSuccess);
  EXPECT_EQ(cudaFree(sum), cudaSuccess);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
}

TEST(PoolFreeOrdering, FreedBlockWaitsForTheReaderBeforeAnotherStreamGetsIt) {
  // The sharper form: the next allocation from the pool is made on a non-blocking stream, which
  // has no ordering with the reader at all, and written there asynchronously. The pool may give
  // it the freed block only once the free has completed (or after waiting for it): so only a free
  // ordered after the reader keeps the reader's bytes intact. A free on a stream unordered with
  // the reader would complete at once, and the write would land under the reader.
  VG_REQUIRE_GPU();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  vramguard::VramTracker tracker(0);
  vramguard::MemoryPool pool(0);
  std::vector<unsigned> first(kWords);
  unsigned long long expected = 0;
  for (std::size_t i = 0; i < kWords; ++i) {
    first[i] = static_cast<unsigned>(i) * 40503u + 3u;
    expected += first[i];
  }
  const std::size_t bytes = kWords * sizeof(unsigned);
  unsigned long long* sum = nullptr;
  ASSERT_EQ(cudaMalloc(&sum, sizeof *sum), cudaSuccess);
  cudaStream_t created = nullptr;
  ASSERT_EQ(cudaStreamCreate(&created), cudaSuccess);
  cudaStream_t other = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), cudaSuccess);
  const struct {
    cudaStream_t stream;
    const char* name;
  } readers[] = {{created, "cudaStreamCreate stream"},
                 {cudaStreamPerThread, "per-thread default stream"}};
  for (const auto& reader : readers) {
    SCOPED_TRACE(reader.name);
    ASSERT_EQ(cudaMemset(sum, 0, sizeof *sum), cudaSuccess);
    void* block = nullptr;
    {
      vramguard::DeviceMemory memory(bytes, &tracker, vramguard::VramPurpose::KVCache, "read late",
                                     vramguard::AllocationKind::Pool, &pool);
      memory.copy_from_host(first.data(), bytes);
      block = memory.get();
      late_sum<<<1, 256, 0, reader.stream>>>(static_cast<const unsigned*>(block), kWords,
                                             kReaderDelayNs, sum);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    }  // freed through vramguard while the reader waits
    void* next = nullptr;
    ASSERT_EQ(
        cudaMallocFromPoolAsync(&next, bytes, static_cast<cudaMemPool_t>(pool.handle()), other),
        cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(next, 0xFF, bytes, other), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(reader.stream), cudaSuccess);
    unsigned long long got = 0;
    ASSERT_EQ(cudaMemcpy(&got, sum, sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(got, expected) << "another stream's allocation overwrote the block under the reader"
                             << (next == block ? " (the same block)" : "");
    ASSERT_EQ(cudaFreeAsync(next, other), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(other), cudaSuccess);
  }
  EXPECT_EQ(cudaStreamDestroy(other), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(created), cudaSuccess);
  EXPECT_EQ(cudaFree(sum), cudaSuccess);
}

TEST(PoolFreeOrdering, AWeightsLoadIntoTheReusedBlockWaitsForTheReader) {
  // The loader writes on non-blocking streams of its own, which by themselves wait for nothing:
  // a load into the block freed under a late reader must still land only after the reader.
  VG_REQUIRE_GPU();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  vg_loader_options options{};
  options.staging_bytes = 8ull << 20;
  options.readers = 4;
  vg_loader* loader = nullptr;
  ASSERT_EQ(vg_loader_create(0, &options, &loader), VG_OK) << vg_last_error();
  std::vector<unsigned> first(kWords);
  std::vector<unsigned> weights(kWords);
  unsigned long long expected = 0;
  for (std::size_t i = 0; i < kWords; ++i) {
    first[i] = static_cast<unsigned>(i) * 2246822519u + 5u;
    weights[i] = ~first[i];
    expected += first[i];
  }
  const std::size_t bytes = kWords * sizeof(unsigned);
  const WeightsFile file(weights);
  const vg_weights_file spec = file.spec();
  const vg_weights_copy copy{0, 0, bytes, 0};
  unsigned long long* sum = nullptr;
  ASSERT_EQ(cudaMalloc(&sum, sizeof *sum), cudaSuccess);
  cudaStream_t created = nullptr;
  ASSERT_EQ(cudaStreamCreate(&created), cudaSuccess);  // a blocking stream

  const struct {
    cudaStream_t stream;
    const char* name;
  } readers[] = {{cudaStreamLegacy, "legacy default stream"}, {created, "cudaStreamCreate stream"}};
  for (const auto& reader : readers) {
    SCOPED_TRACE(reader.name);
    void* ptr = nullptr;
    ASSERT_EQ(vg_alloc(tracker, bytes, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_POOL, "old", &ptr), VG_OK)
        << vg_last_error();
    ASSERT_EQ(vg_copy_to_device(tracker, ptr, 0, first.data(), bytes), VG_OK);
    ASSERT_EQ(cudaMemset(sum, 0, sizeof *sum), cudaSuccess);
    late_sum<<<1, 256, 0, reader.stream>>>(static_cast<const unsigned*>(ptr), kWords,
                                           kReaderDelayNs, sum);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    // While the reader waits: free, allocate the same size from the same pool, load into it.
    ASSERT_EQ(vg_free(tracker, ptr), VG_OK);
    void* again = nullptr;
    ASSERT_EQ(vg_alloc(tracker, bytes, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_POOL, "new", &again),
              VG_OK);
    if (again != ptr) {
      std::printf(
          "[ vramguard ] the pool did not hand out the freed block again (%p, then %p): "
          "the reader's result below shows less\n",
          ptr, again);
    }
    vg_load_result result{};
    ASSERT_EQ(vg_load_weights(loader, tracker, again, bytes, &spec, 1, &copy, 1, VG_LOAD_VERIFY,
                              nullptr, &result),
              VG_OK)
        << vg_last_error();
    ASSERT_EQ(cudaStreamSynchronize(reader.stream), cudaSuccess);
    unsigned long long got = 0;
    ASSERT_EQ(cudaMemcpy(&got, sum, sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(got, expected) << "the load wrote the block while the reader still read it";
    std::vector<unsigned> back(kWords);
    ASSERT_EQ(vg_copy_to_host(tracker, back.data(), again, 0, bytes), VG_OK);
    EXPECT_EQ(back, weights);
    ASSERT_EQ(vg_free(tracker, again), VG_OK);
  }
  EXPECT_EQ(cudaStreamDestroy(created), cudaSuccess);
  EXPECT_EQ(cudaFree(sum), cudaSuccess);
  EXPECT_EQ(vg_loader_destroy(loader), VG_OK);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
}
