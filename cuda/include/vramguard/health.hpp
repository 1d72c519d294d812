// The old name of the residency check's header; include "vramguard/residency_check.hpp".
// (vramguard's "health" is the Rust service that serves /health; the C++ core checks residency.)
#pragma once

#include "vramguard/residency_check.hpp"

namespace vramguard {
using Health [[deprecated("use vramguard::ResidencyCheck")]] = ResidencyCheck;
}  // namespace vramguard
