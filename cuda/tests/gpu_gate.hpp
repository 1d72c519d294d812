// Q4: a test that needs a GPU says so. Without one it is skipped (visible as SKIPPED), unless
// VRAM_REQUIRE_GPU=1, where it fails.
#pragma once

#include <gtest/gtest.h>

namespace vramguard::testing {

bool gpu_available();
bool gpu_required();

}  // namespace vramguard::testing

#define VG_REQUIRE_GPU()                                                                         \
  do {                                                                                           \
    if (!::vramguard::testing::gpu_available()) {                                                \
      if (::vramguard::testing::gpu_required()) FAIL() << "VRAM_REQUIRE_GPU=1 but no GPU";       \
      GTEST_SKIP() << "needs a GPU (none found; set VRAM_REQUIRE_GPU=1 to make this a failure)"; \
    }                                                                                            \
  } while (0)
