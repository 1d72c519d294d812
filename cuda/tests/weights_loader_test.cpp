// W1 + I1: the weights loader through the C ABI. The hashing it rests on (pieces hashed at their
// word positions add up to the one-pass checksum) needs no GPU; loads do: the image read back
// equals the file's bytes at their offsets with zeros between, corruption in staging is caught,
// and a file that changed, vanished or lies about its size is refused with its own status.
// Linked with the tests' build of the core, which alone can corrupt staging (staging_fault.hpp).
#include "vramguard/weights_loader.hpp"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../src/checksum_hash.hpp"
#include "gpu_gate.hpp"
#include "staging_fault.hpp"
#include "vramguard.h"
#include "vramguard/checksum.hpp"
#include "weights_file.hpp"

namespace {

namespace cs = vramguard::detail::checksum;

std::vector<unsigned char> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> out(n);
  for (auto& byte : out) byte = static_cast<unsigned char>(rng());
  return out;
}

TEST(WeightsHashing, PiecesAtTheirWordPositionsAddUpToTheOnePassChecksum) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    const std::size_t bytes = 1 + rng() % 5000;
    const auto data = random_bytes(bytes, round);
    const vramguard::Checksum whole = vramguard::host_checksum(data.data(), bytes);
    // Cut at random word boundaries; the last piece may end inside a word.
    cs::Lanes lanes;
    std::size_t at = 0;
    while (at < bytes) {
      std::size_t take = (1 + rng() % 40) * cs::kWordBytes;
      if (take > bytes - at) take = bytes - at;
      cs::add_words(data.data() + at, take, at / cs::kWordBytes, lanes);
      at += take;
    }
    const cs::Folded folded = cs::finalize(lanes.lane0, lanes.lane1, bytes);
    ASSERT_EQ(folded.lo, whole.lo) << "round " << round;
    ASSERT_EQ(folded.hi, whole.hi) << "round " << round;
  }
}

TEST(WeightsHashing, ZeroWordsAreTheTermsOfZeros) {
  const std::vector<unsigned char> zeros(16 * 37, 0);
  cs::Lanes from_bytes;
  cs::add_words(zeros.data(), zeros.size(), 5, from_bytes);
  cs::Lanes from_count;
  cs::add_zero_words(5, 37, from_count);
  EXPECT_EQ(from_bytes.lane0, from_count.lane0);
  EXPECT_EQ(from_bytes.lane1, from_count.lane1);
}

TEST(LoadTimeout, DefaultIsAFloorPlusTenSecondsPerGibAndTheAbiSaysTheSame) {
  using std::chrono::milliseconds;
  constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
  EXPECT_EQ(vramguard::default_load_timeout(0), milliseconds(VG_LOAD_TIMEOUT_FLOOR_MS));
  EXPECT_EQ(vramguard::default_load_timeout(1), milliseconds(60'000));
  EXPECT_EQ(vramguard::default_load_timeout(kGiB),
            milliseconds(VG_LOAD_TIMEOUT_FLOOR_MS + VG_LOAD_TIMEOUT_MS_PER_GIB));
  EXPECT_EQ(vramguard::default_load_timeout(kGiB + kGiB / 2), milliseconds(75'000));
  EXPECT_EQ(vramguard::default_load_timeout(80 * kGiB), milliseconds(860'000));
  // Never past 2^40 ms beyond the floor, whatever the size: no deadline overflows the clock.
  EXPECT_EQ(vramguard::default_load_timeout(UINT64_MAX),
            milliseconds(60'000 + (std::int64_t{1} << 40)));
}

class Loader : public ::testing::Test {
 protected:
  void SetUp() override {
    VG_REQUIRE_GPU();
    ASSERT_EQ(vg_tracker_create(0, &tracker_), VG_OK) << vg_last_error();
    vg_loader_options options{};
    options.staging_bytes = 8ull << 20;  // 4 readers x 2 slots x 1 MiB: many chunks per file
    options.readers = 4;
    ASSERT_EQ(vg_loader_create(0, &options, &loader_), VG_OK) << vg_last_error();
  }
  void TearDown() override {
    if (loader_ != nullptr) EXPECT_EQ(vg_loader_destroy(loader_), VG_OK);
    if (tracker_ != nullptr) EXPECT_EQ(vg_tracker_destroy(tracker_), VG_OK);
  }

  // Whether the loader says nothing of its loads runs on the GPU.
  bool idle() const {
    int32_t idle = -1;
    EXPECT_EQ(vg_loader_idle(loader_, &idle), VG_OK) << vg_last_error();
    return idle == 1;
  }

  vg_tracker* tracker_ = nullptr;
  vg_loader* loader_ = nullptr;
};

TEST_F(Loader, TheImageHoldsEachCopyAtItsOffsetWithZerosBetween) {
  // Three tensors of awkward sizes at 256-aligned offsets, the file read in 1 MiB chunks.
  const std::vector<uint64_t> sizes = {3 * (1u << 20) + 7, 1001, 2 * (1u << 20) + 130};
  std::vector<unsigned char> file_bytes;
  std::vector<vg_weights_copy> copies;
  uint64_t device_end = 0;
  for (uint64_t size : sizes) {
    const uint64_t device_offset = (device_end + 255) / 256 * 256;
    copies.push_back(vg_weights_copy{0, file_bytes.size(), size, device_offset});
    const auto bytes = random_bytes(size, size);
    file_bytes.insert(file_bytes.end(), bytes.begin(), bytes.end());
    device_end = device_offset + size;
  }
  WeightsFile file(file_bytes);
  const vg_weights_file spec = file.spec();
  void* dst = nullptr;
  ASSERT_EQ(
      vg_alloc(tracker_, device_end, VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, "weights", &dst),
      VG_OK);
  ASSERT_EQ(cudaMemset(dst, 0xAB, device_end), cudaSuccess);  // the loader must zero the padding
  vg_load_result result{};
  ASSERT_EQ(vg_load_weights(loader_, tracker_, dst, device_end, &spec, 1, copies.data(),
                            copies.size(), VG_LOAD_VERIFY, nullptr, &result),
            VG_OK)
      << vg_last_error();
  EXPECT_EQ(result.compared, 1);
  EXPECT_EQ(result.bytes_copied, file_bytes.size());

  std::vector<unsigned char> expected(device_end, 0);
  for (const auto& copy : copies) {
    std::copy(file_bytes.begin() + copy.file_offset,
              file_bytes.begin() + copy.file_offset + copy.bytes,
              expected.begin() + copy.device_offset);
  }
  std::vector<unsigned char> image(device_end);
  ASSERT_EQ(vg_copy_to_host(tracker_, image.data(), dst, 0, device_end), VG_OK);
  EXPECT_TRUE(image == expected);
  const vramguard::Checksum reference = vramguard::host_checksum(expected.data(), expected.size());
  EXPECT_EQ(result.checksum.lo, reference.lo);
  EXPECT_EQ(result.checksum.hi, reference.hi);

  // The checksum of this load, given back as expected: compared without hashing.
  vg_load_result again{};
  ASSERT_EQ(vg_load_weights(loader_, tracker_, dst, device_end, &spec, 1, copies.data(),
                            copies.size(), VG_LOAD_EXPECTED, &result.checksum, &again),
            VG_OK);
  EXPECT_EQ(again.compared, 1);
  vg_checksum wrong = result.checksum;
  wrong.lo ^= 1;
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, device_end, &spec, 1, copies.data(),
                            copies.size(), VG_LOAD_EXPECTED, &wrong, &again),
            VG_ERR_WEIGHTS_CORRUPTED);
  EXPECT_EQ(vg_free(tracker_, dst), VG_OK);
}

TEST_F(Loader, CorruptionBetweenTheReadAndTheCopyIsCaught) {
  const auto bytes = random_bytes(5u << 20, 3);
  WeightsFile file(bytes);
  const vg_weights_file spec = file.spec();
  const vg_weights_copy copy{0, 0, bytes.size(), 0};
  void* dst = nullptr;
  ASSERT_EQ(
      vg_alloc(tracker_, bytes.size(), VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, nullptr, &dst),
      VG_OK);
  vg_load_result result{};
  vramguard::testing::corrupt_next_load_staging();
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &spec, 1, &copy, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_ERR_WEIGHTS_CORRUPTED);
  EXPECT_NE(std::string(vg_last_error()).find("differ"), std::string::npos) << vg_last_error();
  EXPECT_TRUE(idle()) << "a corrupted load left work running";
  // The fault was one load's: the next one is intact.
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &spec, 1, &copy, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_OK)
      << vg_last_error();
  EXPECT_EQ(vg_free(tracker_, dst), VG_OK);
}

TEST_F(Loader, AFileThatChangedVanishedOrIsShorterIsRefusedWithItsOwnStatus) {
  const auto bytes = random_bytes(3u << 20, 4);
  WeightsFile file(bytes);
  const vg_weights_file spec = file.spec();
  const vg_weights_copy copy{0, 0, bytes.size(), 0};
  void* dst = nullptr;
  ASSERT_EQ(
      vg_alloc(tracker_, bytes.size(), VG_PURPOSE_MODEL_WEIGHTS, VG_KIND_DEVICE, nullptr, &dst),
      VG_OK);
  vg_load_result result{};

  EXPECT_TRUE(idle()) << "a new loader";
  vg_weights_file older = spec;
  older.mtime_ns -= 1;
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &older, 1, &copy, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_ERR_FILE_CHANGED);
  vg_weights_file longer = spec;
  longer.size += 16;
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &longer, 1, &copy, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_ERR_FILE_CHANGED);
  vg_weights_file missing = spec;
  missing.path = "/nonexistent/vramguard/weights.safetensors";
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &missing, 1, &copy, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_ERR_IO);
  const vg_weights_copy past_end{0, 1, bytes.size(), 0};
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &spec, 1, &past_end, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_ERR_OUT_OF_RANGE);
  const vg_weights_copy unaligned{0, 0, 16, 8};
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &spec, 1, &unaligned, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_ERR_OUT_OF_RANGE);
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size() + 1, &spec, 1, &copy, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_ERR_OUT_OF_RANGE);
  EXPECT_EQ(vg_load_weights_within(loader_, tracker_, dst, bytes.size(), &spec, 1, &copy, 1,
                                   VG_LOAD_VERIFY, nullptr, 0, &result),
            VG_ERR_INVALID_SIZE);
  for (const uint32_t unknown : {0x8000u, 0x100u}) {
    EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &spec, 1, &copy, 1,
                              VG_LOAD_VERIFY | unknown, nullptr, &result),
              VG_ERR_INVALID_ENUM)
        << unknown;
  }
  // A refusal that is no timeout leaves nothing running, and the loader still loads.
  EXPECT_TRUE(idle()) << "a refused load left work running";
  EXPECT_EQ(vg_load_weights(loader_, tracker_, dst, bytes.size(), &spec, 1, &copy, 1,
                            VG_LOAD_VERIFY, nullptr, &result),
            VG_OK)
      << vg_last_error();
  EXPECT_TRUE(idle()) << "a load left work running";
  EXPECT_EQ(vg_free(tracker_, dst), VG_OK);
}

}  // namespace
