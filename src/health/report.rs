//! What the health service knows at one moment: computed by the health monitor after each check,
//! cached, and served as-is by `/health`, `/health/ready` and `/metrics` — handlers never call CUDA.
use std::collections::BTreeMap;

use serde::Serialize;

/// Whether the worker may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No check has completed yet.
    Starting,
    /// The last check found every checked allocation resident and every slot's weights intact.
    Healthy,
    /// The last check found a violation, could not run, or ran past its deadline; or the process
    /// met an unrecoverable CUDA error.
    Unhealthy,
    /// The last completed check is older than the configured multiple of the interval, or
    /// none has completed in that time: the verdict can no longer be trusted either way.
    Stale,
}

/// One tracked allocation found outside device memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViolationReport {
    /// The allocation's description, or the slot's name for an integrity violation.
    pub description: String,
    /// The purpose's name, e.g. "ModelWeights".
    pub purpose: String,
    /// The allocation kind's name, e.g. "Managed".
    pub kind: String,
    /// Size in bytes.
    pub bytes: u64,
    /// e.g. "not device memory (memory type Managed)".
    pub reason: String,
    /// [`RESIDENCY_VIOLATION`] (memory off the device) or [`INTEGRITY_VIOLATION`] (I1: weights
    /// changed).
    pub error_kind: String,
}

/// The `error_kind` of memory found off the device (by its attributes or by the bandwidth witness).
pub const RESIDENCY_VIOLATION: &str = "residency_violation";
/// The `error_kind` of weights that changed since they were loaded.
pub const INTEGRITY_VIOLATION: &str = "integrity_violation";

/// The `check` of a slot whose checksum could not be computed.
pub const INTEGRITY_CHECK: &str = "integrity";
/// The `check` of weights the bandwidth witness could not judge.
pub const WITNESS_CHECK: &str = "witness";

/// An allocation or slot a check could establish nothing about this time, and why: neither a
/// violation nor evidence of health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotJudgedReport {
    /// The allocation's description or the slot's name.
    pub description: String,
    /// [`WITNESS_CHECK`] or [`INTEGRITY_CHECK`].
    pub check: String,
    /// Why: "gpu busy: ...", "error: ...".
    pub reason: String,
}

/// The device the worker runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DeviceReport {
    /// The CUDA ordinal.
    pub ordinal: u32,
    /// The product name; empty until the device has answered.
    pub name: String,
    /// The PCI bus id (`dddd:bb:dd.f`, as CUDA gives it), which tells GPUs of the same product
    /// apart whatever `CUDA_VISIBLE_DEVICES` renumbers; empty until the device has answered.
    pub pci_bus_id: String,
    /// The device's whole memory.
    pub total_bytes: u64,
    /// Device-wide used VRAM: total − free from cudaMemGetInfo.
    pub used_bytes: u64,
    /// Shares physical memory with the host (H5).
    pub integrated: bool,
    /// Can access pageable host memory (HMM/ATS): unified memory (H5).
    pub unified_memory: bool,
    /// This process's VRAM from NVML; None = unknown (never guessed).
    pub process_bytes: Option<u64>,
    /// process − tracked, when the process figure is known.
    pub untracked_bytes: Option<u64>,
}

/// The slots' budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetReport {
    /// The budget's limit.
    pub limit_bytes: u64,
    /// Bytes held against it by the slots.
    pub allocated_bytes: u64,
    /// Bytes left under it.
    pub available_bytes: u64,
    /// "low", "medium", "high", "critical".
    pub pressure: String,
    /// 0 (low) … 3 (critical).
    pub pressure_level: u8,
    /// The most bytes the slots may hold and stay below Critical pressure: what a load's fit plan
    /// aims for before it settles for the budget itself.
    pub below_critical_bytes: u64,
}

/// One loaded model slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotReport {
    /// The slot's name.
    pub name: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Whether it is pinned (never evicted).
    pub pinned: bool,
    /// Live use guards on it.
    pub users: usize,
    /// Seconds since it was last allocated, touched or used.
    pub idle_secs: f64,
    /// Whether an eviction could take it at the check's time (no user, not pinned, past the
    /// minimum residency): the candidates of a fit plan, in the order of `slots`.
    pub evictable: bool,
    /// For a slot loaded from weights files: which, and how the load went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<SlotWeightsReport>,
}

/// The weights files of a slot and its load (W1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotWeightsReport {
    /// The files, as given to the load.
    pub files: Vec<String>,
    /// Tensors loaded.
    pub tensors: usize,
    /// Tensor bytes loaded (without padding).
    pub bytes: u64,
    /// How long the load took, in seconds.
    pub load_seconds: f64,
    /// Tensor bytes per second of the load, 10^9 bytes.
    pub load_gb_per_s: f64,
    /// Whether the device's bytes were compared with the bytes read (or a known checksum).
    pub verified: bool,
    /// The integrity reference the periodic check compares with.
    pub checksum: String,
}

/// The bandwidth witness as the last check saw it ([`crate::witness`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WitnessReport {
    /// What the GPU read its own memory (the witness's control buffer) at when calibrated; 0
    /// before a calibration.
    pub device_gb_per_s: f64,
    /// What it read mapped pinned host memory at.
    pub host_gb_per_s: f64,
    /// A slice read faster than this is device memory ([`crate::witness::HOST_CEILING`] times the
    /// host figure); a slower one is confirmed against the control buffer.
    pub host_ceiling_gb_per_s: f64,
    /// Allocations smaller than this are not read.
    pub smallest_judged_bytes: u64,
    /// Allocations of the last check smaller than that.
    pub too_small: u64,
    /// Device memory the witness holds (its control buffer).
    pub device_bytes: u64,
    /// A full pass over every `ModelWeights` allocation takes this many checks.
    pub full_pass_checks: u32,
    /// Why the witness read or judged nothing in the last check, when so (not calibrated yet, a
    /// calibration that cannot separate the memories: see
    /// [`crate::witness::WitnessCalibration::cannot_judge`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_judging: Option<String>,
    /// Each `ModelWeights` allocation's reading in the last check.
    pub readings: Vec<crate::witness::WitnessReading>,
}

/// Counters since the service started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct HealthCounters {
    /// Checks that found everything resident and intact.
    pub checks_passed: u64,
    /// Checks that found a residency violation.
    pub checks_violated: u64,
    /// Checks that could not run (the error is in `last_error`).
    pub checks_failed: u64,
    /// Witness readings that could establish neither residency nor host backing (a GPU too busy
    /// to tell, an error reading one allocation).
    pub witness_not_judged: u64,
    /// Slot checksums that could not be computed for a reason of their own.
    pub integrity_not_judged: u64,
    /// Model slots evicted (0 without a slot manager).
    pub evictions: u64,
    /// Out-of-memory failures of the slot manager (0 without one).
    pub ooms: u64,
    /// Evicted or unloaded bytes the driver's free memory was seen to take back (receipts).
    pub eviction_reclaimed_bytes: u64,
    /// Evicted or unloaded bytes it was not seen to take back within the receipt's deadline.
    pub eviction_unreclaimed_bytes: u64,
}

/// Everything `/health` and `/metrics` show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The verdict, judged when the report was read.
    pub status: HealthStatus,
    /// False once the process has met an unrecoverable (sticky) CUDA error: its context is
    /// corrupted and only a restart helps, so `/health/live` answers 503. Never true again.
    pub live: bool,
    /// True when the last check found every checked allocation in device memory.
    pub resident: bool,
    /// Tracked VRAM (the seed's figure): bytes this worker accounts for.
    pub vram_bytes_used: u64,
    /// Seconds since the last completed check; None before the first.
    pub last_check_secs: Option<f64>,
    /// Unix time of the last completed check.
    pub last_check_unix_secs: Option<f64>,
    /// How long the last completed check took, in seconds.
    pub last_check_duration_secs: Option<f64>,
    /// The last check's error as JSON (`Error::to_json`), when it could not run.
    pub last_error: Option<serde_json::Value>,
    /// Allocations found outside device memory and slots whose weights changed, from the last
    /// check (kept when the check itself failed after finding them).
    pub violations: Vec<ViolationReport>,
    /// Allocations and slots the last check could not judge, and why.
    pub not_judged: Vec<NotJudgedReport>,
    /// Tracked bytes by purpose name.
    pub by_purpose: BTreeMap<String, u64>,
    /// Live tracked allocations.
    pub tracked_allocations: u64,
    /// The device and its memory.
    pub device: DeviceReport,
    /// The slots' budget, when a slot manager is attached.
    pub budget: Option<BudgetReport>,
    /// The loaded slots, least recently used first.
    pub slots: Vec<SlotReport>,
    /// How many slots the workload has (0 when none was announced).
    pub expected_slots: usize,
    /// Check and slot counters since the service started.
    pub counters: HealthCounters,
    /// The bandwidth witness's calibration and last readings (absent when it is off, or before
    /// a check could run it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<WitnessReport>,
    /// Where the untracked VRAM goes (absent without NVML's process figure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<super::ledger::UntrackedLedger>,
    /// Figures that grew steadily over the leak trend's window (advisory: never a change of
    /// health on its own).
    pub leak_suspected: Vec<super::ledger::LeakSuspicion>,
}

impl HealthReport {
    /// Ready for traffic: healthy and resident (Kubernetes readiness).
    pub fn ready(&self) -> bool {
        self.status == HealthStatus::Healthy && self.resident
    }

    /// A report before any check: starting, not ready.
    pub fn starting(device: DeviceReport) -> HealthReport {
        HealthReport {
            status: HealthStatus::Starting,
            live: true,
            resident: false,
            vram_bytes_used: 0,
            last_check_secs: None,
            last_check_unix_secs: None,
            last_check_duration_secs: None,
            last_error: None,
            violations: Vec::new(),
            not_judged: Vec::new(),
            by_purpose: BTreeMap::new(),
            tracked_allocations: 0,
            device,
            budget: None,
            slots: Vec::new(),
            expected_slots: 0,
            counters: HealthCounters::default(),
            witness: None,
            ledger: None,
            leak_suspected: Vec::new(),
        }
    }
}

/// Where the HTTP layer gets the cached report. Must be cheap and must not call CUDA.
pub trait HealthSource: Send + Sync {
    /// The current report, never computed by calling CUDA.
    fn report(&self) -> HealthReport;
}
