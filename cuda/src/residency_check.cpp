#include "vramguard/residency_check.hpp"

#include <cuda_runtime_api.h>

#include <iomanip>
#include <sstream>

#include "cuda_call.hpp"
#include "scoped_device.hpp"

namespace vramguard {

const char* to_string(MemoryType type) noexcept {
  switch (type) {
    case MemoryType::Unregistered: return "Unregistered";
    case MemoryType::Host: return "Host";
    case MemoryType::Device: return "Device";
    case MemoryType::Managed: return "Managed";
  }
  return "Invalid";
}

const char* to_string(ViolationReason reason) noexcept {
  switch (reason) {
    case ViolationReason::NotDeviceMemory: return "not device memory";
    case ViolationReason::HostPointer: return "mapped into host memory";
    case ViolationReason::WrongDevice: return "on another device";
    case ViolationReason::QueryFailed: return "pointer query failed";
  }
  return "invalid";
}

namespace {

// H1 within a ScopedDevice the caller holds (a residency sweep holds one for all its queries).
PointerResidency inspect_in_scope(const void* ptr, int expected_device) {
  PointerResidency result;
  if (ptr == nullptr) return result;  // never resident, reason NotDeviceMemory
  cudaPointerAttributes attributes{};
  const cudaError_t error = cudaPointerGetAttributes(&attributes, ptr);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    // No driver, or a lost context: the check itself cannot run, which is not a verdict on
    // this pointer.
    const vg_status status = status_for_cuda_error(error);
    if (status == VG_ERR_NO_DEVICE || status == VG_ERR_CUDA_STICKY) {
      throw CudaError(static_cast<int>(error), "cudaPointerGetAttributes");
    }
    result.cuda_error = static_cast<int>(error);
    result.reason = ViolationReason::QueryFailed;
    return result;
  }
  switch (attributes.type) {
    case cudaMemoryTypeDevice: result.type = MemoryType::Device; break;
    case cudaMemoryTypeManaged: result.type = MemoryType::Managed; break;
    case cudaMemoryTypeHost: result.type = MemoryType::Host; break;
    default: result.type = MemoryType::Unregistered; break;
  }
  result.device = attributes.device;
  result.has_host_pointer = attributes.hostPointer != nullptr;
  if (result.type != MemoryType::Device) {
    result.reason = ViolationReason::NotDeviceMemory;
  } else if (result.has_host_pointer) {
    result.reason = ViolationReason::HostPointer;
  } else if (result.device != expected_device) {
    result.reason = ViolationReason::WrongDevice;
  } else {
    result.resident = true;
  }
  return result;
}

}  // namespace

PointerResidency ResidencyCheck::inspect_pointer(const void* ptr, int expected_device) {
  if (ptr == nullptr) return PointerResidency{};  // never resident; no device touched
  // The query runs in the expected device's context, so that it makes none on another GPU.
  require_valid_device(expected_device);
  detail::ScopedDevice scope(expected_device);
  return inspect_in_scope(ptr, expected_device);
}

bool ResidencyCheck::check_pointer_residency(const void* ptr, int expected_device) {
  return inspect_pointer(ptr, expected_device).resident;
}

bool ResidencyCheck::check_pointer_residency(const void* ptr) {
  return check_pointer_residency(ptr, detail::current_device());
}

ResidencyReport ResidencyCheck::check_residency(const VramTracker& tracker, unsigned purpose_mask,
                                                SweepSample sample) {
  require_valid_purpose_mask(purpose_mask);
  ResidencyReport report;
  report.device = tracker.device();
  report.memory = memory_info(tracker.device());  // fails first, and clearly, without a GPU
  const ResidencyCandidates candidates = tracker.residency_candidates(purpose_mask, sample);
  report.checked = candidates.queried.size();
  report.not_queried = candidates.not_queried;
  detail::ScopedDevice scope(tracker.device());  // once for the sweep, not once per pointer
  for (const auto& candidate : candidates.queried) {
    const PointerResidency observed = inspect_in_scope(candidate.ptr, tracker.device());
    if (observed.resident) continue;
    // Freed (or freed and reused) while the sweep ran: not a violation of a live allocation.
    auto record = tracker.find(candidate.ptr);
    if (!record || record->id != candidate.id) continue;
    report.violations.push_back(Violation{std::move(*record), observed});
  }
  report.resident = report.violations.empty();
  const UsageStats usage = tracker.usage();
  report.tracked_bytes = usage.total_bytes;
  report.allocation_count = usage.allocation_count;
  return report;
}

bool ResidencyCheck::check_vram_residency(const VramTracker& tracker) {
  return check_residency(tracker).resident;
}

std::uint64_t ResidencyCheck::device_used_bytes(int device) {
  return memory_info(device).used_bytes();
}

std::string ResidencyCheck::format(const ResidencyReport& report) {
  auto mib = [](std::uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); };
  std::ostringstream out;
  out << std::fixed << std::setprecision(2);
  out << "VRAM residency report (GPU" << report.device << ")\n";
  out << "  Status: " << (report.resident ? "RESIDENT" : "VIOLATION") << '\n';
  out << "  Device VRAM used: " << mib(report.memory.used_bytes()) << " MiB of "
      << mib(report.memory.total_bytes) << " MiB\n";
  out << "  Tracked VRAM: " << mib(report.tracked_bytes) << " MiB in " << report.allocation_count
      << " allocation(s); " << report.checked << " checked";
  if (report.not_queried > 0) {
    out << ", " << report.not_queried
        << " of vramguard's own device memory classified when allocated";
  }
  out << '\n';
  if (!report.resident) {
    out << "  WARNING: RAM fallback or unified memory detected in " << report.violations.size()
        << " allocation(s):\n";
    for (const auto& v : report.violations) {
      out << "    - \"" << v.allocation.description << "\" " << to_string(v.allocation.purpose)
          << ", kind " << to_string(v.allocation.kind) << ", " << v.allocation.bytes
          << " bytes: " << to_string(v.observed.reason) << " (memory type "
          << to_string(v.observed.type) << ", device " << v.observed.device << ")\n";
    }
  }
  return out.str();
}

std::string ResidencyCheck::residency_report(const VramTracker& tracker) {
  return format(check_residency(tracker));
}

}  // namespace vramguard
