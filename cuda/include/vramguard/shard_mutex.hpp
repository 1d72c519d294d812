// ShardMutex: the lock around one tracker shard. Its critical sections are tens of nanoseconds,
// so it is a spin lock: taking it is one exchange, and letting it go one plain store (glibc's
// mutex spends a locked instruction on each, and a call). A waiter spins on a read (no traffic
// on the line while it is held), with the CPU's pause hint, and after a few hundred turns yields
// the CPU each turn, so that a holder descheduled on an oversubscribed machine gets to run.
// Meets BasicLockable and Lockable (std::lock_guard, std::unique_lock,
// std::condition_variable_any).
#pragma once

#include <atomic>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace vramguard {

class ShardMutex {
 public:
  ShardMutex() = default;
  ShardMutex(const ShardMutex&) = delete;
  ShardMutex& operator=(const ShardMutex&) = delete;

  void lock() noexcept {
    if (!held_.exchange(true, std::memory_order_acquire)) return;
    lock_contended();
  }
  bool try_lock() noexcept {
    return !held_.load(std::memory_order_relaxed) &&
           !held_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { held_.store(false, std::memory_order_release); }

 private:
  void lock_contended() noexcept {
    for (unsigned turns = 0;; ++turns) {
      while (held_.load(std::memory_order_relaxed)) {
        if (++turns < kSpinTurns) {
          pause();
        } else {
          std::this_thread::yield();
        }
      }
      if (!held_.exchange(true, std::memory_order_acquire)) return;
    }
  }
  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  static constexpr unsigned kSpinTurns = 256;
  std::atomic<bool> held_{false};
};

}  // namespace vramguard
