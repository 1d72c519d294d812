// Internal: the checksum's definition, shared by the host reference (checksum_host.cpp) and the
// CUDA kernels (checksum.cu). The Rust port in src/checksum.rs must stay identical to it.
//
// For a byte stream of n bytes, padded with zeros to W = ceil(n / 16) words of 16 bytes, word k
// (bytes 16k .. 16k + 15) read as two little-endian 64-bit halves a_k and b_k:
//
//   lane0 = sum over k of fmix64(a_k ^ (kKeyBase0 + k * kKeyStep0))   (mod 2^64)
//   lane1 = sum over k of fmix64(b_k ^ (kKeyBase1 + k * kKeyStep1))   (mod 2^64)
//   s0 = lane0 + fmix64(n ^ kLength0),  s1 = lane1 + fmix64(n ^ kLength1)
//   h0 = fmix64(s0 ^ kFinal),  h1 = fmix64(s1 ^ h0)
//   lo = fmix64(h0 + h1),  hi = h1
//
// fmix64 (MurmurHash3's finalizer) is a bijection, and so is x -> x ^ key, so changing any bytes
// of one word changes exactly one term of one lane and so that lane's sum; (s0, s1) -> (lo, hi) is
// a bijection too. A single changed word (any single changed byte) therefore always changes the
// checksum. Sums are associative and commutative: the result does not depend on how the words are
// split among threads, which is what makes the kernel deterministic for every launch shape. The
// keys make each term depend on the word's position; the length folded into s0 and s1 tells a
// trailing partial word from the same bytes followed by zeros.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define VG_CHECKSUM_HD __host__ __device__ __forceinline__
#else
#define VG_CHECKSUM_HD inline
#endif

namespace vramguard::detail::checksum {

constexpr std::uint64_t kKeyBase0 = 0x243F6A8885A308D3ull;  // digits of pi
constexpr std::uint64_t kKeyBase1 = 0x13198A2E03707344ull;
constexpr std::uint64_t kKeyStep0 = 0x9E3779B97F4A7C15ull;  // odd: k -> k * step is injective
constexpr std::uint64_t kKeyStep1 = 0xD6E8FEB86659FD93ull;
constexpr std::uint64_t kLength0 = 0xA4093822299F31D0ull;
constexpr std::uint64_t kLength1 = 0x082EFA98EC4E6C89ull;
constexpr std::uint64_t kFinal = 0x452821E638D01377ull;

constexpr std::uint64_t kWordBytes = 16;

// MurmurHash3's 64-bit finalizer. Its shifts are all 33: on the GPU, x >> 33 touches only the
// high 32-bit half, so each xorshift is two instructions.
VG_CHECKSUM_HD std::uint64_t fmix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return x;
}

VG_CHECKSUM_HD std::uint64_t key0(std::uint64_t word) { return kKeyBase0 + word * kKeyStep0; }
VG_CHECKSUM_HD std::uint64_t key1(std::uint64_t word) { return kKeyBase1 + word * kKeyStep1; }

struct Lanes {
  std::uint64_t lane0 = 0;
  std::uint64_t lane1 = 0;
};

struct Folded {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
};

#if !defined(__CUDACC__)
// Host only (checksum_host.cpp). Adds the terms of `bytes` bytes at `p`, whose first byte starts
// word `first_word` of the stream, to `lanes`; a trailing partial word is padded with zeros. The
// lanes of a stream's pieces, each hashed at its own word position, add up to the lanes of the
// whole stream: that is what lets several threads hash one stream.
void add_words(const unsigned char* p, std::uint64_t bytes, std::uint64_t first_word, Lanes& lanes);
// Adds the terms of `count` all-zero words starting at word `first_word`.
void add_zero_words(std::uint64_t first_word, std::uint64_t count, Lanes& lanes);
#endif

// The final 128-bit value from the two lane sums and the byte length.
VG_CHECKSUM_HD Folded finalize(std::uint64_t lane0, std::uint64_t lane1, std::uint64_t bytes) {
  const std::uint64_t s0 = lane0 + fmix64(bytes ^ kLength0);
  const std::uint64_t s1 = lane1 + fmix64(bytes ^ kLength1);
  const std::uint64_t h0 = fmix64(s0 ^ kFinal);
  const std::uint64_t h1 = fmix64(s1 ^ h0);
  return Folded{fmix64(h0 + h1), h1};
}

}  // namespace vramguard::detail::checksum
