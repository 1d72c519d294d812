//! H1–H3: is memory really in the GPU? Decided from `cudaPointerGetAttributes`' answer (type
//! Device, no host mapping, the expected device), never from its return code alone.
use std::ffi::{c_void, CStr};
use std::fmt;

use crate::error::{check, Result};
use crate::purpose::{AllocationKind, Purpose, PurposeSet};
use crate::sys;
use crate::tracker::{read_text, Tracker};

/// What CUDA says a pointer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryType {
    /// Memory CUDA does not know: pageable host memory or a wild address.
    Unregistered,
    /// Page-locked host memory (`cudaMallocHost`, `cudaHostRegister`).
    Host,
    /// Device memory: the only type that can be resident.
    Device,
    /// Unified (managed) memory, which the driver may migrate to the host.
    Managed,
}

impl MemoryType {
    fn from_raw(raw: i32) -> MemoryType {
        match raw as u32 {
            sys::VG_MEMORY_HOST => MemoryType::Host,
            sys::VG_MEMORY_DEVICE => MemoryType::Device,
            sys::VG_MEMORY_MANAGED => MemoryType::Managed,
            _ => MemoryType::Unregistered,
        }
    }
}

impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why an allocation is not resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationReason {
    /// CUDA's memory type is not device memory (see the violation's `memory_type`).
    NotDeviceMemory,
    /// Device memory that is also mapped into the host's address space.
    HostPointer,
    /// Device memory of another GPU.
    WrongDevice,
    /// `cudaPointerGetAttributes` failed for this pointer (see the violation's `cuda_error`).
    QueryFailed,
}

impl ViolationReason {
    fn from_raw(raw: i32) -> ViolationReason {
        match raw as u32 {
            sys::VG_VIOLATION_HOST_POINTER => ViolationReason::HostPointer,
            sys::VG_VIOLATION_WRONG_DEVICE => ViolationReason::WrongDevice,
            sys::VG_VIOLATION_QUERY_FAILED => ViolationReason::QueryFailed,
            _ => ViolationReason::NotDeviceMemory,
        }
    }
}

impl fmt::Display for ViolationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ViolationReason::NotDeviceMemory => "not device memory",
            ViolationReason::HostPointer => "mapped into host memory",
            ViolationReason::WrongDevice => "on another device",
            ViolationReason::QueryFailed => "pointer query failed",
        })
    }
}

/// One pointer's classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerCheck {
    /// True when device memory of the expected device, with no host mapping.
    pub resident: bool,
    /// What CUDA says the pointer is.
    pub memory_type: MemoryType,
    /// As CUDA reports it (-2 for unregistered host memory).
    pub device: i32,
    /// Whether CUDA reports a host mapping of the memory.
    pub has_host_pointer: bool,
    /// The CUDA error of the query itself; 0 unless it failed.
    pub cuda_error: i32,
}

/// A tracked allocation found outside device memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The allocation's record id in its tracker.
    pub id: u64,
    /// The first byte's address.
    pub address: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// What the memory is for.
    pub purpose: Purpose,
    /// How it was allocated.
    pub kind: AllocationKind,
    /// The description it was allocated or recorded with.
    pub description: String,
    /// Why it is not resident.
    pub reason: ViolationReason,
    /// The memory type CUDA observed.
    pub memory_type: MemoryType,
    /// The device CUDA reports for the pointer.
    pub observed_device: i32,
    /// The CUDA error of the query; 0 unless it failed.
    pub cuda_error: i32,
}

/// H3: the outcome of one residency verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidencyReport {
    /// True when no violation was found.
    pub resident: bool,
    /// The ordinal of the tracker's GPU.
    pub device: i32,
    /// Allocations whose purpose was checked, queried by this sweep.
    pub checked: u64,
    /// vramguard's own device and pool memory of those purposes that a sampled sweep
    /// ([`Tracker::verify_sampled`]) did not query: device memory by construction, classified
    /// when allocated. 0 for a full sweep.
    pub not_queried: u64,
    /// Every allocation found outside device memory, with the reason.
    pub violations: Vec<Violation>,
    /// Bytes of all live allocations in the tracker, checked or not.
    pub tracked_bytes: u64,
    /// Live allocations in the tracker, checked or not.
    pub allocation_count: u64,
    /// Device-wide used VRAM: total − free from `cudaMemGetInfo`.
    pub device_used_bytes: u64,
    /// The device's total memory, from `cudaMemGetInfo`.
    pub device_total_bytes: u64,
}

/// Which of vramguard's own allocations a sampled sweep queries ([`Tracker::verify_sampled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSample {
    /// About this many of vramguard's own `Device` and `Pool` allocations are queried per sweep
    /// (0: none; `u64::MAX`: all of them, as [`Tracker::verify`]).
    pub own_per_sweep: u64,
    /// Which part of them: consecutive values cover them all.
    pub rotation: u64,
}

/// Classifies one pointer against the GPU it should live on.
#[allow(clippy::not_unsafe_ptr_arg_deref)] // CUDA is asked about the pointer; nothing dereferences it
pub fn check_pointer(device: u32, ptr: *const c_void) -> Result<PointerCheck> {
    let mut raw = sys::vg_pointer_check::default();
    // SAFETY: valid out-pointer; the core only asks CUDA about ptr, never dereferences it.
    check(unsafe { sys::vg_check_pointer(device as i32, ptr, &mut raw) })?;
    Ok(PointerCheck {
        resident: raw.resident != 0,
        memory_type: MemoryType::from_raw(raw.memory_type),
        device: raw.device,
        has_host_pointer: raw.has_host_pointer != 0,
        cuda_error: raw.cuda_error,
    })
}

impl Tracker {
    /// H2: verifies every allocation whose purpose is in `purposes`. The tracker is snapshotted
    /// under its locks and CUDA is queried outside them.
    pub fn verify(&self, purposes: PurposeSet) -> Result<ResidencyReport> {
        // SAFETY (of the call): the arguments are those verify_with documents.
        self.verify_with(|summary, violations, capacity| unsafe {
            sys::vg_verify(self.inner().raw(), purposes.bits(), summary, violations, capacity)
        })
    }

    /// H2 with fewer pointer queries (issue 16): recorded and adopted pointers, and vramguard's
    /// own managed and pinned host memory, are queried as [`Tracker::verify`] queries them; of
    /// vramguard's own `Device` and `Pool` allocations — device memory by construction, whose
    /// placement a query cannot change (the bandwidth witness judges where their bytes are) —
    /// about `sample.own_per_sweep` are queried, a different part for each `sample.rotation`, so
    /// that consecutive rotations cover them all.
    pub fn verify_sampled(&self, purposes: PurposeSet, sample: SweepSample) -> Result<ResidencyReport> {
        // SAFETY (of the call): the arguments are those verify_with documents.
        self.verify_with(|summary, violations, capacity| unsafe {
            sys::vg_verify_sampled(
                self.inner().raw(),
                purposes.bits(),
                sample.own_per_sweep,
                sample.rotation,
                summary,
                violations,
                capacity,
            )
        })
    }

    /// Runs a sweep that copies its summary and up to `capacity` violations, growing the room for
    /// violations until they fit.
    fn verify_with(
        &self,
        mut sweep: impl FnMut(*mut sys::vg_residency, *mut sys::vg_violation, u64) -> sys::vg_status,
    ) -> Result<ResidencyReport> {
        let mut capacity = self.allocation_count() as usize + 16;
        loop {
            let mut summary = sys::vg_residency::default();
            let mut violations: Vec<sys::vg_violation> = Vec::with_capacity(capacity);
            // violations has room for `capacity` entries; the core copies at most that.
            check(sweep(&mut summary, violations.as_mut_ptr(), capacity as u64))
                .inspect_err(|error| crate::events::verify_error(self.device(), error))?;
            if summary.violation_count as usize > capacity {
                capacity = summary.violation_count as usize + 16; // grew while we looked: again
                continue;
            }
            // SAFETY: the core initialised violation_count (<= capacity) entries.
            unsafe { violations.set_len(summary.violation_count as usize) };
            let violations = violations.iter().map(violation_from_raw).collect::<Result<Vec<_>>>()?;
            match violations.first() {
                None => crate::events::verify_passed(self.device(), summary.checked),
                Some(first) => crate::events::verify_failed(self.device(), violations.len(), &first.description),
            }
            return Ok(ResidencyReport {
                resident: summary.resident != 0,
                device: summary.device,
                checked: summary.checked,
                not_queried: summary.not_queried,
                violations,
                tracked_bytes: summary.tracked_bytes,
                allocation_count: summary.allocation_count,
                device_used_bytes: summary.device_used_bytes,
                device_total_bytes: summary.device_total_bytes,
            });
        }
    }

    /// Verifies every tracked allocation.
    pub fn verify_all(&self) -> Result<ResidencyReport> {
        self.verify(PurposeSet::ALL)
    }

    /// A fresh verification as human-readable text, naming each violation.
    pub fn residency_report(&self) -> Result<String> {
        let raw = self.inner().raw();
        // SAFETY: live tracker; buffer and capacity come from read_text.
        read_text(|out, capacity, needed| unsafe { sys::vg_residency_report(raw, out, capacity, needed) })
    }
}

fn violation_from_raw(raw: &sys::vg_violation) -> Result<Violation> {
    // SAFETY: NUL-terminated inside its fixed-size array.
    let description = unsafe { CStr::from_ptr(raw.description.as_ptr()) }.to_string_lossy().into_owned();
    Ok(Violation {
        id: raw.id,
        address: raw.address as usize,
        bytes: raw.bytes,
        purpose: Purpose::from_raw(raw.purpose)?,
        kind: AllocationKind::from_raw(raw.kind)?,
        description,
        reason: ViolationReason::from_raw(raw.reason),
        memory_type: MemoryType::from_raw(raw.memory_type),
        observed_device: raw.observed_device,
        cuda_error: raw.cuda_error,
    })
}
