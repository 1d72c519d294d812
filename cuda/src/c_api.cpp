// The C ABI: validates every argument, maps every C++ failure to a vg_status and a thread-local
// message, and lets no exception escape (ERR3).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>

#include "copy.hpp"
#include "raw_allocation.hpp"
#include "vramguard.h"
#include "vramguard/checksum.hpp"
#include "vramguard/device.hpp"
#include "vramguard/device_memory.hpp"
#include "vramguard/error.hpp"
#include "vramguard/memory_pool.hpp"
#include "vramguard/read_witness.hpp"
#include "vramguard/record_pin.hpp"
#include "vramguard/residency_check.hpp"
#include "vramguard/tracker.hpp"
#include "vramguard/weights_loader.hpp"

struct vg_read_witness {
  vg_read_witness(int device, uint64_t control_bytes) : witness(device, control_bytes) {}
  vramguard::ReadWitness witness;
};

struct vg_tracker {
  explicit vg_tracker(int device) : tracker(device) {}
  ~vg_tracker() {
    // Free what the caller never freed, then the pool those allocations may come from.
    try {
      for (const auto& record : tracker.snapshot()) {
        if (record.owned) (void)vramguard::detail::release_owned(tracker, record.ptr, nullptr);
      }
    } catch (...) {
      // No host memory for the snapshot: the pool's destruction below still returns pool memory.
    }
    pool_ready.store(nullptr, std::memory_order_release);
    pool.reset();
  }

  // The pool is made on first use; afterwards every Pool allocation finds it with one load.
  vramguard::MemoryPool* memory_pool() {
    if (auto* ready = pool_ready.load(std::memory_order_acquire)) return ready;
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (!pool) pool = std::make_unique<vramguard::MemoryPool>(tracker.device());
    pool_ready.store(pool.get(), std::memory_order_release);
    return pool.get();
  }

  vramguard::VramTracker tracker;
  std::mutex pool_mutex;
  std::unique_ptr<vramguard::MemoryPool> pool;
  std::atomic<vramguard::MemoryPool*> pool_ready{nullptr};
};

namespace {

using vramguard::Error;

thread_local std::string t_last_error;

vg_status fail(vg_status status, const char* message) noexcept {
  try {
    t_last_error = message;
  } catch (...) {
    // Out of host memory while storing the message: the status still says what happened.
  }
  return status;
}

template <typename Body>
vg_status guarded(const char* function, Body&& body) noexcept {
  try {
    body();
    return VG_OK;
  } catch (const Error& e) {
    return fail(e.status(), (std::string(function) + ": " + e.what()).c_str());
  } catch (const std::bad_alloc&) {
    return fail(VG_ERR_INTERNAL, "host memory exhausted inside vramguard");
  } catch (const std::exception& e) {
    return fail(VG_ERR_INTERNAL, e.what());
  } catch (...) {
    return fail(VG_ERR_INTERNAL, "unknown exception inside vramguard");
  }
}

void require(const void* argument, const char* name) {
  if (argument == nullptr) throw Error(VG_ERR_NULL_ARGUMENT, std::string(name) + " is NULL");
}

vramguard::VramPurpose to_purpose(int32_t value) {
  if (!vramguard::is_valid_purpose(value)) {
    throw Error(VG_ERR_INVALID_ENUM, "purpose " + std::to_string(value) + " is not a vg_purpose");
  }
  return static_cast<vramguard::VramPurpose>(value);
}

vramguard::AllocationKind to_kind(int32_t value) {
  if (!vramguard::is_valid_kind(value)) {
    throw Error(VG_ERR_INVALID_ENUM, "kind " + std::to_string(value) + " is not a vg_kind");
  }
  return static_cast<vramguard::AllocationKind>(value);
}

std::string_view description_of(const char* description) {
  if (description == nullptr) return {};
  // Bounded scan: an unterminated or huge string is rejected without reading past the limit + 1.
  const std::size_t length = strnlen(description, vramguard::kMaxDescriptionBytes + 1);
  return {description, length};
}

void copy_text(const std::string& text, char* out, uint64_t capacity, uint64_t* needed) {
  require(needed, "out_needed");
  *needed = text.size() + 1;
  if (capacity < text.size() + 1) {
    throw Error(VG_ERR_BUFFER_TOO_SMALL, "buffer of " + std::to_string(capacity) +
                                             " bytes is too small; " + std::to_string(*needed) +
                                             " needed");
  }
  require(out, "out");
  std::memcpy(out, text.c_str(), text.size() + 1);
}

void copy_description(const std::string& description, char* out) {
  const std::size_t n = std::min(description.size(), std::size_t{VG_MAX_DESCRIPTION_BYTES});
  std::memcpy(out, description.data(), n);
  out[n] = '\0';
}

void removal_to_status(vramguard::Removal removal, const char* wrong_owner_message) {
  switch (removal) {
    case vramguard::Removal::Removed: return;
    case vramguard::Removal::Unknown:
      throw Error(VG_ERR_UNKNOWN_POINTER,
                  "pointer is not tracked (never recorded, or already freed)");
    case vramguard::Removal::OwnershipMismatch: throw Error(VG_ERR_OWNERSHIP, wrong_owner_message);
  }
}

// The pinned record of a copy's tracked side: throws unless it is tracked and
// [offset, offset + bytes) lies inside it. While the pin lives, vg_free and vg_forget of it
// wait, so the copy lands in the allocation it named, never in a later one at the same address.
void require_copy_target(const vramguard::RecordPin& target, uint64_t offset, uint64_t bytes) {
  if (!target) throw Error(VG_ERR_UNKNOWN_POINTER, "copy target is not a tracked allocation");
  vramguard::detail::check_copy_range(offset, bytes, target->bytes);
}

// The C ABI's purpose masks are the core's: one check of them, in the core.
static_assert(VG_PURPOSE_MASK_ALL == vramguard::kAllPurposes);

void copy_records(const std::vector<vramguard::AllocationRecord>& records, vg_allocation* out,
                  uint64_t capacity, uint64_t* out_count) {
  *out_count = records.size();
  if (capacity < records.size()) {
    throw Error(VG_ERR_BUFFER_TOO_SMALL, "capacity " + std::to_string(capacity) + " < " +
                                             std::to_string(records.size()) + " allocations");
  }
  if (!records.empty()) require(out, "out");
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    vg_allocation& a = out[i];
    a = vg_allocation{};
    a.id = r.id;
    a.address = reinterpret_cast<uint64_t>(r.ptr);
    a.bytes = r.bytes;
    a.purpose = static_cast<int32_t>(r.purpose);
    a.kind = static_cast<int32_t>(r.kind);
    a.device = r.device;
    a.owned = r.owned ? 1 : 0;
    a.recorded_at_unix_ns = r.recorded_at_unix_ns;
    copy_description(r.description, a.description);
  }
}

// vg_verify and vg_verify_sampled, under the caller's name.
vg_status verify(const char* function, vg_tracker* tracker, uint32_t purpose_mask,
                 vramguard::SweepSample sample, vg_residency* out_residency,
                 vg_violation* violations, uint64_t capacity) noexcept;

}  // namespace

extern "C" {

const char* vg_last_error(void) { return t_last_error.c_str(); }

const char* vg_status_name(int32_t status) {
  switch (status) {
    case VG_OK: return "VG_OK";
    case VG_ERR_NULL_ARGUMENT: return "VG_ERR_NULL_ARGUMENT";
    case VG_ERR_INVALID_SIZE: return "VG_ERR_INVALID_SIZE";
    case VG_ERR_INVALID_ENUM: return "VG_ERR_INVALID_ENUM";
    case VG_ERR_DESCRIPTION_TOO_LONG: return "VG_ERR_DESCRIPTION_TOO_LONG";
    case VG_ERR_UNKNOWN_POINTER: return "VG_ERR_UNKNOWN_POINTER";
    case VG_ERR_ALREADY_TRACKED: return "VG_ERR_ALREADY_TRACKED";
    case VG_ERR_OWNERSHIP: return "VG_ERR_OWNERSHIP";
    case VG_ERR_BUFFER_TOO_SMALL: return "VG_ERR_BUFFER_TOO_SMALL";
    case VG_ERR_OUT_OF_RANGE: return "VG_ERR_OUT_OF_RANGE";
    case VG_ERR_INVALID_DEVICE: return "VG_ERR_INVALID_DEVICE";
    case VG_ERR_NO_DEVICE: return "VG_ERR_NO_DEVICE";
    case VG_ERR_OUT_OF_MEMORY: return "VG_ERR_OUT_OF_MEMORY";
    case VG_ERR_CUDA: return "VG_ERR_CUDA";
    case VG_ERR_INTERNAL: return "VG_ERR_INTERNAL";
    case VG_ERR_TIMEOUT: return "VG_ERR_TIMEOUT";
    case VG_ERR_CUDA_STICKY: return "VG_ERR_CUDA_STICKY";
    case VG_ERR_IO: return "VG_ERR_IO";
    case VG_ERR_FILE_CHANGED: return "VG_ERR_FILE_CHANGED";
    case VG_ERR_WEIGHTS_CORRUPTED: return "VG_ERR_WEIGHTS_CORRUPTED";
    case VG_ERR_NOT_READABLE: return "VG_ERR_NOT_READABLE";
    default: return "VG_STATUS_UNKNOWN";
  }
}

vg_status vg_device_count(int32_t* out_count) {
  return guarded(__func__, [&] {
    require(out_count, "out_count");
    *out_count = vramguard::device_count();
  });
}

vg_status vg_device_info_get(int32_t device, vg_device_info* out_info) {
  return guarded(__func__, [&] {
    require(out_info, "out_info");
    const auto info = vramguard::device_info(device);
    vg_device_info result{};
    result.ordinal = info.ordinal;
    result.compute_major = info.compute_major;
    result.compute_minor = info.compute_minor;
    result.integrated = info.integrated;
    result.managed_memory = info.managed_memory;
    result.concurrent_managed_access = info.concurrent_managed_access;
    result.pageable_memory_access = info.pageable_memory_access;
    result.memory_pools = info.memory_pools;
    result.total_bytes = info.memory.total_bytes;
    result.free_bytes = info.memory.free_bytes;
    const std::size_t n = std::min(info.name.size(), std::size_t{VG_MAX_NAME_BYTES});
    std::memcpy(result.name, info.name.data(), n);
    const std::size_t m = std::min(info.pci_bus_id.size(), sizeof(result.pci_bus_id) - 1);
    std::memcpy(result.pci_bus_id, info.pci_bus_id.data(), m);
    *out_info = result;
  });
}

vg_status vg_set_device(int32_t device) {
  return guarded(__func__, [&] { vramguard::set_device(device); });
}

vg_status vg_memory_info(int32_t device, uint64_t* out_free, uint64_t* out_total) {
  return guarded(__func__, [&] {
    require(out_free, "out_free");
    require(out_total, "out_total");
    const auto info = vramguard::memory_info(device);
    *out_free = info.free_bytes;
    *out_total = info.total_bytes;
  });
}

vg_status vg_tracker_create(int32_t device, vg_tracker** out_tracker) {
  return guarded(__func__, [&] {
    require(out_tracker, "out_tracker");
    *out_tracker = new vg_tracker(device);
  });
}

vg_status vg_tracker_destroy(vg_tracker* tracker) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    delete tracker;
  });
}

vg_status vg_tracker_device(const vg_tracker* tracker, int32_t* out_device) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_device, "out_device");
    *out_device = tracker->tracker.device();
  });
}

vg_status vg_record(vg_tracker* tracker, const void* ptr, uint64_t bytes, int32_t purpose,
                    int32_t kind, const char* description, uint64_t* out_id) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(ptr, "ptr");
    const auto id = tracker->tracker.record_allocation(ptr, bytes, to_purpose(purpose),
                                                       description_of(description), to_kind(kind));
    if (out_id != nullptr) *out_id = id;
  });
}

vg_status vg_adopt(vg_tracker* tracker, const void* ptr, uint64_t bytes, int32_t purpose,
                   const char* description, uint64_t* out_id) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(ptr, "ptr");
    const auto id =
        tracker->tracker.adopt(ptr, bytes, to_purpose(purpose), description_of(description));
    if (out_id != nullptr) *out_id = id;
  });
}

vg_status vg_forget(vg_tracker* tracker, const void* ptr) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(ptr, "ptr");
    removal_to_status(tracker->tracker.record_deallocation(ptr),
                      "pointer was allocated by vramguard: release it with vg_free");
  });
}

vg_status vg_deallocate(vg_tracker* tracker, const void* ptr) { return vg_forget(tracker, ptr); }

vg_status vg_usage_get(const vg_tracker* tracker, vg_usage* out_usage) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_usage, "out_usage");
    const auto stats = tracker->tracker.usage();
    vg_usage usage{};
    usage.total_bytes = stats.total_bytes;
    usage.allocation_count = stats.allocation_count;
    for (int p = 0; p < VG_PURPOSE_COUNT; ++p) {
      usage.purpose_bytes[p] = stats.purpose_bytes[p];
      usage.purpose_count[p] = stats.purpose_count[p];
      usage.peak_purpose_bytes[p] = stats.peak_purpose_bytes[p];
    }
    usage.peak_total_bytes = stats.peak_total_bytes;
    usage.lifetime_allocations = stats.lifetime_allocations;
    usage.unknown_deallocations = stats.unknown_deallocations;
    *out_usage = usage;
  });
}

vg_status vg_total_bytes(const vg_tracker* tracker, uint64_t* out_bytes) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_bytes, "out_bytes");
    *out_bytes = tracker->tracker.total_usage();
  });
}

vg_status vg_purpose_bytes(const vg_tracker* tracker, int32_t purpose, uint64_t* out_bytes) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_bytes, "out_bytes");
    *out_bytes = tracker->tracker.usage_by_purpose(to_purpose(purpose));
  });
}

vg_status vg_allocation_count(const vg_tracker* tracker, uint64_t* out_count) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_count, "out_count");
    *out_count = tracker->tracker.allocation_count();
  });
}

vg_status vg_snapshot(const vg_tracker* tracker, vg_allocation* out, uint64_t capacity,
                      uint64_t* out_count) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_count, "out_count");
    copy_records(tracker->tracker.snapshot(), out, capacity, out_count);
  });
}

vg_status vg_snapshot_of(const vg_tracker* tracker, uint32_t purpose_mask, vg_allocation* out,
                         uint64_t capacity, uint64_t* out_count) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_count, "out_count");
    copy_records(tracker->tracker.records_of(purpose_mask), out, capacity, out_count);
  });
}

vg_status vg_report(const vg_tracker* tracker, char* out, uint64_t capacity, uint64_t* out_needed) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    copy_text(tracker->tracker.usage_report(), out, capacity, out_needed);
  });
}

vg_status vg_check_allocation(uint64_t bytes, int32_t purpose, int32_t kind,
                              const char* description) {
  return guarded(__func__, [&] {
    // Enum ranges first, in vg_alloc's order, then what DeviceMemory refuses.
    const auto alloc_kind = to_kind(kind);
    const auto alloc_purpose = to_purpose(purpose);
    vramguard::DeviceMemory::validate(bytes, alloc_purpose, description_of(description),
                                      alloc_kind);
  });
}

vg_status vg_alloc(vg_tracker* tracker, uint64_t bytes, int32_t purpose, int32_t kind,
                   const char* description, void** out_ptr) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_ptr, "out_ptr");
    const auto alloc_kind = to_kind(kind);
    const auto alloc_purpose = to_purpose(purpose);
    // The arguments are DeviceMemory's to check, before it touches the device; the pool is made
    // on first use, so a Pool allocation asks the same check first, to make no pool for a refusal.
    if (alloc_kind == vramguard::AllocationKind::Pool) {
      vramguard::DeviceMemory::validate(bytes, alloc_purpose, description_of(description),
                                        alloc_kind);
    }
    vramguard::MemoryPool* pool =
        alloc_kind == vramguard::AllocationKind::Pool ? tracker->memory_pool() : nullptr;
    vramguard::DeviceMemory memory(bytes, &tracker->tracker, alloc_purpose,
                                   description_of(description), alloc_kind, pool);
    *out_ptr = memory.release();
  });
}

vg_status vg_free(vg_tracker* tracker, void* ptr) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(ptr, "ptr");
    int cuda_error = 0;
    removal_to_status(vramguard::detail::release_owned(tracker->tracker, ptr, &cuda_error),
                      "pointer was recorded, not allocated by vramguard: use vg_deallocate");
    if (cuda_error != 0) throw vramguard::CudaError(cuda_error, "free");
  });
}

vg_status vg_copy_to_device(vg_tracker* tracker, void* dst, uint64_t offset, const void* src,
                            uint64_t bytes) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(dst, "dst");
    require(src, "src");
    const vramguard::RecordPin target(tracker->tracker, dst);
    require_copy_target(target, offset, bytes);
    vramguard::detail::copy_on_device(target->device, static_cast<char*>(dst) + offset, src, bytes);
  });
}

vg_status vg_copy_to_host(vg_tracker* tracker, void* dst, const void* src, uint64_t offset,
                          uint64_t bytes) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(dst, "dst");
    require(src, "src");
    const vramguard::RecordPin target(tracker->tracker, src);
    require_copy_target(target, offset, bytes);
    vramguard::detail::copy_on_device(target->device, dst, static_cast<const char*>(src) + offset,
                                      bytes);
  });
}

vg_status vg_check_pointer(int32_t device, const void* ptr, vg_pointer_check* out_check) {
  return guarded(__func__, [&] {
    require(out_check, "out_check");
    vramguard::require_valid_device(device);
    const auto observed = vramguard::ResidencyCheck::inspect_pointer(ptr, device);
    vg_pointer_check check{};
    check.resident = observed.resident;
    check.memory_type = static_cast<int32_t>(observed.type);
    check.device = observed.device;
    check.has_host_pointer = observed.has_host_pointer;
    check.cuda_error = observed.cuda_error;
    *out_check = check;
  });
}

vg_status vg_verify(vg_tracker* tracker, uint32_t purpose_mask, vg_residency* out_residency,
                    vg_violation* violations, uint64_t capacity) {
  return verify(__func__, tracker, purpose_mask, {}, out_residency, violations, capacity);
}

vg_status vg_verify_sampled(vg_tracker* tracker, uint32_t purpose_mask, uint64_t own_sample,
                            uint64_t rotation, vg_residency* out_residency,
                            vg_violation* violations, uint64_t capacity) {
  vramguard::SweepSample sample;
  sample.own_limit = own_sample;
  sample.rotation = rotation;
  return verify(__func__, tracker, purpose_mask, sample, out_residency, violations, capacity);
}

vg_status vg_pool_usage(vg_tracker* tracker, uint64_t* out_reserved_bytes,
                        uint64_t* out_used_bytes) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    require(out_reserved_bytes, "out_reserved_bytes");
    require(out_used_bytes, "out_used_bytes");
    vramguard::MemoryPool::Usage usage;
    if (auto* pool = tracker->pool_ready.load(std::memory_order_acquire)) usage = pool->usage();
    *out_reserved_bytes = usage.reserved_bytes;
    *out_used_bytes = usage.used_bytes;
  });
}

vg_status vg_residency_report(vg_tracker* tracker, char* out, uint64_t capacity,
                              uint64_t* out_needed) {
  return guarded(__func__, [&] {
    require(tracker, "tracker");
    copy_text(vramguard::ResidencyCheck::residency_report(tracker->tracker), out, capacity,
              out_needed);
  });
}

}  // extern "C"

// Integrity checksums (I1) ------------------------------------------------------------------------

namespace {

// The range [offset, offset + bytes) of a pinned record that a checksum or a witness reads.
void require_checksum_target(const vramguard::RecordPin& target, uint64_t offset, uint64_t bytes,
                             const char* what = "checksum") {
  if (!target) {
    throw Error(VG_ERR_UNKNOWN_POINTER, std::string(what) + " target is not a tracked allocation");
  }
  if (offset > target->bytes || bytes > target->bytes - offset) {
    throw Error(VG_ERR_OUT_OF_RANGE, std::string(what) + " of " + std::to_string(bytes) +
                                         " bytes at offset " + std::to_string(offset) +
                                         " exceeds the allocation of " +
                                         std::to_string(target->bytes) + " bytes");
  }
}

vg_checksum to_vg_checksum(const vramguard::Checksum& checksum) {
  vg_checksum result{};
  result.lo = checksum.lo;
  result.hi = checksum.hi;
  return result;
}

// A timeout in ms as the C++ API takes it: 0 refused, past 2^40 ms (35 years) cut there.
std::chrono::milliseconds checked_timeout(uint64_t timeout_ms, const char* what) {
  if (timeout_ms == 0) {
    throw Error(VG_ERR_INVALID_SIZE, std::string("a ") + what + " timeout of 0 ms was asked for");
  }
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(std::min<uint64_t>(timeout_ms, uint64_t{1} << 40)));
}

// vg_checksum_device and vg_checksum_device_within, under the caller's name.
vg_status checksum_device(const char* function, vg_tracker* tracker, const void* ptr,
                          uint64_t offset, uint64_t bytes, uint64_t timeout_ms,
                          vg_checksum* out) noexcept {
  return guarded(function, [&] {
    require(tracker, "tracker");
    require(ptr, "ptr");
    require(out, "out");
    if (bytes == 0) throw Error(VG_ERR_INVALID_SIZE, "a checksum of 0 bytes was asked for");
    const std::chrono::milliseconds timeout = checked_timeout(timeout_ms, "checksum");
    const vramguard::RecordPin target(tracker->tracker, ptr);
    require_checksum_target(target, offset, bytes);
    *out = to_vg_checksum(vramguard::device_checksum(static_cast<const char*>(ptr) + offset, bytes,
                                                     target->device, timeout));
  });
}

vg_read_bandwidth to_vg_read_bandwidth(const vramguard::ReadBandwidth& read) {
  vg_read_bandwidth result{};
  result.range_bytes = read.range_bytes;
  result.bytes_read = read.bytes_read;
  result.seconds = read.seconds;
  result.event_seconds = read.event_seconds;
  return result;
}

// The arguments of a witness reading, checked, and the tracked allocation it reads pinned
// against vg_free for the reading's life.
struct WitnessTarget {
  WitnessTarget(const vg_read_witness* witness, vg_tracker* tracker, const void* ptr,
                uint64_t offset, uint64_t bytes, const void* out)
      : pin((require(witness, "witness"), require(tracker, "tracker"), require(ptr, "ptr"),
             require(out, "out"), tracker->tracker),
            ptr) {
    require_checksum_target(pin, offset, bytes, "read witness");
    if (pin->device != witness->witness.device()) {
      throw Error(VG_ERR_INVALID_DEVICE,
                  "read witness of GPU " + std::to_string(witness->witness.device()) +
                      " asked to read an allocation tracked on GPU " + std::to_string(pin->device));
    }
    address = static_cast<const char*>(ptr) + offset;
  }
  const vramguard::RecordPin pin;
  const void* address = nullptr;
};

}  // namespace

extern "C" {

vg_status vg_read_witness_create(int32_t device, uint64_t control_bytes, vg_read_witness** out) {
  return guarded(__func__, [&] {
    require(out, "out");
    *out = nullptr;
    *out = new vg_read_witness(device, control_bytes);
  });
}

vg_status vg_read_witness_destroy(vg_read_witness* witness) {
  return guarded(__func__, [&] { delete witness; });
}

vg_status vg_read_witness_measure(vg_read_witness* witness, vg_tracker* tracker, const void* ptr,
                                  uint64_t offset, uint64_t bytes, uint64_t min_bytes_read,
                                  uint64_t timeout_ms, vg_read_bandwidth* out) {
  return guarded(__func__, [&] {
    const WitnessTarget target(witness, tracker, ptr, offset, bytes, out);
    *out = to_vg_read_bandwidth(witness->witness.measure(
        target.address, bytes, min_bytes_read, checked_timeout(timeout_ms, "read witness")));
  });
}

vg_status vg_read_witness_measure_bracketed(vg_read_witness* witness, vg_tracker* tracker,
                                            const void* ptr, uint64_t offset, uint64_t bytes,
                                            uint64_t min_bytes_read, uint64_t timeout_ms,
                                            vg_bracketed_reading* out) {
  return guarded(__func__, [&] {
    const WitnessTarget target(witness, tracker, ptr, offset, bytes, out);
    const vramguard::BracketedReading reading = witness->witness.measure_bracketed(
        target.address, bytes, min_bytes_read, checked_timeout(timeout_ms, "read witness"));
    vg_bracketed_reading result{};
    result.control_before = to_vg_read_bandwidth(reading.control_before);
    result.target = to_vg_read_bandwidth(reading.target);
    result.control_after = to_vg_read_bandwidth(reading.control_after);
    *out = result;
  });
}

vg_status vg_read_witness_calibrate(vg_read_witness* witness, uint64_t min_bytes_read,
                                    uint64_t timeout_ms, vg_witness_calibration* out) {
  return guarded(__func__, [&] {
    require(witness, "witness");
    require(out, "out");
    const vramguard::WitnessCalibration calibration =
        witness->witness.calibrate(min_bytes_read, checked_timeout(timeout_ms, "calibration"));
    vg_witness_calibration result{};
    result.device = calibration.device;
    result.buffer_bytes = calibration.buffer_bytes;
    result.device_memory = to_vg_read_bandwidth(calibration.device_memory);
    result.host_memory = to_vg_read_bandwidth(calibration.host_memory);
    *out = result;
  });
}

vg_status vg_checksum_device_within(vg_tracker* tracker, const void* ptr, uint64_t offset,
                                    uint64_t bytes, uint64_t timeout_ms, vg_checksum* out) {
  return checksum_device(__func__, tracker, ptr, offset, bytes, timeout_ms, out);
}

vg_status vg_checksum_device(vg_tracker* tracker, const void* ptr, uint64_t offset, uint64_t bytes,
                             vg_checksum* out) {
  return checksum_device(__func__, tracker, ptr, offset, bytes, VG_CHECKSUM_DEFAULT_TIMEOUT_MS,
                         out);
}

vg_status vg_checksum_host(const void* ptr, uint64_t bytes, vg_checksum* out) {
  return guarded(__func__, [&] {
    require(out, "out");
    if (bytes > 0) require(ptr, "ptr");
    if (bytes > 0 && reinterpret_cast<uintptr_t>(ptr) + bytes < reinterpret_cast<uintptr_t>(ptr)) {
      throw Error(VG_ERR_INVALID_SIZE, "ptr + bytes wraps around the address space");
    }
    *out = to_vg_checksum(vramguard::host_checksum(ptr, bytes));
  });
}

}  // extern "C"

struct vg_loader {
  vg_loader(int device, const vramguard::LoaderOptions& options) : loader(device, options) {}
  vramguard::WeightsLoader loader;
};

namespace {

constexpr uint32_t kKnownLoadFlags = VG_LOAD_VERIFY | VG_LOAD_EXPECTED;

void require_known_load_flags(uint32_t flags) {
  if ((flags & ~kKnownLoadFlags) != 0) {
    throw Error(VG_ERR_INVALID_ENUM,
                "unknown load flags " + std::to_string(flags & ~kKnownLoadFlags));
  }
}

vramguard::LoadRequest load_request(void* dst, uint64_t image_bytes, const vg_weights_file* files,
                                    uint64_t file_count, const vg_weights_copy* copies,
                                    uint64_t copy_count, uint32_t flags,
                                    const vg_checksum* expected) {
  if (file_count > 0) require(files, "files");
  if (copy_count > 0) require(copies, "copies");
  vramguard::LoadRequest request;
  request.device_ptr = dst;
  request.image_bytes = image_bytes;
  request.verify = (flags & VG_LOAD_VERIFY) != 0;
  if ((flags & VG_LOAD_EXPECTED) != 0) {
    require(expected, "expected");
    request.expected = vramguard::Checksum{expected->lo, expected->hi};
  }
  request.files.reserve(file_count);
  for (uint64_t f = 0; f < file_count; ++f) {
    require(files[f].path, "files[].path");
    request.files.push_back(vramguard::WeightsFileSpec{
        files[f].path, files[f].size, files[f].mtime_ns, files[f].inode, files[f].dev});
  }
  request.copies.reserve(copy_count);
  for (uint64_t c = 0; c < copy_count; ++c) {
    request.copies.push_back(vramguard::WeightsCopy{copies[c].file, copies[c].file_offset,
                                                    copies[c].bytes, copies[c].device_offset});
  }
  return request;
}

// The C ABI's default load timeout is the core's.
static_assert(VG_LOAD_TIMEOUT_FLOOR_MS == vramguard::kLoadTimeoutFloor.count());
static_assert(VG_LOAD_TIMEOUT_MS_PER_GIB == vramguard::kLoadTimeoutPerGiB.count());

// vg_load_weights and vg_load_weights_within, under the caller's name; no timeout_ms: the
// core's default for the image's size.
vg_status load_weights(const char* function, vg_loader* loader, vg_tracker* tracker, void* dst,
                       uint64_t image_bytes, const vg_weights_file* files, uint64_t file_count,
                       const vg_weights_copy* copies, uint64_t copy_count, uint32_t flags,
                       const vg_checksum* expected, std::optional<uint64_t> timeout_ms,
                       vg_load_result* out_result) noexcept {
  return guarded(function, [&] {
    require_known_load_flags(flags);
    std::optional<std::chrono::milliseconds> timeout;
    if (timeout_ms) timeout = checked_timeout(*timeout_ms, "load");
    require(loader, "loader");
    require(tracker, "tracker");
    require(dst, "dst");
    require(out_result, "out_result");
    vramguard::LoadRequest request =
        load_request(dst, image_bytes, files, file_count, copies, copy_count, flags, expected);
    request.timeout = timeout;
    // The image is a tracked allocation of the loader's device, held for the load.
    const vramguard::RecordPin target(tracker->tracker, dst);
    if (!target) throw Error(VG_ERR_UNKNOWN_POINTER, "dst is not a tracked allocation");
    if (target->device != loader->loader.device()) {
      throw Error(VG_ERR_INVALID_DEVICE, "dst is on device " + std::to_string(target->device) +
                                             ", the loader's is " +
                                             std::to_string(loader->loader.device()));
    }
    if (image_bytes > target->bytes) {
      throw Error(VG_ERR_OUT_OF_RANGE, "an image of " + std::to_string(image_bytes) +
                                           " bytes exceeds the allocation of " +
                                           std::to_string(target->bytes) + " bytes");
    }
    const vramguard::LoadResult result = loader->loader.load(request);
    vg_load_result out{};
    out.checksum = to_vg_checksum(result.checksum);
    out.compared = result.compared ? 1 : 0;
    out.bytes_copied = result.bytes_copied;
    out.seconds = result.seconds;
    *out_result = out;
  });
}

}  // namespace

extern "C" {

vg_status vg_loader_create(int32_t device, const vg_loader_options* options,
                           vg_loader** out_loader) {
  return guarded(__func__, [&] {
    require(out_loader, "out_loader");
    *out_loader = nullptr;
    vramguard::LoaderOptions cpp_options;
    if (options != nullptr) {
      if (options->staging_bytes != 0) cpp_options.staging_bytes = options->staging_bytes;
      cpp_options.readers = options->readers;
    }
    *out_loader = new vg_loader(device, cpp_options);
  });
}

vg_status vg_loader_destroy(vg_loader* loader) {
  return guarded(__func__, [&] { delete loader; });
}

vg_status vg_loader_info_get(const vg_loader* loader, vg_loader_info* out_info) {
  return guarded(__func__, [&] {
    require(loader, "loader");
    require(out_info, "out_info");
    vg_loader_info info{};
    info.device = loader->loader.device();
    info.readers = loader->loader.readers();
    info.chunk_bytes = loader->loader.chunk_bytes();
    info.staging_bytes = loader->loader.staging_bytes();
    *out_info = info;
  });
}

vg_status vg_loader_progress(const vg_loader* loader, uint64_t* out_done, uint64_t* out_total) {
  return guarded(__func__, [&] {
    require(loader, "loader");
    require(out_done, "out_done");
    require(out_total, "out_total");
    const vramguard::LoadProgress progress = loader->loader.progress();
    *out_done = progress.done;
    *out_total = progress.total;
  });
}

vg_status vg_loader_idle(vg_loader* loader, int32_t* out_idle) {
  return guarded(__func__, [&] {
    require(loader, "loader");
    require(out_idle, "out_idle");
    *out_idle = loader->loader.idle() ? 1 : 0;
  });
}

vg_status vg_load_weights_within(vg_loader* loader, vg_tracker* tracker, void* dst,
                                 uint64_t image_bytes, const vg_weights_file* files,
                                 uint64_t file_count, const vg_weights_copy* copies,
                                 uint64_t copy_count, uint32_t flags, const vg_checksum* expected,
                                 uint64_t timeout_ms, vg_load_result* out_result) {
  return load_weights(__func__, loader, tracker, dst, image_bytes, files, file_count, copies,
                      copy_count, flags, expected, timeout_ms, out_result);
}

vg_status vg_load_weights(vg_loader* loader, vg_tracker* tracker, void* dst, uint64_t image_bytes,
                          const vg_weights_file* files, uint64_t file_count,
                          const vg_weights_copy* copies, uint64_t copy_count, uint32_t flags,
                          const vg_checksum* expected, vg_load_result* out_result) {
  return load_weights(__func__, loader, tracker, dst, image_bytes, files, file_count, copies,
                      copy_count, flags, expected, std::nullopt, out_result);
}

}  // extern "C"

namespace {

vg_status verify(const char* function, vg_tracker* tracker, uint32_t purpose_mask,
                 vramguard::SweepSample sample, vg_residency* out_residency,
                 vg_violation* violations, uint64_t capacity) noexcept {
  return guarded(function, [&] {
    require(tracker, "tracker");
    require(out_residency, "out_residency");
    if (capacity > 0) require(violations, "violations");
    const auto report =
        vramguard::ResidencyCheck::check_residency(tracker->tracker, purpose_mask, sample);
    vg_residency residency{};
    residency.resident = report.resident;
    residency.device = report.device;
    residency.checked = report.checked;
    residency.not_queried = report.not_queried;
    residency.violation_count = report.violations.size();
    residency.tracked_bytes = report.tracked_bytes;
    residency.allocation_count = report.allocation_count;
    residency.device_used_bytes = report.memory.used_bytes();
    residency.device_total_bytes = report.memory.total_bytes;
    const uint64_t copied = std::min<uint64_t>(capacity, report.violations.size());
    for (uint64_t i = 0; i < copied; ++i) {
      const auto& v = report.violations[i];
      vg_violation& out = violations[i];
      out = vg_violation{};
      out.id = v.allocation.id;
      out.address = reinterpret_cast<uint64_t>(v.allocation.ptr);
      out.bytes = v.allocation.bytes;
      out.purpose = static_cast<int32_t>(v.allocation.purpose);
      out.kind = static_cast<int32_t>(v.allocation.kind);
      out.reason = static_cast<int32_t>(v.observed.reason);
      out.memory_type = static_cast<int32_t>(v.observed.type);
      out.observed_device = v.observed.device;
      out.cuda_error = v.observed.cuda_error;
      copy_description(v.allocation.description, out.description);
    }
    *out_residency = residency;
  });
}

}  // namespace
