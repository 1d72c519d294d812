// The checksum's CPU reference (see checksum_hash.hpp for the definition).
#include <cstdio>
#include <cstring>

#include "checksum_hash.hpp"
#include "vramguard/checksum.hpp"
#include "vramguard/error.hpp"

namespace vramguard {

namespace {

namespace cs = detail::checksum;

// Little-endian 64-bit value of up to 8 bytes, the missing high bytes zero.
std::uint64_t load_le(const unsigned char* p, std::size_t count) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < count; ++i) value |= std::uint64_t{p[i]} << (8 * i);
  return value;
}

std::uint64_t load_le8(const unsigned char* p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::uint64_t value;
  std::memcpy(&value, p, sizeof value);
  return value;
#else
  return load_le(p, 8);
#endif
}

}  // namespace

std::string Checksum::to_hex() const {
  char text[33];
  std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return std::string(text, 32);
}

Checksum host_checksum(const void* data, std::size_t bytes) {
  if (data == nullptr && bytes > 0)
    throw Error(VG_ERR_NULL_ARGUMENT, "host_checksum: data is null");
  const auto* p = static_cast<const unsigned char*>(data);
  const std::uint64_t full_words = bytes / cs::kWordBytes;
  std::uint64_t lane0 = 0;
  std::uint64_t lane1 = 0;
  for (std::uint64_t k = 0; k < full_words; ++k) {
    const unsigned char* word = p + k * cs::kWordBytes;
    lane0 += cs::fmix64(load_le8(word) ^ cs::key0(k));
    lane1 += cs::fmix64(load_le8(word + 8) ^ cs::key1(k));
  }
  const std::size_t tail = bytes % cs::kWordBytes;
  if (tail > 0) {
    const unsigned char* word = p + full_words * cs::kWordBytes;
    const std::uint64_t a = load_le(word, tail < 8 ? tail : 8);
    const std::uint64_t b = tail > 8 ? load_le(word + 8, tail - 8) : 0;
    lane0 += cs::fmix64(a ^ cs::key0(full_words));
    lane1 += cs::fmix64(b ^ cs::key1(full_words));
  }
  const cs::Folded folded = cs::finalize(lane0, lane1, bytes);
  return Checksum{folded.lo, folded.hi};
}

}  // namespace vramguard
