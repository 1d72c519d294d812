// Internal: the one place that maps an AllocationKind to its CUDA allocate and free calls.
#pragma once

#include <cstddef>

#include "vramguard/memory_pool.hpp"
#include "vramguard/purpose.hpp"

struct CUstream_st;

namespace vramguard::detail {

// The stream kind Pool is allocated and freed on: the legacy default stream of the current
// device. Work that writes memory of kind Pool on another stream waits for it first (the weights
// loader does), so that the block's previous owner is done with it.
CUstream_st* pool_stream() noexcept;

// Throws CudaError. Caller (DeviceMemory) has validated the arguments, passed a pool for kind Pool,
// and made `device` current.
void* raw_allocate(AllocationKind kind, std::size_t bytes, MemoryPool* pool);
// Returns the CUDA error code (0 on success); never throws.
int raw_free(AllocationKind kind, void* ptr) noexcept;

}  // namespace vramguard::detail

#include "vramguard/tracker.hpp"

namespace vramguard::detail {

// Un-records an owned allocation and frees it on its tracker's device. Never throws; the CUDA
// result of the free goes to *cuda_error (may be null).
Removal release_owned(VramTracker& tracker, const void* ptr, int* cuda_error) noexcept;

}  // namespace vramguard::detail
