#include "vramguard/purpose.hpp"

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

}  // namespace vramguard
