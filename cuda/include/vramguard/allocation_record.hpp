// T1: one tracked allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "vramguard/purpose.hpp"

namespace vramguard {

struct AllocationRecord {
  std::uint64_t id = 0;  // unique within its tracker, never reused
  void* ptr = nullptr;
  std::size_t bytes = 0;
  VramPurpose purpose = VramPurpose::Unknown;
  AllocationKind kind = AllocationKind::Device;
  int device = 0;
  bool owned = false;                     // allocated by vramguard, so vramguard frees it
  std::uint64_t recorded_at_unix_ns = 0;  // to the coarse clock's few milliseconds
  std::uint64_t order = 0;                // a monotonic tick count: records list oldest first by it
  std::string description;
};

}  // namespace vramguard
