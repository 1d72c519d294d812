// What an allocation is for, and how it was made. Values match the C ABI's enums.
#pragma once

#include <cstdint>

namespace vramguard {

enum class VramPurpose : std::uint8_t {
  ModelWeights = 0,
  KVCache = 1,
  IntermediateBuffers = 2,
  Unknown = 3,
};
inline constexpr int kPurposeCount = 4;

enum class AllocationKind : std::uint8_t {
  Device = 0,      // cudaMalloc
  Pool = 1,        // cudaMallocAsync on a CUDA memory pool
  Managed = 2,     // cudaMallocManaged: only when asked for by name
  PinnedHost = 3,  // cudaMallocHost: only when asked for by name
  Adopted = 4,     // made by another allocator; vramguard records it but never frees it
};
inline constexpr int kAllocationKindCount = 5;

const char* to_string(VramPurpose purpose) noexcept;
const char* to_string(AllocationKind kind) noexcept;

constexpr bool is_valid_purpose(int value) noexcept { return value >= 0 && value < kPurposeCount; }

// A set of purposes as a bit mask: bit p for VramPurpose p (the C ABI's VG_PURPOSE_MASK_*).
inline constexpr unsigned kAllPurposes = (1u << kPurposeCount) - 1;
constexpr unsigned purpose_bit(VramPurpose p) { return 1u << static_cast<unsigned>(p); }
// Throws Error(VG_ERR_INVALID_ENUM) for an empty mask or one with bits beyond the purposes.
void require_valid_purpose_mask(unsigned mask);
constexpr bool is_valid_kind(int value) noexcept {
  return value >= 0 && value < kAllocationKindCount;
}

}  // namespace vramguard
