//! The bandwidth witness: residency proved by physics, not only by labels.
//!
//! `cudaPointerGetAttributes` says how memory was allocated, not where its bytes are now; NVIDIA's
//! system-memory fallback on Windows and WSL drivers keeps that answer "device". How fast the GPU
//! reads the bytes does not lie: terabytes per second from its HBM, about 50 GB/s from host memory
//! over PCIe, and never faster than the link. Each health check reads a rotating slice of every
//! tracked `ModelWeights` allocation, so that a full pass over all weights takes
//! [`WitnessConfig::full_pass_checks`] checks.
//!
//! The witness lives inside the worker's process, beside the worker's own kernels, which can hold
//! every SM and the memory system for milliseconds. So a slow reading is a suspicion, never a
//! verdict:
//! - a reading faster than [`HOST_CEILING`] times the calibrated host figure is device memory
//!   (host memory cannot be read that fast, however idle the GPU);
//! - a slower one is confirmed: the witness reads its own control buffer of device memory, the
//!   slice, and the control buffer again in one window on its own stream, and judges the ratio.
//!   The slice is host-backed only when both controls read at least [`MIN_SEPARATION`] times the
//!   host figure (so that the GPU could tell the two apart right then) and the slice read at most
//!   1/[`MIN_SEPARATION`] of the slower control, in [`HOST_CONFIRMATIONS`] windows of at most
//!   [`WitnessConfig::confirm_windows`];
//! - otherwise the slice is "not judged: GPU busy" (counted, and shown in `/health`): neither
//!   healthy by default nor a violation.
//!
//! Readings are timed on the GPU from the first block's start to the last block's end, on a
//! stream at the device's greatest priority, so that the time a reading waits for SMs is not
//! counted. Calibration happens at the first check, is retried with backoff until it succeeds
//! with figures that can judge, and is redone when a control reads faster than the calibrated
//! device figure (the calibration was taken under load). An error reading one allocation never
//! hides the others' findings: memory the GPU cannot read is a residency violation, any other
//! error leaves that allocation not judged with its reason, and only errors of the check itself
//! (a sticky CUDA error, the deadline, a lost device) fail it.
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{check, Error, Result};
use crate::purpose::{Purpose, PurposeSet};
use crate::sys;
use crate::tracker::{Allocation, Tracker};

/// The smallest slice whose reading is judged: below it, loads of host memory can be served
/// faster than PCIe delivers them. Allocations smaller than this are not read at all.
pub const SMALLEST_JUDGED_BYTES: u64 = sys::VG_WITNESS_SMALLEST_JUDGED_BYTES as u64;

/// The least factor between device and host readings for the witness to judge: between the
/// calibrated figures (else it never judges: an integrated GPU, a coherent link, a tool that
/// instruments the kernels), and between a confirming window's controls and the host figure
/// (else that window is "GPU busy").
pub const MIN_SEPARATION: f64 = 4.0;

/// A reading faster than this many times the calibrated host figure cannot be host memory.
pub const HOST_CEILING: f64 = 2.0;

/// Windows that must each find the slice host-backed before it is a violation.
pub const HOST_CONFIRMATIONS: u32 = 2;

/// The witness's control buffer of device memory (and the calibration's host buffer): larger than
/// the L2 of the GPUs vramguard targets.
pub const CONTROL_BYTES: u64 = sys::VG_WITNESS_CONTROL_BYTES as u64;

/// The first retry of a failed or implausible calibration; each further failure doubles it.
const FIRST_CALIBRATION_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between calibration attempts.
const LONGEST_CALIBRATION_RETRY: Duration = Duration::from_secs(300);
/// A control read this much faster than the calibrated device figure means the calibration was
/// taken while the GPU was busy: it is redone.
const RECALIBRATE_ABOVE: f64 = 1.5;

/// One timed read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct ReadBandwidth {
    /// The 16-byte-aligned part of the range that was read.
    pub range_bytes: u64,
    /// `range_bytes` times the passes made.
    pub bytes_read: u64,
    /// From the reading's first block's start to its last block's end, on the GPU's timer.
    pub seconds: f64,
    /// Between CUDA events around the launch: `seconds` plus any wait for SMs.
    pub event_seconds: f64,
}

impl ReadBandwidth {
    fn from_raw(raw: &sys::vg_read_bandwidth) -> ReadBandwidth {
        ReadBandwidth {
            range_bytes: raw.range_bytes,
            bytes_read: raw.bytes_read,
            seconds: raw.seconds,
            event_seconds: raw.event_seconds,
        }
    }

    /// Gigabytes (10^9 bytes) per second.
    pub fn gb_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes_read as f64 / self.seconds / 1e9
        } else {
            0.0
        }
    }
}

/// The control buffer, a slice, and the control buffer again, read in one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct BracketedReading {
    /// The control buffer just before the slice.
    pub control_before: ReadBandwidth,
    /// The slice.
    pub target: ReadBandwidth,
    /// The control buffer just after.
    pub control_after: ReadBandwidth,
}

/// What one GPU reads its own memory and mapped host memory at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WitnessCalibration {
    /// The GPU's ordinal.
    pub device: u32,
    /// The size of each calibration buffer.
    pub buffer_bytes: u64,
    /// The best of three reads of the control buffer (device memory).
    pub device_memory: ReadBandwidth,
    /// The best of three reads of mapped pinned host memory (`cudaHostAlloc`).
    pub host_memory: ReadBandwidth,
}

impl WitnessCalibration {
    /// The geometric mean of the device and host figures, for reports: the witness itself judges
    /// by [`HOST_CEILING`] and by ratios to its control buffer.
    pub fn threshold_gb_per_second(&self) -> f64 {
        (self.device_memory.gb_per_second() * self.host_memory.gb_per_second()).sqrt()
    }

    /// Above this a reading is device memory: [`HOST_CEILING`] times the host figure.
    pub fn host_ceiling_gb_per_second(&self) -> f64 {
        HOST_CEILING * self.host_memory.gb_per_second()
    }

    /// Why readings cannot be judged on this GPU in this process, if they cannot: the two
    /// figures are less than [`MIN_SEPARATION`] apart, or a CUDA tool instruments the kernels, so
    /// that their times are the tool's, not the memory's (compute-sanitizer sets
    /// `NV_SANITIZER_INJECTION_PORT_BASE` in the process it runs; Nsight tools and other injected
    /// profilers `CUDA_INJECTION64_PATH`).
    pub fn cannot_judge(&self) -> Option<String> {
        instrumented().or_else(|| {
            let separation =
                self.device_memory.gb_per_second() / self.host_memory.gb_per_second().max(f64::MIN_POSITIVE);
            (separation < MIN_SEPARATION).then(|| {
                format!(
                    "device and host memory read only {separation:.1}x apart here (at least {MIN_SEPARATION}x is needed)"
                )
            })
        })
    }
}

/// Why kernel times are not the memory's in this process, if a CUDA tool instruments them.
fn instrumented() -> Option<String> {
    ["NV_SANITIZER_INJECTION_PORT_BASE", "CUDA_INJECTION64_PATH"].into_iter().find_map(|variable| {
        std::env::var_os(variable).map(|_| {
            format!("a CUDA tool instruments the kernels ({variable} is set), so their times are not the memory's")
        })
    })
}

/// The witness's GPU side on one device: a stream at the device's greatest priority and a control
/// buffer of [`CONTROL_BYTES`] of device memory (vramguard's own, untracked), freed on drop.
#[derive(Debug)]
pub struct ReadWitness {
    raw: NonNull<sys::vg_read_witness>,
    device: u32,
}

// SAFETY: the core's witness serialises its readings with a mutex; every C ABI function on it may
// be called from any thread.
unsafe impl Send for ReadWitness {}
unsafe impl Sync for ReadWitness {}

impl Drop for ReadWitness {
    fn drop(&mut self) {
        // SAFETY: raw came from vg_read_witness_create and is destroyed exactly once.
        let _ = unsafe { sys::vg_read_witness_destroy(self.raw.as_ptr()) };
    }
}

/// A deadline as the C ABI's milliseconds: at least 1, rounded up.
fn timeout_ms(deadline: Duration) -> u64 {
    deadline.as_micros().div_ceil(1000).clamp(1, u128::from(u64::MAX)) as u64
}

impl ReadWitness {
    /// Allocates the control buffer on `device` and makes the stream. VRAM-E001 without a GPU,
    /// VRAM-E010 for a device that does not exist, VRAM-E011 when the memory cannot be had.
    pub fn new(device: u32) -> Result<ReadWitness> {
        let ordinal = i32::try_from(device).map_err(|_| Error::InvalidDevice(format!("device {device}")))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; on success the core hands over a witness we destroy once.
        check(unsafe { sys::vg_read_witness_create(ordinal, CONTROL_BYTES, &mut raw) })?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::Internal("vg_read_witness_create returned null".into()))?;
        Ok(ReadWitness { raw, device })
    }

    /// The GPU it reads on.
    pub fn device(&self) -> u32 {
        self.device
    }

    /// The control buffer and as much mapped pinned host memory, the best of three readings each.
    pub fn calibrate(&self, min_bytes_read: u64, deadline: Duration) -> Result<WitnessCalibration> {
        let mut raw = sys::vg_witness_calibration::default();
        // SAFETY: a live witness and a valid out-pointer; the core allocates and frees the host buffer.
        check(unsafe {
            sys::vg_read_witness_calibrate(self.raw.as_ptr(), min_bytes_read, timeout_ms(deadline), &mut raw)
        })?;
        Ok(WitnessCalibration {
            device: self.device,
            buffer_bytes: raw.buffer_bytes,
            device_memory: ReadBandwidth::from_raw(&raw.device_memory),
            host_memory: ReadBandwidth::from_raw(&raw.host_memory),
        })
    }

    /// Times a read of `[ptr + offset, ptr + offset + bytes)` of an allocation `tracker` tracks
    /// on this GPU, at least `min_bytes_read` bytes (the range read several times over when it is
    /// smaller), waiting at most `deadline` (VRAM-E019 past it). The allocation cannot be freed
    /// while it is read. Unknown pointer VRAM-E004, a range past the allocation VRAM-E008, a range
    /// without an aligned 16-byte word VRAM-E003, memory the GPU cannot read VRAM-E023.
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // the core looks the pointer up among the tracked allocations
    pub fn measure(
        &self,
        tracker: &Tracker,
        ptr: *const c_void,
        offset: u64,
        bytes: u64,
        min_bytes_read: u64,
        deadline: Duration,
    ) -> Result<ReadBandwidth> {
        let mut raw = sys::vg_read_bandwidth::default();
        // SAFETY: a live witness and tracker and a valid out-pointer; the core checks that the
        // range lies in a tracked allocation and pins it while the kernel reads it.
        check(unsafe {
            sys::vg_read_witness_measure(
                self.raw.as_ptr(),
                tracker.inner().raw(),
                ptr,
                offset,
                bytes,
                min_bytes_read,
                timeout_ms(deadline),
                &mut raw,
            )
        })?;
        Ok(ReadBandwidth::from_raw(&raw))
    }

    /// [`measure`](Self::measure) between two readings of the control buffer, in one window.
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // the core looks the pointer up among the tracked allocations
    pub fn measure_bracketed(
        &self,
        tracker: &Tracker,
        ptr: *const c_void,
        offset: u64,
        bytes: u64,
        min_bytes_read: u64,
        deadline: Duration,
    ) -> Result<BracketedReading> {
        let mut raw = sys::vg_bracketed_reading::default();
        // SAFETY: as in measure.
        check(unsafe {
            sys::vg_read_witness_measure_bracketed(
                self.raw.as_ptr(),
                tracker.inner().raw(),
                ptr,
                offset,
                bytes,
                min_bytes_read,
                timeout_ms(deadline),
                &mut raw,
            )
        })?;
        Ok(BracketedReading {
            control_before: ReadBandwidth::from_raw(&raw.control_before),
            target: ReadBandwidth::from_raw(&raw.target),
            control_after: ReadBandwidth::from_raw(&raw.control_after),
        })
    }
}

/// How the health monitor uses the witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessConfig {
    /// A full pass over every byte of every `ModelWeights` allocation completes within this many
    /// checks (each check reads a slice of about 1/n of each allocation). 1..=1000.
    pub full_pass_checks: u32,
    /// The bytes each reading covers at least (a slice is read several times over to reach it).
    /// 1 MiB..=16 GiB; 256 MiB keeps a launch's few microseconds of overhead under 10 % of the
    /// reading on an H200.
    pub min_bytes_read: u64,
    /// The most confirming windows one slow slice gets in one check. HOST_CONFIRMATIONS..=16.
    pub confirm_windows: u32,
}

impl Default for WitnessConfig {
    fn default() -> Self {
        WitnessConfig { full_pass_checks: 4, min_bytes_read: 256 << 20, confirm_windows: 4 }
    }
}

impl WitnessConfig {
    /// Checks the ranges above: VRAM-E007 outside them.
    pub fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.full_pass_checks) {
            return Err(Error::InvalidArgument(format!(
                "the witness's full pass takes {} checks; it must be between 1 and 1000",
                self.full_pass_checks
            )));
        }
        if !((1 << 20)..=(16 << 30)).contains(&self.min_bytes_read) {
            return Err(Error::InvalidArgument(format!(
                "the witness reads at least {} bytes per reading; it must be between 1 MiB and 16 GiB",
                self.min_bytes_read
            )));
        }
        if !(HOST_CONFIRMATIONS..=16).contains(&self.confirm_windows) {
            return Err(Error::InvalidArgument(format!(
                "the witness confirms a slow slice in at most {} windows; it must be between {HOST_CONFIRMATIONS} and 16",
                self.confirm_windows
            )));
        }
        Ok(())
    }
}

/// What the witness concluded about one slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessVerdict {
    /// Read faster than host memory can be: device memory.
    Resident,
    /// Read at host-memory speed beside device memory read fast in the same windows: a violation.
    HostBacked,
    /// Neither could be established in this check (the GPU too busy to tell, or an error reading
    /// it): see the reading's `reason`.
    NotJudged,
}

/// One allocation's reading in one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WitnessReading {
    /// The allocation's record id.
    #[serde(skip)]
    pub id: u64,
    /// Its description (a slot's name for slot weights).
    pub description: String,
    /// How it was allocated.
    pub kind: String,
    /// The allocation's size.
    pub bytes: u64,
    /// Where the slice read in this check starts.
    pub offset: u64,
    /// The slice's size.
    pub slice_bytes: u64,
    /// What the GPU read the slice at: the last reading taken (0 when none could be).
    pub gb_per_s: f64,
    /// The slower control of the last confirming window, when the slice needed confirming.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_gb_per_s: Option<f64>,
    /// Confirming windows read (0 when the first reading was fast enough).
    pub windows: u32,
    /// What the readings establish.
    pub verdict: WitnessVerdict,
    /// Why it is not judged, or the evidence that it is host-backed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WitnessReading {
    /// Judged host-backed.
    pub fn host_backed(&self) -> bool {
        self.verdict == WitnessVerdict::HostBacked
    }
}

/// A tracked `ModelWeights` allocation the GPU cannot read at all: a residency violation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnreadableWeights {
    /// The allocation as listed for the check.
    #[serde(skip)]
    pub allocation: Allocation,
    /// What the core said (VRAM-E023's message).
    pub reason: String,
}

/// One check's witness: what it could establish, and whatever stopped it.
#[derive(Debug, Default)]
pub struct WitnessOutcome {
    /// The calibration the check judged with (None while there is none).
    pub calibration: Option<WitnessCalibration>,
    /// Why the witness read nothing or judged nothing in this check, when so.
    pub not_judging: Option<String>,
    /// Each read allocation's reading.
    pub readings: Vec<WitnessReading>,
    /// `ModelWeights` allocations the GPU cannot read.
    pub unreadable: Vec<UnreadableWeights>,
    /// Allocations smaller than [`SMALLEST_JUDGED_BYTES`], not read.
    pub too_small: u64,
    /// An error of the check itself (sticky CUDA error, deadline, lost device): the check fails
    /// with it; everything above still stands.
    pub check_error: Option<Error>,
}

impl WitnessOutcome {
    /// Readings neither resident nor host-backed in this check.
    pub fn not_judged(&self) -> u64 {
        self.readings.iter().filter(|r| r.verdict == WitnessVerdict::NotJudged).count() as u64
    }
}

/// Where one window leaves a slow slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Resident,
    HostBacked,
    Busy,
}

/// The judgement of one window, by physics and by ratio (see the module's documentation).
fn judge_window(calibration: &WitnessCalibration, window: &BracketedReading) -> Window {
    let host = calibration.host_memory.gb_per_second();
    let target = window.target.gb_per_second();
    let slower_control = window.control_before.gb_per_second().min(window.control_after.gb_per_second());
    if target > calibration.host_ceiling_gb_per_second() {
        Window::Resident
    } else if slower_control >= MIN_SEPARATION * host && target * MIN_SEPARATION <= slower_control {
        Window::HostBacked
    } else {
        Window::Busy
    }
}

/// What the witness's GPU side does for the policy: [`ReadWitness`] in the product, scripted
/// readings in the tests of the policy.
trait Reading {
    fn measure(&self, allocation: &Allocation, offset: u64, bytes: u64, deadline: Duration) -> Result<ReadBandwidth>;
    fn measure_bracketed(
        &self,
        allocation: &Allocation,
        offset: u64,
        bytes: u64,
        deadline: Duration,
    ) -> Result<BracketedReading>;
}

struct TrackedReading<'a> {
    witness: &'a ReadWitness,
    tracker: &'a Tracker,
    min_bytes_read: u64,
}

impl Reading for TrackedReading<'_> {
    fn measure(&self, allocation: &Allocation, offset: u64, bytes: u64, deadline: Duration) -> Result<ReadBandwidth> {
        let ptr = allocation.address as *const c_void;
        self.witness.measure(self.tracker, ptr, offset, bytes, self.min_bytes_read, deadline)
    }

    fn measure_bracketed(
        &self,
        allocation: &Allocation,
        offset: u64,
        bytes: u64,
        deadline: Duration,
    ) -> Result<BracketedReading> {
        let ptr = allocation.address as *const c_void;
        self.witness.measure_bracketed(self.tracker, ptr, offset, bytes, self.min_bytes_read, deadline)
    }
}

/// The calibration and what is known of the GPU side, behind the witness's lock.
#[derive(Debug, Default)]
struct State {
    gpu: Option<ReadWitness>,
    calibration: Option<WitnessCalibration>,
    /// Failed or implausible calibrations in a row, and when the next may be tried.
    failures: u32,
    retry_at: Option<Instant>,
    /// Why the last calibration attempt could not be used.
    last_failure: Option<String>,
    /// A control read faster than the calibration allows: calibrate again at the next check.
    recalibrate: bool,
    /// Record id → where its next slice starts.
    cursors: HashMap<u64, u64>,
}

/// The witness of one tracker: its GPU side, calibration and each allocation's place in the
/// rotation. Checks may run at once; they take turns here.
#[derive(Debug)]
pub struct BandwidthWitness {
    config: WitnessConfig,
    state: Mutex<State>,
}

impl BandwidthWitness {
    /// A witness that makes its GPU side and calibrates at its first check.
    pub fn new(config: WitnessConfig) -> Result<BandwidthWitness> {
        config.validate()?;
        Ok(BandwidthWitness { config, state: Mutex::new(State::default()) })
    }

    /// Its configuration.
    pub fn config(&self) -> &WitnessConfig {
        &self.config
    }

    /// The calibration in use, once a check has made one.
    pub fn calibration(&self) -> Option<WitnessCalibration> {
        self.lock().calibration
    }

    /// Device memory the witness holds (its control buffer), once made.
    pub fn device_bytes(&self) -> u64 {
        if self.lock().gpu.is_some() {
            CONTROL_BYTES
        } else {
            0
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while this lock is held; should it, the state is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the GPU side and calibrates where due, then reads a slice of every tracked
    /// `ModelWeights` allocation of at least [`SMALLEST_JUDGED_BYTES`], all within `deadline`.
    pub fn check(&self, tracker: &Tracker, deadline: Duration) -> WitnessOutcome {
        let started = Instant::now();
        let mut state = self.lock();
        let state = &mut *state;
        let mut outcome = WitnessOutcome::default();
        if let Err(error) = self.calibrate_if_due(state, tracker.device(), deadline) {
            // A sticky error or the deadline fails the check; without a GPU the residency check
            // itself fails, and the witness only says why it is idle.
            if matches!(error, Error::CudaSticky(_) | Error::Timeout(_)) {
                outcome.check_error = Some(error);
                return outcome;
            }
        }
        let (Some(gpu), Some(calibration)) = (&state.gpu, state.calibration) else {
            outcome.not_judging =
                Some(state.last_failure.clone().unwrap_or_else(|| "the witness is not calibrated yet".into()));
            return outcome;
        };
        outcome.calibration = Some(calibration);
        // Read, but judge nothing, where readings cannot separate the two memories.
        outcome.not_judging = calibration.cannot_judge();
        let weights = match tracker.snapshot_of(PurposeSet::of(&[Purpose::ModelWeights])) {
            Ok(weights) => weights,
            Err(error) => {
                outcome.check_error = Some(error);
                return outcome;
            }
        };
        state.cursors.retain(|id, _| weights.iter().any(|a| a.id == *id));
        let reader = TrackedReading { witness: gpu, tracker, min_bytes_read: self.config.min_bytes_read };
        let mut faster_control = 0.0f64;
        for allocation in &weights {
            if allocation.bytes < SMALLEST_JUDGED_BYTES {
                outcome.too_small += 1;
                continue;
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                outcome.check_error =
                    Some(Error::Timeout(format!("the bandwidth witness ran past its deadline of {deadline:?}")));
                break;
            }
            let cursor = state.cursors.get(&allocation.id).copied().unwrap_or(0);
            let (offset, slice) = self.slice(allocation, cursor);
            let judging = Judging { calibration: &calibration, not_judging: outcome.not_judging.as_deref() };
            match self.judge(&reader, judging, allocation, offset, slice, started, deadline) {
                Judged::Reading(reading, fastest_control) => {
                    faster_control = faster_control.max(fastest_control);
                    let next = offset + slice;
                    state.cursors.insert(allocation.id, if next >= allocation.bytes { 0 } else { next });
                    outcome.readings.push(reading);
                }
                Judged::Freed => {}
                Judged::Unreadable(reason) => {
                    outcome.unreadable.push(UnreadableWeights { allocation: allocation.clone(), reason })
                }
                Judged::CheckFailed(error) => {
                    outcome.check_error = Some(error);
                    break;
                }
            }
        }
        if faster_control > RECALIBRATE_ABOVE * calibration.device_memory.gb_per_second() {
            state.recalibrate = true;
        }
        outcome
    }

    /// Makes the GPU side and calibrates when there is no usable calibration (at the first check,
    /// then with backoff after failures) or a control showed the calibration was taken under load.
    fn calibrate_if_due(&self, state: &mut State, device: u32, deadline: Duration) -> Result<()> {
        let usable = state.calibration.is_some_and(|c| c.cannot_judge().is_none() || instrumented().is_some());
        if usable && !state.recalibrate {
            return Ok(());
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return Ok(());
        }
        let attempt = (|| {
            if state.gpu.is_none() {
                state.gpu = Some(ReadWitness::new(device)?);
            }
            let gpu = state.gpu.as_ref().expect("made above");
            gpu.calibrate(self.config.min_bytes_read, deadline)
        })();
        match attempt {
            Ok(made) => {
                crate::events::witness_calibrated(&made);
                let judging = made.cannot_judge().is_none() || instrumented().is_some();
                // A calibration that cannot judge may have been taken under load: keep trying,
                // and keep the better one meanwhile.
                let separation = |c: &WitnessCalibration| {
                    c.device_memory.gb_per_second() / c.host_memory.gb_per_second().max(f64::MIN_POSITIVE)
                };
                let better =
                    state.recalibrate || state.calibration.map_or(true, |known| separation(&made) > separation(&known));
                if better {
                    state.calibration = Some(made);
                }
                state.recalibrate = false;
                if judging {
                    state.failures = 0;
                    state.retry_at = None;
                    state.last_failure = None;
                } else {
                    self.back_off(state, made.cannot_judge().unwrap_or_default());
                }
                Ok(())
            }
            Err(error) => {
                self.back_off(state, format!("calibration failed: {error}"));
                Err(error)
            }
        }
    }

    fn back_off(&self, state: &mut State, why: String) {
        let wait = FIRST_CALIBRATION_RETRY.saturating_mul(1 << state.failures.min(16)).min(LONGEST_CALIBRATION_RETRY);
        state.failures = state.failures.saturating_add(1);
        state.retry_at = Some(Instant::now() + wait);
        state.last_failure = Some(format!("{why} (calibrating again in {wait:?})"));
    }

    /// One slice: a first reading, then confirming windows while it is slow.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        reader: &dyn Reading,
        judging: Judging<'_>,
        allocation: &Allocation,
        offset: u64,
        slice: u64,
        started: Instant,
        deadline: Duration,
    ) -> Judged {
        let mut reading = WitnessReading {
            id: allocation.id,
            description: allocation.description.clone(),
            kind: allocation.kind.to_string(),
            bytes: allocation.bytes,
            offset,
            slice_bytes: slice,
            gb_per_s: 0.0,
            control_gb_per_s: None,
            windows: 0,
            verdict: WitnessVerdict::NotJudged,
            reason: None,
        };
        let left = || deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        let first = match reader.measure(allocation, offset, slice, left()) {
            Ok(first) => first,
            Err(error) => return Judged::from_error(error, reading),
        };
        reading.gb_per_s = first.gb_per_second();
        let calibration = judging.calibration;
        if let Some(why) = judging.not_judging {
            reading.reason = Some(why.to_string());
            return Judged::Reading(reading, 0.0);
        }
        if reading.gb_per_s > calibration.host_ceiling_gb_per_second() {
            reading.verdict = WitnessVerdict::Resident;
            return Judged::Reading(reading, 0.0);
        }
        let (mut host_windows, mut fastest_control) = (0, 0.0f64);
        while reading.windows < self.config.confirm_windows {
            let window = match reader.measure_bracketed(allocation, offset, slice, left()) {
                Ok(window) => window,
                Err(error) => return Judged::from_error(error, reading),
            };
            reading.windows += 1;
            reading.gb_per_s = window.target.gb_per_second();
            let controls = [window.control_before.gb_per_second(), window.control_after.gb_per_second()];
            reading.control_gb_per_s = Some(controls[0].min(controls[1]));
            fastest_control = fastest_control.max(controls[0]).max(controls[1]);
            match judge_window(calibration, &window) {
                Window::Resident => {
                    reading.verdict = WitnessVerdict::Resident;
                    reading.reason = None;
                    return Judged::Reading(reading, fastest_control);
                }
                Window::HostBacked => host_windows += 1,
                Window::Busy => {}
            }
            if host_windows == HOST_CONFIRMATIONS {
                reading.verdict = WitnessVerdict::HostBacked;
                reading.reason = Some(format!(
                    "bandwidth: bytes {}..{} read at {:.1} GB/s in {} of {} windows where this GPU's own memory read at {:.0} GB/s or more (host memory reads at {:.1} GB/s at most)",
                    offset,
                    offset + slice,
                    reading.gb_per_s,
                    host_windows,
                    reading.windows,
                    reading.control_gb_per_s.unwrap_or(0.0),
                    calibration.host_memory.gb_per_second(),
                ));
                return Judged::Reading(reading, fastest_control);
            }
        }
        reading.reason = Some(format!(
            "gpu busy: in {} windows the slice read at {:.1} GB/s at the last, beside device memory at {:.0} GB/s; at least {:.0} GB/s of device memory is needed to tell host memory apart",
            reading.windows,
            reading.gb_per_s,
            reading.control_gb_per_s.unwrap_or(0.0),
            MIN_SEPARATION * calibration.host_memory.gb_per_second(),
        ));
        Judged::Reading(reading, fastest_control)
    }

    /// The slice of `allocation` to read next from `cursor`: about 1/full_pass_checks of it, at
    /// least SMALLEST_JUDGED_BYTES, ending inside it (the last slice of a pass is moved back
    /// rather than cut short, so that every slice is judged).
    fn slice(&self, allocation: &Allocation, cursor: u64) -> (u64, u64) {
        let share = allocation.bytes.div_ceil(u64::from(self.config.full_pass_checks)).next_multiple_of(16);
        let slice = share.max(SMALLEST_JUDGED_BYTES).min(allocation.bytes);
        let offset = cursor.min(allocation.bytes - slice);
        (offset, slice)
    }
}

/// What a check judges with.
#[derive(Clone, Copy)]
struct Judging<'a> {
    calibration: &'a WitnessCalibration,
    /// Why readings are taken but not judged, when so.
    not_judging: Option<&'a str>,
}

/// How one allocation's turn ended.
enum Judged {
    /// Read, with the fastest control of its windows (0 without windows).
    Reading(WitnessReading, f64),
    /// Freed since the listing.
    Freed,
    /// The GPU cannot read it.
    Unreadable(String),
    /// An error of the check itself.
    CheckFailed(Error),
}

impl Judged {
    fn from_error(error: Error, mut reading: WitnessReading) -> Judged {
        match error {
            Error::UnknownPointer(_) => Judged::Freed,
            Error::NotReadable(why) => Judged::Unreadable(why),
            error if error.is_device_wide() => Judged::CheckFailed(error),
            error => {
                reading.verdict = WitnessVerdict::NotJudged;
                reading.reason = Some(format!("error: {error}"));
                Judged::Reading(reading, 0.0)
            }
        }
    }
}

impl std::fmt::Display for WitnessCalibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device memory {:.0} GB/s, mapped host memory {:.1} GB/s, host ceiling {:.0} GB/s",
            self.device_memory.gb_per_second(),
            self.host_memory.gb_per_second(),
            self.host_ceiling_gb_per_second()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;
    use crate::purpose::AllocationKind;

    fn read(gb_per_s: f64) -> ReadBandwidth {
        let bytes = 1u64 << 30;
        let seconds = bytes as f64 / (gb_per_s * 1e9);
        ReadBandwidth { range_bytes: bytes, bytes_read: bytes, seconds, event_seconds: seconds }
    }

    fn window(before: f64, target: f64, after: f64) -> BracketedReading {
        BracketedReading { control_before: read(before), target: read(target), control_after: read(after) }
    }

    /// The H100's figures: HBM about 3 TB/s, mapped host memory about 51 GB/s.
    fn h100() -> WitnessCalibration {
        WitnessCalibration {
            device: 0,
            buffer_bytes: CONTROL_BYTES,
            device_memory: read(3000.0),
            host_memory: read(51.0),
        }
    }

    fn allocation(bytes: u64) -> Allocation {
        Allocation {
            id: 1,
            address: 0x1000,
            bytes,
            purpose: Purpose::ModelWeights,
            kind: AllocationKind::Device,
            device: 0,
            owned: true,
            recorded_at: std::time::SystemTime::now(),
            description: "w".into(),
        }
    }

    /// Readings played back in order; an exhausted script is a test bug.
    struct Script {
        first: RefCell<VecDeque<Result<ReadBandwidth>>>,
        windows: RefCell<VecDeque<Result<BracketedReading>>>,
    }

    impl Script {
        fn new(first: Result<ReadBandwidth>, windows: Vec<Result<BracketedReading>>) -> Script {
            Script { first: RefCell::new(VecDeque::from([first])), windows: RefCell::new(windows.into()) }
        }
    }

    impl Reading for Script {
        fn measure(&self, _: &Allocation, _: u64, _: u64, _: Duration) -> Result<ReadBandwidth> {
            self.first.borrow_mut().pop_front().expect("a first reading was scripted")
        }
        fn measure_bracketed(&self, _: &Allocation, _: u64, _: u64, _: Duration) -> Result<BracketedReading> {
            self.windows.borrow_mut().pop_front().expect("a window was scripted")
        }
    }

    fn judged(first: Result<ReadBandwidth>, windows: Vec<Result<BracketedReading>>) -> (Judged, usize) {
        let witness = BandwidthWitness::new(WitnessConfig::default()).unwrap();
        let script = Script::new(first, windows);
        let calibration = h100();
        let judging = Judging { calibration: &calibration, not_judging: None };
        let judged =
            witness.judge(&script, judging, &allocation(64 << 20), 0, 16 << 20, Instant::now(), Duration::from_secs(5));
        let left = script.windows.borrow().len();
        (judged, left)
    }

    fn verdict(judged: &Judged) -> (WitnessVerdict, u32) {
        match judged {
            Judged::Reading(reading, _) => (reading.verdict, reading.windows),
            _ => panic!("not a reading"),
        }
    }

    #[test]
    fn a_fast_first_reading_is_resident_without_a_window() {
        // 163 GB/s: device memory read while another kernel held most SMs — still faster than
        // any host memory.
        let (judged, _) = judged(Ok(read(163.0)), vec![]);
        assert_eq!(verdict(&judged), (WitnessVerdict::Resident, 0));
    }

    #[test]
    fn a_slow_reading_beside_slow_controls_is_not_judged_never_a_violation() {
        // Full-occupancy kernels: device memory itself reads at about 60 GB/s in every window.
        let busy = || Ok(window(61.0, 56.0, 63.0));
        let (judged, left) = judged(Ok(read(58.0)), vec![busy(), busy(), busy(), busy()]);
        assert_eq!(verdict(&judged), (WitnessVerdict::NotJudged, 4));
        assert_eq!(left, 0, "every confirming window was tried");
        let Judged::Reading(reading, _) = judged else { unreachable!() };
        assert!(reading.reason.as_deref().is_some_and(|r| r.starts_with("gpu busy")), "{:?}", reading.reason);
    }

    #[test]
    fn a_slow_reading_confirmed_twice_against_fast_controls_is_host_backed() {
        let host = || Ok(window(2900.0, 48.0, 2950.0));
        let (judged, left) = judged(Ok(read(49.0)), vec![host(), host(), host()]);
        assert_eq!(verdict(&judged), (WitnessVerdict::HostBacked, HOST_CONFIRMATIONS));
        assert_eq!(left, 1, "judging stops at the second confirmation");
    }

    #[test]
    fn one_unlucky_window_is_not_enough_and_a_fast_window_clears_the_slice() {
        // A burst of contention during the first reading and the first window, then the slice
        // reads at device speed.
        let (judged, _) =
            judged(Ok(read(40.0)), vec![Ok(window(900.0, 40.0, 950.0)), Ok(window(2800.0, 2700.0, 2850.0))]);
        assert_eq!(verdict(&judged), (WitnessVerdict::Resident, 2));
    }

    #[test]
    fn host_backed_needs_the_controls_to_separate_and_the_ratio() {
        let c = h100();
        // Controls fast enough, slice at a quarter of the slower one or less: host-backed.
        assert_eq!(judge_window(&c, &window(400.0, 50.0, 300.0)), Window::HostBacked);
        // Controls too slow to tell host memory apart (below 4 x 51 GB/s).
        assert_eq!(judge_window(&c, &window(190.0, 40.0, 3000.0)), Window::Busy);
        // The slice at more than a quarter of the slower control: not confirmed.
        assert_eq!(judge_window(&c, &window(300.0, 90.0, 3000.0)), Window::Busy);
        // Faster than host memory can be: resident whatever the controls say.
        assert_eq!(judge_window(&c, &window(3000.0, 103.0, 3000.0)), Window::Resident);
    }

    #[test]
    fn errors_of_one_allocation_are_not_the_checks() {
        let not_readable = Error::NotReadable("pageable host memory".into());
        assert!(matches!(judged(Err(not_readable), vec![]).0, Judged::Unreadable(_)));
        assert!(matches!(judged(Err(Error::UnknownPointer("freed".into())), vec![]).0, Judged::Freed));
        let (other, _) = judged(Err(Error::Cuda("cudaErrorLaunchOutOfResources".into())), vec![]);
        assert_eq!(verdict(&other), (WitnessVerdict::NotJudged, 0));
        for fatal in [Error::CudaSticky("illegal address".into()), Error::Timeout("late".into())] {
            assert!(matches!(judged(Err(fatal), vec![]).0, Judged::CheckFailed(_)));
        }
        // An error in a confirming window as well.
        let (late, _) = judged(Ok(read(40.0)), vec![Err(Error::Timeout("late".into()))]);
        assert!(matches!(late, Judged::CheckFailed(Error::Timeout(_))));
    }

    #[test]
    fn calibration_needs_separation() {
        assert!((h100().threshold_gb_per_second() - 391.2).abs() < 0.5, "{}", h100().threshold_gb_per_second());
        if instrumented().is_none() {
            assert_eq!(h100().cannot_judge(), None);
        }
        let close = WitnessCalibration { device_memory: read(150.0), ..h100() };
        assert!(close.cannot_judge().is_some_and(|why| why.contains("apart") || why.contains("tool")));
    }

    #[test]
    fn the_config_bounds_the_confirming_windows() {
        assert!(WitnessConfig::default().validate().is_ok());
        for windows in [0, HOST_CONFIRMATIONS - 1, 17] {
            let config = WitnessConfig { confirm_windows: windows, ..WitnessConfig::default() };
            assert_eq!(config.validate().unwrap_err().code(), "VRAM-E007", "{windows}");
        }
    }

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::from_micros(1500)), 2);
        assert_eq!(timeout_ms(Duration::from_secs(3)), 3000);
    }

    #[test]
    fn slices_rotate_over_the_allocation_and_never_fall_below_the_judged_size() {
        let witness = BandwidthWitness::new(WitnessConfig { full_pass_checks: 4, ..WitnessConfig::default() }).unwrap();
        assert_eq!(witness.slice(&allocation(512 << 20), 0), (0, 128 << 20));
        assert_eq!(witness.slice(&allocation(512 << 20), 384 << 20), (384 << 20, 128 << 20));
        // A quarter below the judged size: slices of the judged size, the last moved back.
        let two_mib = 2 << 20;
        assert_eq!(witness.slice(&allocation(two_mib), 0), (0, SMALLEST_JUDGED_BYTES));
        assert_eq!(
            witness.slice(&allocation(two_mib), 1_500_000),
            (two_mib - SMALLEST_JUDGED_BYTES, SMALLEST_JUDGED_BYTES)
        );
        // Not a multiple of 16: the share is rounded up to whole words, the slice stays inside.
        let odd = (3 << 20) + 5;
        let (offset, slice) = witness.slice(&allocation(odd), 0);
        assert_eq!((offset, slice % 16), (0, 0));
        assert!(slice >= SMALLEST_JUDGED_BYTES && slice <= odd);
    }
}
