// T4: the tracker's counters, read in O(1).
#pragma once

#include <array>
#include <cstdint>

#include "vramguard/purpose.hpp"

namespace vramguard {

struct UsageStats {
  std::uint64_t total_bytes = 0;
  std::uint64_t allocation_count = 0;
  std::array<std::uint64_t, kPurposeCount> purpose_bytes{};
  std::array<std::uint64_t, kPurposeCount> purpose_count{};
  std::uint64_t peak_total_bytes = 0;
  std::array<std::uint64_t, kPurposeCount> peak_purpose_bytes{};
  std::uint64_t lifetime_allocations = 0;
  std::uint64_t unknown_deallocations = 0;

  std::uint64_t bytes(VramPurpose purpose) const {
    return purpose_bytes[static_cast<int>(purpose)];
  }
};

}  // namespace vramguard
