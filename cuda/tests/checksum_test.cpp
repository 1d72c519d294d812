// I1: the checksum. CPU reference properties; the kernel against the reference for many sizes,
// starts and launch shapes; corruption made outside the product is detected; throughput figures
// (printed, never asserted).
#include "vramguard/checksum.hpp"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "../src/checksum_launch.hpp"
#include "gpu_gate.hpp"
#include "vramguard.h"
#include "vramguard/device.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/error.hpp"
#include "vramguard/memory_pool.hpp"

namespace vramguard {
// Readable failure messages.
void PrintTo(const Checksum& c, std::ostream* os) { *os << c.to_hex(); }
}  // namespace vramguard

using namespace vramguard;

namespace {

constexpr std::size_t kMiB = 1ull << 20;
constexpr std::size_t kGiB = 1ull << 30;

std::vector<unsigned char> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> out(n);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t v = rng();
    for (int b = 0; b < 8; ++b) out[i + b] = static_cast<unsigned char>(v >> (8 * b));
  }
  for (; i < n; ++i) out[i] = static_cast<unsigned char>(rng());
  return out;
}

// Device memory made with the raw runtime, so that what the test plants is not the product's
// doing (Q6). Freed at scope end.
class RawDeviceBuffer {
 public:
  explicit RawDeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaMalloc(&ptr_, bytes), cudaSuccess);
  }
  ~RawDeviceBuffer() { (void)cudaFree(ptr_); }
  RawDeviceBuffer(const RawDeviceBuffer&) = delete;
  RawDeviceBuffer& operator=(const RawDeviceBuffer&) = delete;
  unsigned char* get() const { return static_cast<unsigned char*>(ptr_); }
  void upload(const std::vector<unsigned char>& data, std::size_t offset = 0) {
    ASSERT_LE(offset + data.size(), bytes_);
    ASSERT_EQ(cudaMemcpy(get() + offset, data.data(), data.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_;
};

}  // namespace

// --- CPU reference --------------------------------------------------------------------------

TEST(ChecksumHost, DeterministicAndHexIs32Digits) {
  const auto data = random_bytes(1000, 1);
  const Checksum a = host_checksum(data.data(), data.size());
  EXPECT_EQ(a, host_checksum(data.data(), data.size()));
  const std::string hex = a.to_hex();
  EXPECT_EQ(hex.size(), 32u);
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  char expected[33];
  std::snprintf(expected, sizeof expected, "%016llx%016llx", static_cast<unsigned long long>(a.hi),
                static_cast<unsigned long long>(a.lo));
  EXPECT_EQ(hex, expected);
}

TEST(ChecksumHost, EmptyInputIsWellDefined) {
  EXPECT_EQ(host_checksum(nullptr, 0), host_checksum("x", 0));
  EXPECT_THROW(host_checksum(nullptr, 1), Error);
}

TEST(ChecksumHost, LengthIsFoldedIn) {
  // Zero padding does not make "abc" equal "abc\0" or a longer run of zeros.
  const std::vector<unsigned char> zeros(64, 0);
  std::set<std::pair<std::uint64_t, std::uint64_t>> seen;
  for (std::size_t n = 0; n <= zeros.size(); ++n) {
    const Checksum c = host_checksum(zeros.data(), n);
    EXPECT_TRUE(seen.insert({c.lo, c.hi}).second) << "zeros of length " << n << " collide";
  }
  const unsigned char abc[4] = {'a', 'b', 'c', 0};
  EXPECT_NE(host_checksum(abc, 3), host_checksum(abc, 4));
}

TEST(ChecksumHost, EverySingleByteFlipChangesIt) {
  auto data = random_bytes(97, 2);  // several whole words and a partial one
  const Checksum original = host_checksum(data.data(), data.size());
  for (std::size_t i = 0; i < data.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      data[i] ^= static_cast<unsigned char>(1u << bit);
      EXPECT_NE(host_checksum(data.data(), data.size()), original)
          << "byte " << i << " bit " << bit;
      data[i] ^= static_cast<unsigned char>(1u << bit);
    }
    const unsigned char saved = data[i];
    for (int value = 0; value < 256; ++value) {
      if (value == saved) continue;
      data[i] = static_cast<unsigned char>(value);
      ASSERT_NE(host_checksum(data.data(), data.size()), original)
          << "byte " << i << " = " << value;
    }
    data[i] = saved;
  }
  EXPECT_EQ(host_checksum(data.data(), data.size()), original);
}

TEST(ChecksumHost, PositionMattersSwappedWordsDiffer) {
  auto data = random_bytes(64, 3);
  const Checksum original = host_checksum(data.data(), data.size());
  std::swap_ranges(data.begin(), data.begin() + 16, data.begin() + 16);
  EXPECT_NE(host_checksum(data.data(), data.size()), original);
  // The same word repeated at two places still counts twice (no cancelling).
  std::vector<unsigned char> twice(32, 0x5A);
  EXPECT_NE(host_checksum(twice.data(), 32), host_checksum(twice.data(), 16));
}

TEST(ChecksumHost, CAbiMatchesCpp) {
  const auto data = random_bytes(4099, 4);
  vg_checksum out{};
  ASSERT_EQ(vg_checksum_host(data.data(), data.size(), &out), VG_OK);
  const Checksum c = host_checksum(data.data(), data.size());
  EXPECT_EQ(out.lo, c.lo);
  EXPECT_EQ(out.hi, c.hi);
  EXPECT_EQ(vg_checksum_host(nullptr, 0, &out), VG_OK);
  EXPECT_EQ(vg_checksum_host(nullptr, 5, &out), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_checksum_host(data.data(), 5, nullptr), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_checksum_host(data.data(), UINT64_MAX, &out), VG_ERR_INVALID_SIZE);
}

TEST(ChecksumCAbi, ArgumentsValidatedWithoutTouchingTheDevice) {
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  auto* fake = reinterpret_cast<void*>(0x1000);
  ASSERT_EQ(vg_record(tracker, fake, 4096, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "w", nullptr),
            VG_OK);
  vg_checksum out{};
  EXPECT_EQ(vg_checksum_device(nullptr, fake, 0, 16, &out), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_checksum_device(tracker, nullptr, 0, 16, &out), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_checksum_device(tracker, fake, 0, 16, nullptr), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_checksum_device(tracker, fake, 0, 0, &out), VG_ERR_INVALID_SIZE);
  EXPECT_EQ(vg_checksum_device(tracker, reinterpret_cast<void*>(0x2000), 0, 16, &out),
            VG_ERR_UNKNOWN_POINTER);
  EXPECT_EQ(vg_checksum_device(tracker, fake, 4000, 97, &out), VG_ERR_OUT_OF_RANGE);
  EXPECT_EQ(vg_checksum_device(tracker, fake, 4097, 1, &out), VG_ERR_OUT_OF_RANGE);
  EXPECT_EQ(vg_checksum_device(tracker, fake, UINT64_MAX, 2, &out), VG_ERR_OUT_OF_RANGE);
  EXPECT_NE(std::string(vg_last_error()).find("exceeds the allocation of 4096 bytes"),
            std::string::npos)
      << vg_last_error();
  // A deadline of nothing is refused; the default one is the header's.
  EXPECT_EQ(vg_checksum_device_within(tracker, fake, 0, 16, 0, &out), VG_ERR_INVALID_SIZE);
  EXPECT_NE(std::string(vg_last_error()).find("vg_checksum_device_within"), std::string::npos)
      << vg_last_error();
  EXPECT_EQ(vg_checksum_device_within(nullptr, fake, 0, 16, 1000, &out), VG_ERR_NULL_ARGUMENT);
  EXPECT_EQ(vg_checksum_device_within(tracker, fake, 4000, 97, 1000, &out), VG_ERR_OUT_OF_RANGE);
  try {
    (void)device_checksum(fake, 16, 0, std::chrono::milliseconds(0));
    ADD_FAILURE() << "a timeout of 0 ms was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), VG_ERR_INVALID_SIZE) << e.what();
  }
  EXPECT_EQ(kDefaultChecksumTimeout.count(),
            static_cast<long long>(VG_CHECKSUM_DEFAULT_TIMEOUT_MS));
  EXPECT_EQ(vg_deallocate(tracker, fake), VG_OK);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
}

// --- On the GPU ---------------------------------------------------------------------------------

TEST(ChecksumDevice, MatchesHostForSmallSizes) {
  VG_REQUIRE_GPU();
  const auto data = random_bytes(4096 + 64, 10);
  RawDeviceBuffer buffer(data.size());
  buffer.upload(data);
  std::vector<std::size_t> sizes;
  for (std::size_t n = 0; n <= 64; ++n) sizes.push_back(n);
  for (std::size_t n = 65; n <= 4096; n += 37) sizes.push_back(n);
  for (std::size_t n : {127u, 128u, 129u, 255u, 256u, 257u, 1023u, 1024u, 1025u, 4095u, 4096u})
    sizes.push_back(n);
  for (std::size_t n : sizes) {
    ASSERT_EQ(device_checksum(buffer.get(), n, 0), host_checksum(data.data(), n)) << n << " bytes";
  }
}

TEST(ChecksumDevice, MatchesHostForLargeSizes) {
  VG_REQUIRE_GPU();
  for (std::size_t n : {kMiB + 7, 64 * kMiB}) {
    const auto data = random_bytes(n, n);
    RawDeviceBuffer buffer(n);
    buffer.upload(data);
    EXPECT_EQ(device_checksum(buffer.get(), n, 0), host_checksum(data.data(), n)) << n << " bytes";
  }
}

TEST(ChecksumDevice, MisalignedStartsGiveTheSameValueForTheSameBytes) {
  VG_REQUIRE_GPU();
  const auto data = random_bytes(kMiB + 64, 11);
  RawDeviceBuffer buffer(data.size());
  buffer.upload(data);
  for (std::size_t start = 1; start <= 15; ++start) {
    for (std::size_t n :
         {std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17}, std::size_t{31},
          std::size_t{33}, std::size_t{1000}, std::size_t{4096}, kMiB + 7}) {
      const Checksum expected = host_checksum(data.data() + start, n);
      ASSERT_EQ(device_checksum(buffer.get() + start, n, 0), expected)
          << "start +" << start << ", " << n << " bytes";
    }
  }
  // The same bytes uploaded at an aligned and at a misaligned address.
  const auto payload = random_bytes(100003, 12);
  buffer.upload(payload, 0);
  const Checksum aligned = device_checksum(buffer.get(), payload.size(), 0);
  buffer.upload(payload, 5);
  EXPECT_EQ(device_checksum(buffer.get() + 5, payload.size(), 0), aligned);
}

TEST(ChecksumDevice, SameAcrossLaunchShapes) {
  VG_REQUIRE_GPU();
  const std::size_t n = 8 * kMiB + 13;
  const auto data = random_bytes(n, 13);
  RawDeviceBuffer buffer(n + 16);
  buffer.upload(data);
  const Checksum expected = host_checksum(data.data(), n);
  const std::pair<unsigned, unsigned> shapes[] = {
      {1, 32}, {1, 1024}, {3, 96}, {132, 256}, {528, 256}, {1056, 512}, {4096, 128}, {70000, 64}};
  for (const auto& [blocks, threads] : shapes) {
    EXPECT_EQ(device_checksum_with_shape(buffer.get(), n, 0, blocks, threads), expected)
        << blocks << " x " << threads;
  }
  buffer.upload(data, 3);
  for (const auto& [blocks, threads] : shapes) {
    EXPECT_EQ(device_checksum_with_shape(buffer.get() + 3, n, 0, blocks, threads), expected)
        << blocks << " x " << threads << " at +3";
  }
  EXPECT_THROW(device_checksum_with_shape(buffer.get(), n, 0, 1, 33), Error);
  EXPECT_THROW(device_checksum_with_shape(buffer.get(), n, 0, 1, 2048), Error);
  EXPECT_THROW(device_checksum_with_shape(buffer.get(), n, 0, 0, 256), Error);
}

TEST(ChecksumDevice, RawCorruptionOfOneByteIsDetected) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  const std::size_t n = 16 * kMiB + 5;
  DeviceMemory weights(n, &tracker, VramPurpose::ModelWeights, "weights");
  const auto data = random_bytes(n, 14);
  weights.copy_from_host(data.data(), n);
  const Checksum at_load = device_checksum(weights.get(), n, 0);
  EXPECT_EQ(at_load, host_checksum(data.data(), n));
  for (std::size_t offset : {std::size_t{0}, std::size_t{7}, n / 2 + 3, n - 1}) {
    unsigned char byte = 0;
    auto* where = static_cast<unsigned char*>(weights.get()) + offset;
    ASSERT_EQ(cudaMemcpy(&byte, where, 1, cudaMemcpyDeviceToHost), cudaSuccess);
    const unsigned char flipped = byte ^ 0x10;
    ASSERT_EQ(cudaMemcpy(where, &flipped, 1, cudaMemcpyHostToDevice),
              cudaSuccess);  // not the product
    EXPECT_NE(device_checksum(weights.get(), n, 0), at_load) << "offset " << offset;
    ASSERT_EQ(cudaMemcpy(where, &byte, 1, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(device_checksum(weights.get(), n, 0), at_load) << "offset " << offset << " restored";
  }
}

TEST(ChecksumDevice, ManagedPinnedAndPoolMemoryWork) {
  VG_REQUIRE_GPU();
  VramTracker tracker;
  MemoryPool pool(0);
  const std::size_t n = 3 * kMiB + 17;
  const auto data = random_bytes(n, 15);
  const Checksum expected = host_checksum(data.data(), n);
  for (auto kind : {AllocationKind::Managed, AllocationKind::PinnedHost, AllocationKind::Pool}) {
    DeviceMemory memory(n, &tracker, VramPurpose::KVCache, "kind", kind, &pool);
    memory.copy_from_host(data.data(), n);
    EXPECT_EQ(device_checksum(memory.get(), n, 0), expected) << static_cast<int>(kind);
    EXPECT_EQ(device_checksum(static_cast<char*>(memory.get()) + 9, n - 9, 0),
              host_checksum(data.data() + 9, n - 9))
        << static_cast<int>(kind);
  }
}

TEST(ChecksumDevice, UnreadableMemoryIsRefusedBeforeAnyKernel) {
  VG_REQUIRE_GPU();
  std::vector<unsigned char> pageable(4096, 1);
  try {
    (void)device_checksum(pageable.data(), pageable.size(), 0);
    FAIL() << "pageable host memory was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), VG_ERR_NOT_READABLE);
    EXPECT_NE(std::string(e.what()).find("not readable by the GPU"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)device_checksum(nullptr, 16, 0), Error);
  EXPECT_THROW((void)device_checksum(pageable.data(), 16, 99), Error);
  // The context is intact: a checksum right after works.
  RawDeviceBuffer buffer(64);
  const auto data = random_bytes(64, 16);
  buffer.upload(data);
  EXPECT_EQ(device_checksum(buffer.get(), 64, 0), host_checksum(data.data(), 64));
}

TEST(ChecksumDevice, CAbiChecksumsATrackedRange) {
  VG_REQUIRE_GPU();
  vg_tracker* tracker = nullptr;
  ASSERT_EQ(vg_tracker_create(0, &tracker), VG_OK);
  void* ptr = nullptr;
  const std::size_t n = 2 * kMiB + 3;
  ASSERT_EQ(vg_alloc(tracker, n, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "w", &ptr), VG_OK);
  const auto data = random_bytes(n, 17);
  ASSERT_EQ(vg_copy_to_device(tracker, ptr, 0, data.data(), n), VG_OK);
  vg_checksum out{};
  ASSERT_EQ(vg_checksum_device(tracker, ptr, 0, n, &out), VG_OK) << vg_last_error();
  Checksum expected = host_checksum(data.data(), n);
  EXPECT_EQ(out.lo, expected.lo);
  EXPECT_EQ(out.hi, expected.hi);
  ASSERT_EQ(vg_checksum_device(tracker, ptr, 11, n - 12, &out), VG_OK) << vg_last_error();
  expected = host_checksum(data.data() + 11, n - 12);
  EXPECT_EQ(out.lo, expected.lo);
  EXPECT_EQ(out.hi, expected.hi);
  EXPECT_EQ(vg_checksum_device(tracker, ptr, 11, n - 10, &out), VG_ERR_OUT_OF_RANGE);
  EXPECT_EQ(vg_checksum_device(tracker, static_cast<char*>(ptr) + 1, 0, 1, &out),
            VG_ERR_UNKNOWN_POINTER);
  EXPECT_EQ(vg_free(tracker, ptr), VG_OK);
  EXPECT_EQ(vg_tracker_destroy(tracker), VG_OK);
}

TEST(ChecksumDevice, ConcurrentCallersOnTheirOwnStreams) {
  VG_REQUIRE_GPU();
  constexpr int kThreads = 8;
  const std::size_t n = 4 * kMiB + 1;
  std::vector<std::vector<unsigned char>> inputs;
  std::vector<std::unique_ptr<RawDeviceBuffer>> buffers;
  for (int t = 0; t < kThreads; ++t) {
    inputs.push_back(random_bytes(n, 100 + t));
    buffers.push_back(std::make_unique<RawDeviceBuffer>(n));
    buffers.back()->upload(inputs.back());
  }
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      cudaStream_t stream = nullptr;
      if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        mismatches[t] = -1;
        return;
      }
      const Checksum expected = host_checksum(inputs[t].data(), n);
      for (int round = 0; round < 20; ++round) {
        if (device_checksum(buffers[t]->get(), n, 0, stream) != expected) ++mismatches[t];
      }
      (void)cudaStreamDestroy(stream);
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(ChecksumDevice, ReadOnlySweepRunsOnAnyRange) {
  VG_REQUIRE_GPU();
  RawDeviceBuffer buffer(kMiB + 32);
  ASSERT_EQ(cudaMemset(buffer.get(), 1, kMiB + 32), cudaSuccess);
  EXPECT_NO_THROW(read_only_sweep(buffer.get(), kMiB + 32, 0));
  EXPECT_NO_THROW(read_only_sweep(buffer.get() + 3, kMiB + 1, 0));
  EXPECT_NO_THROW(read_only_sweep(buffer.get() + 3, 5, 0));
  EXPECT_NO_THROW(read_only_sweep(buffer.get(), 0, 0));
}

// --- Throughput: printed, never asserted -----------------------------------------------------

namespace {

struct Timing {
  double median_ms = 0;
  double gbps = 0;  // 1e9 bytes per second
};

template <typename Run>
Timing time_median(std::size_t bytes, Run&& run) {
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  EXPECT_EQ(cudaEventCreate(&start), cudaSuccess);
  EXPECT_EQ(cudaEventCreate(&stop), cudaSuccess);
  run();  // warm-up
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> ms;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(cudaEventRecord(start, nullptr), cudaSuccess);
    run();
    EXPECT_EQ(cudaEventRecord(stop, nullptr), cudaSuccess);
    EXPECT_EQ(cudaEventSynchronize(stop), cudaSuccess);
    float elapsed = 0;
    EXPECT_EQ(cudaEventElapsedTime(&elapsed, start, stop), cudaSuccess);
    ms.push_back(elapsed);
  }
  std::sort(ms.begin(), ms.end());
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  Timing t;
  t.median_ms = ms[ms.size() / 2];
  t.gbps = static_cast<double>(bytes) / (t.median_ms * 1e-3) / 1e9;
  return t;
}

}  // namespace

TEST(ChecksumThroughput, PrintsFigures) {
  VG_REQUIRE_GPU();
  namespace cs = detail::checksum;
  const std::size_t largest = 16 * kGiB;
  if (memory_info(0).free_bytes < largest + kGiB) GTEST_SKIP() << "needs 17 GiB free";
  RawDeviceBuffer buffer(largest);
  ASSERT_EQ(cudaMemset(buffer.get(), 0xA5, largest), cudaSuccess);
  unsigned long long* lanes = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&lanes), 16), cudaSuccess);

  const auto kernel_only = [&](std::size_t bytes, cs::LaunchShape shape) {
    return time_median(bytes, [&] {
      (void)cudaMemsetAsync(lanes, 0, 16, nullptr);
      cs::enqueue_lanes(buffer.get(), bytes, lanes, shape, nullptr);
    });
  };
  const auto sweep_only = [&](std::size_t bytes, cs::LaunchShape shape) {
    return time_median(bytes, [&] { cs::enqueue_sweep(buffer.get(), bytes, shape, nullptr); });
  };

  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  std::printf("[ figures  ] %s, %d SMs; GB/s = 1e9 bytes/s; median of 5 after a warm-up\n",
              prop.name, prop.multiProcessorCount);

  // Tuning table at 4 GiB, with VRAMGUARD_CHECKSUM_TUNE=1: blocks per SM x threads x loads in
  // flight per thread.
  const char* tune = std::getenv("VRAMGUARD_CHECKSUM_TUNE");
  const bool tuning = tune != nullptr && std::string(tune) == "1";
  const std::size_t tune_bytes = 4 * kGiB;
  for (unsigned unroll : {2u, 4u, 8u}) {
    if (!tuning) break;
    for (unsigned threads : {256u, 512u}) {
      for (unsigned per_sm : {2u, 4u, 8u}) {
        cs::LaunchShape shape;
        shape.blocks = per_sm * prop.multiProcessorCount;
        shape.threads = threads;
        shape.unroll = unroll;
        const Timing c = kernel_only(tune_bytes, shape);
        const Timing s = sweep_only(tune_bytes, shape);
        std::printf(
            "[ tune     ] 4 GiB unroll %u, %4u threads, %u blocks/SM: checksum %7.1f GB/s,"
            " sweep %7.1f GB/s, ratio %5.1f %%\n",
            unroll, threads, per_sm, c.gbps, s.gbps, 100.0 * c.gbps / s.gbps);
      }
    }
  }

  // The product's default shape, kernel alone and the whole synchronous call.
  for (std::size_t bytes : {kGiB, 4 * kGiB, 16 * kGiB}) {
    const cs::LaunchShape shape = cs::resolve_shape(0, bytes, {});
    const Timing c = kernel_only(bytes, shape);
    const Timing s = sweep_only(bytes, shape);
    const Timing call = time_median(bytes, [&] { (void)device_checksum(buffer.get(), bytes, 0); });
    const Timing sweep_call = time_median(bytes, [&] { read_only_sweep(buffer.get(), bytes, 0); });
    std::printf(
        "[ figures  ] %2zu GiB (%u x %u, unroll %u): checksum kernel %7.1f GB/s (%.3f ms),"
        " read_only_sweep kernel %7.1f GB/s (%.3f ms), ratio %5.1f %%;"
        " device_checksum() call %7.1f GB/s, read_only_sweep() call %7.1f GB/s,"
        " ratio %5.1f %%\n",
        bytes / kGiB, shape.blocks, shape.threads, shape.unroll, c.gbps, c.median_ms, s.gbps,
        s.median_ms, 100.0 * c.gbps / s.gbps, call.gbps, sweep_call.gbps,
        100.0 * call.gbps / sweep_call.gbps);
  }
  // Misaligned start: the slower path, for the record.
  {
    const Timing m =
        time_median(4 * kGiB, [&] { (void)device_checksum(buffer.get() + 3, 4 * kGiB, 0); });
    std::printf(
        "[ figures  ]  4 GiB at +3 bytes (misaligned path): device_checksum() call %7.1f GB/s\n",
        m.gbps);
  }
  (void)cudaFree(lanes);
}
