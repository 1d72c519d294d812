// A CUDA memory pool owned by vramguard for kind Pool: its release threshold is the maximum, so
// freed blocks stay cached and cudaMallocAsync is a sub-microsecond reuse. Destroying the pool
// returns its memory to the driver.
#pragma once

#include <cstddef>
#include <cstdint>

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
  // What the pool holds from the driver, and how much of it is allocated now; the difference is
  // the pool's cache of freed blocks (kept: the release threshold is the maximum). Throws
  // CudaError.
  struct Usage {
    std::uint64_t reserved_bytes = 0;
    std::uint64_t used_bytes = 0;
  };
  Usage usage() const;

 private:
  int device_;
  void* pool_ = nullptr;
};

}  // namespace vramguard
