#include "copy.hpp"

#include <cuda_runtime_api.h>

#include <string>

#include "cuda_call.hpp"
#include "scoped_device.hpp"

namespace vramguard::detail {

void check_copy_range(std::size_t offset, std::size_t bytes, std::size_t size) {
  if (offset > size || bytes > size - offset) {
    throw Error(VG_ERR_OUT_OF_RANGE, "copy of " + std::to_string(bytes) + " bytes at offset " +
                                         std::to_string(offset) + " exceeds the allocation of " +
                                         std::to_string(size) + " bytes");
  }
}

void copy_on_device(int device, void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  ScopedDevice scope(device);
  VG_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  // cudaMemcpy from pageable host memory returns once the bytes are staged, before the DMA into
  // device memory has necessarily landed, and one between two device addresses returns at once
  // (the runtime's "API synchronization behavior"). A vramguard copy returns complete: the checksum
  // runs on vramguard's own non-blocking stream, which would not wait for the legacy stream's DMA.
  VG_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

}  // namespace vramguard::detail
