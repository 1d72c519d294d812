// The one fault the weights loader's suite provokes inside the loader, where no public call
// reaches: a byte of pinned staging changed after the host hashed it and before the DMA copied it,
// as memory corrupted in that window would be. It proves that the device checksum is compared with
// the host hash. It exists only in the tests' build of the core (CMake's
// vramguard_core_staging_fault, compiled with VRAMGUARD_STAGING_FAULT); the core users link has no
// trace of it.
#pragma once

namespace vramguard::testing {

// The next load flips one byte of its first chunk in staging, after hashing it.
void corrupt_next_load_staging() noexcept;

// For the loader: true once after each request above.
bool take_staging_fault() noexcept;

}  // namespace vramguard::testing
