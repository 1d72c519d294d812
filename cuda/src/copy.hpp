// Internal: bounds-checked copies between host memory and a tracked allocation.
#pragma once

#include <cstddef>

namespace vramguard::detail {

// Throws Error(VG_ERR_OUT_OF_RANGE) unless [offset, offset + bytes) lies inside `size` bytes.
void check_copy_range(std::size_t offset, std::size_t bytes, std::size_t size);
// cudaMemcpy with the given device's primary context current, returning once the copy is complete
// (the legacy default stream synchronised behind it). Throws CudaError.
void copy_on_device(int device, void* dst, const void* src, std::size_t bytes);

}  // namespace vramguard::detail
