#include "vramguard/purpose.hpp"

#include <string>

#include "vramguard/error.hpp"

namespace vramguard {

const char* to_string(VramPurpose purpose) noexcept {
  switch (purpose) {
    case VramPurpose::ModelWeights: return "ModelWeights";
    case VramPurpose::KVCache: return "KVCache";
    case VramPurpose::IntermediateBuffers: return "IntermediateBuffers";
    case VramPurpose::Unknown: return "Unknown";
  }
  return "Invalid";
}

const char* to_string(AllocationKind kind) noexcept {
  switch (kind) {
    case AllocationKind::Device: return "Device";
    case AllocationKind::Pool: return "Pool";
    case AllocationKind::Managed: return "Managed";
    case AllocationKind::PinnedHost: return "PinnedHost";
    case AllocationKind::Adopted: return "Adopted";
  }
  return "Invalid";
}

void require_valid_purpose_mask(unsigned mask) {
  if (mask == 0 || (mask & ~kAllPurposes) != 0) {
    throw Error(VG_ERR_INVALID_ENUM, "purpose mask " + std::to_string(mask) + " is invalid");
  }
}

}  // namespace vramguard
