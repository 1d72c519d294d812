#include "staging_fault.hpp"

#include <atomic>

namespace vramguard::testing {

namespace {

std::atomic<bool> g_requested{false};

}  // namespace

void corrupt_next_load_staging() noexcept { g_requested.store(true); }

bool take_staging_fault() noexcept { return g_requested.exchange(false); }

}  // namespace vramguard::testing
