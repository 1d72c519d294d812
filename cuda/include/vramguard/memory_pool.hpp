// A CUDA memory pool owned by vramguard for kind Pool: its release threshold is the maximum, so
// freed blocks stay cached and cudaMallocAsync is a sub-microsecond reuse. Destroying the pool
// returns its memory to the driver.
#pragma once

#include <cstddef>

namespace vramguard {

class MemoryPool {
 public:
  explicit MemoryPool(int device);
  ~MemoryPool() noexcept;
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  int device() const noexcept { return device_; }
  // The cudaMemPool_t, as an opaque pointer so this header needs no CUDA include.
  void* handle() const noexcept { return pool_; }

 private:
  int device_;
  void* pool_ = nullptr;
};

}  // namespace vramguard
