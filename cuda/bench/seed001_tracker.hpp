// The baseline: seed 001's VramTracker design, compiled into the benchmark so that both run side
// by side — one std::mutex around one std::unordered_map, totals by walking it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace bench {

class Seed001Tracker {
 public:
  struct Record {
    const void* ptr;
    std::size_t bytes;
    int purpose;
    std::string description;
  };

  void record_allocation(const void* ptr, std::size_t bytes, int purpose,
                         const std::string& description) {
    std::lock_guard<std::mutex> lock(mutex_);
    records_[ptr] = Record{ptr, bytes, purpose, description};
  }

  void record_deallocation(const void* ptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    records_.erase(ptr);
  }

  std::size_t total_usage() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t total = 0;
    for (const auto& entry : records_) total += entry.second.bytes;
    return total;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<const void*, Record> records_;
};

}  // namespace bench
