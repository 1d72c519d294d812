// ShardMutex: the lock around one tracker shard. Its critical sections are tens of nanoseconds,
// so a contended caller is better off spinning briefly than sleeping in the kernel: glibc's
// adaptive mutex spins a bounded number of times before it parks (a plain std::mutex parks at
// once, and the futex round trip costs more than the wait). Elsewhere, std::mutex.
#pragma once

#include <mutex>

#if defined(__GLIBC__)
#include <pthread.h>
#endif

namespace vramguard {

#if defined(__GLIBC__) && defined(PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP)
class ShardMutex {
 public:
  ShardMutex() = default;
  ~ShardMutex() { pthread_mutex_destroy(&mutex_); }
  ShardMutex(const ShardMutex&) = delete;
  ShardMutex& operator=(const ShardMutex&) = delete;

  void lock() noexcept { pthread_mutex_lock(&mutex_); }
  bool try_lock() noexcept { return pthread_mutex_trylock(&mutex_) == 0; }
  void unlock() noexcept { pthread_mutex_unlock(&mutex_); }

 private:
  pthread_mutex_t mutex_ = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
};
#else
using ShardMutex = std::mutex;
#endif

}  // namespace vramguard
