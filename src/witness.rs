//! The bandwidth witness: residency proved by physics, not only by labels.
//!
//! `cudaPointerGetAttributes` says how memory was allocated, not where its bytes are now; NVIDIA's
//! system-memory fallback on Windows and WSL drivers keeps that answer "device". How fast the GPU
//! reads the bytes does not lie: on an H200 about 4.5 TB/s from its HBM, about 50 GB/s from host
//! memory over PCIe. [`calibrate`] measures both on the device at start; each health check then
//! times a read of every tracked `ModelWeights` allocation — a rotating slice of each, so that a
//! full pass over all weights takes [`WitnessConfig::full_pass_checks`] checks — and judges a
//! slice read below the geometric mean of the two calibrated figures to be host-backed: a
//! residency violation of its own reason, `bandwidth`, whatever the pointer's attributes say.
//!
//! Each reading covers at least [`WitnessConfig::min_bytes_read`] bytes (a small slice is read
//! several times over, with loads that re-fetch host memory every time, so that launch overhead
//! does not decide), and slices are never smaller than [`SMALLEST_JUDGED_BYTES`] (or the whole
//! allocation, when it is smaller: an allocation under that size is read but not judged).
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{check, Error, Result};
use crate::purpose::{Purpose, PurposeSet};
use crate::sys;
use crate::tracker::{Allocation, Tracker};

/// The smallest slice whose reading is judged: below it, loads of host memory can be served
/// faster than PCIe delivers them (measured on the H200: see BENCHMARKS.md).
pub const SMALLEST_JUDGED_BYTES: u64 = sys::VG_WITNESS_SMALLEST_JUDGED_BYTES as u64;

/// The least factor between the calibrated device and host figures for the witness to judge:
/// with less (an integrated GPU whose "device" memory is host memory, a Grace Hopper's coherent
/// link, a GPU so shared that calibration read its memory slowly) a reading cannot tell the two
/// apart, and the witness reads without judging.
pub const MIN_SEPARATION: f64 = 4.0;

/// How large the calibration buffers are (device and mapped pinned host memory, 64 MiB each).
pub const CALIBRATION_BYTES: u64 = 64 << 20;

/// One timed read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReadBandwidth {
    /// The 16-byte-aligned part of the range that was read.
    pub range_bytes: u64,
    /// `range_bytes` times the passes made.
    pub bytes_read: u64,
    /// The kernel's time between CUDA events.
    pub seconds: f64,
}

impl ReadBandwidth {
    fn from_raw(raw: &sys::vg_read_bandwidth) -> ReadBandwidth {
        ReadBandwidth { range_bytes: raw.range_bytes, bytes_read: raw.bytes_read, seconds: raw.seconds }
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

/// What one GPU reads its own memory and mapped host memory at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WitnessCalibration {
    /// The GPU's ordinal.
    pub device: u32,
    /// The size of each calibration buffer.
    pub buffer_bytes: u64,
    /// The best of three reads of device memory (`cudaMalloc`).
    pub device_memory: ReadBandwidth,
    /// The best of three reads of mapped pinned host memory (`cudaHostAlloc`).
    pub host_memory: ReadBandwidth,
}

impl WitnessCalibration {
    /// The geometric mean of the device and host figures: a slice read slower is host-backed.
    pub fn threshold_gb_per_second(&self) -> f64 {
        (self.device_memory.gb_per_second() * self.host_memory.gb_per_second()).sqrt()
    }

    /// Why readings cannot be judged on this GPU in this process, if they cannot: the two
    /// figures are less than [`MIN_SEPARATION`] apart, or a CUDA tool instruments the kernels, so
    /// that their times are the tool's, not the memory's (compute-sanitizer sets
    /// `NV_SANITIZER_INJECTION_PORT_BASE` in the process it runs; Nsight tools and other injected
    /// profilers `CUDA_INJECTION64_PATH`).
    pub fn cannot_judge(&self) -> Option<String> {
        for variable in ["NV_SANITIZER_INJECTION_PORT_BASE", "CUDA_INJECTION64_PATH"] {
            if std::env::var_os(variable).is_some() {
                return Some(format!(
                    "a CUDA tool instruments the kernels ({variable} is set), so their times are not the memory's"
                ));
            }
        }
        let separation = self.device_memory.gb_per_second() / self.host_memory.gb_per_second().max(f64::MIN_POSITIVE);
        (separation < MIN_SEPARATION).then(|| {
            format!(
                "device and host memory read only {separation:.1}x apart here (at least {MIN_SEPARATION}x is needed)"
            )
        })
    }
}

/// Calibrates the witness on `device`: [`CALIBRATION_BYTES`] of device memory and of mapped
/// pinned host memory, allocated for the call (untracked) and freed before it returns, each read
/// as [`Tracker::read_bandwidth`] reads, at least `min_bytes_read` bytes per reading.
pub fn calibrate(device: u32, min_bytes_read: u64, deadline: Duration) -> Result<WitnessCalibration> {
    let mut raw = sys::vg_witness_calibration::default();
    let timeout_ms = deadline.as_millis().clamp(1, u64::MAX as u128) as u64;
    // SAFETY: a valid out-pointer; the core allocates and frees its own buffers.
    check(unsafe {
        sys::vg_read_witness_calibrate(device as i32, CALIBRATION_BYTES, min_bytes_read, timeout_ms, &mut raw)
    })?;
    Ok(WitnessCalibration {
        device,
        buffer_bytes: raw.buffer_bytes,
        device_memory: ReadBandwidth::from_raw(&raw.device_memory),
        host_memory: ReadBandwidth::from_raw(&raw.host_memory),
    })
}

impl Tracker {
    /// Times a read of `[ptr + offset, ptr + offset + bytes)` of a tracked allocation on the
    /// tracker's GPU, at least `min_bytes_read` bytes (the range read several times over when it
    /// is smaller), waiting at most `deadline` (VRAM-E019 past it). The allocation cannot be freed
    /// while it is read. Unknown pointer VRAM-E004, a range past the allocation VRAM-E008, a range
    /// without an aligned 16-byte word VRAM-E003.
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // the core looks the pointer up among the tracked allocations
    pub fn read_bandwidth(
        &self,
        ptr: *const c_void,
        offset: u64,
        bytes: u64,
        min_bytes_read: u64,
        deadline: Duration,
    ) -> Result<ReadBandwidth> {
        let mut raw = sys::vg_read_bandwidth::default();
        let timeout_ms = deadline.as_millis().clamp(1, u64::MAX as u128) as u64;
        // SAFETY: a live tracker and a valid out-pointer; the core checks that the range lies in
        // a tracked allocation and pins it while the kernel reads it.
        check(unsafe {
            sys::vg_read_bandwidth_measure(self.inner().raw(), ptr, offset, bytes, min_bytes_read, timeout_ms, &mut raw)
        })?;
        Ok(ReadBandwidth::from_raw(&raw))
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
}

impl Default for WitnessConfig {
    fn default() -> Self {
        WitnessConfig { full_pass_checks: 4, min_bytes_read: 256 << 20 }
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
        Ok(())
    }
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
    /// What the GPU read it at.
    pub gb_per_s: f64,
    /// False when the slice is smaller than [`SMALLEST_JUDGED_BYTES`], or when the calibration
    /// cannot separate device from host memory ([`WitnessCalibration::cannot_judge`]): read, not
    /// judged.
    pub judged: bool,
    /// Judged host-backed: read below the calibrated threshold.
    pub host_backed: bool,
}

/// The witness of one tracker: its calibration, made at the first check, and each allocation's
/// place in its rotation.
#[derive(Debug)]
pub struct BandwidthWitness {
    config: WitnessConfig,
    calibration: OnceLock<WitnessCalibration>,
    /// Record id → where its next slice starts.
    cursors: Mutex<HashMap<u64, u64>>,
}

impl BandwidthWitness {
    /// A witness that calibrates at its first check.
    pub fn new(config: WitnessConfig) -> Result<BandwidthWitness> {
        config.validate()?;
        Ok(BandwidthWitness { config, calibration: OnceLock::new(), cursors: Mutex::new(HashMap::new()) })
    }

    /// Its configuration.
    pub fn config(&self) -> &WitnessConfig {
        &self.config
    }

    /// The calibration, once a check has made it.
    pub fn calibration(&self) -> Option<WitnessCalibration> {
        self.calibration.get().copied()
    }

    /// Calibrates on the tracker's GPU if not done yet, then reads a slice of every tracked
    /// `ModelWeights` allocation, all within `deadline`. An allocation freed meanwhile is skipped.
    pub fn check(&self, tracker: &Tracker, deadline: Duration) -> Result<(WitnessCalibration, Vec<WitnessReading>)> {
        let started = Instant::now();
        let calibration = match self.calibration.get() {
            Some(known) => *known,
            None => {
                let made = calibrate(tracker.device(), self.config.min_bytes_read, deadline)?;
                crate::events::witness_calibrated(&made);
                *self.calibration.get_or_init(|| made)
            }
        };
        let threshold = calibration.threshold_gb_per_second();
        let judging = calibration.cannot_judge().is_none();
        let weights = tracker.snapshot_of(PurposeSet::of(&[Purpose::ModelWeights]))?;
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.retain(|id, _| weights.iter().any(|a| a.id == *id));
        let mut readings = Vec::with_capacity(weights.len());
        for allocation in &weights {
            let (offset, slice) = self.slice(allocation, cursors.get(&allocation.id).copied().unwrap_or(0));
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout(format!("the bandwidth witness ran past its deadline of {deadline:?}")));
            }
            let read = match tracker.read_bandwidth(
                allocation.address as *const c_void,
                offset,
                slice,
                self.config.min_bytes_read,
                left,
            ) {
                Ok(read) => read,
                Err(Error::UnknownPointer(_)) => continue, // freed since the listing
                Err(error) => return Err(error),
            };
            let next = offset + slice;
            cursors.insert(allocation.id, if next >= allocation.bytes { 0 } else { next });
            let judged = judging && slice >= SMALLEST_JUDGED_BYTES;
            readings.push(WitnessReading {
                id: allocation.id,
                description: allocation.description.clone(),
                kind: allocation.kind.to_string(),
                bytes: allocation.bytes,
                offset,
                slice_bytes: slice,
                gb_per_s: read.gb_per_second(),
                judged,
                host_backed: judged && read.gb_per_second() < threshold,
            });
        }
        Ok((calibration, readings))
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

impl std::fmt::Display for WitnessCalibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device memory {:.0} GB/s, mapped host memory {:.1} GB/s, threshold {:.0} GB/s",
            self.device_memory.gb_per_second(),
            self.host_memory.gb_per_second(),
            self.threshold_gb_per_second()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purpose::AllocationKind;

    fn read(gb_per_s: f64) -> ReadBandwidth {
        ReadBandwidth { range_bytes: 1 << 30, bytes_read: 1 << 30, seconds: (1u64 << 30) as f64 / (gb_per_s * 1e9) }
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

    #[test]
    fn threshold_is_the_geometric_mean_and_needs_separation() {
        let h200 = WitnessCalibration {
            device: 0,
            buffer_bytes: 64 << 20,
            device_memory: read(4500.0),
            host_memory: read(50.0),
        };
        assert!((h200.threshold_gb_per_second() - 474.3).abs() < 0.5, "{}", h200.threshold_gb_per_second());
        let tools = ["NV_SANITIZER_INJECTION_PORT_BASE", "CUDA_INJECTION64_PATH"];
        if tools.iter().all(|v| std::env::var_os(v).is_none()) {
            assert_eq!(h200.cannot_judge(), None);
        }
        let close = WitnessCalibration { device_memory: read(150.0), ..h200 };
        assert!(close.cannot_judge().is_some_and(|why| why.contains("apart") || why.contains("tool")));
    }

    #[test]
    fn slices_rotate_over_the_allocation_and_never_fall_below_the_judged_size() {
        let witness = BandwidthWitness::new(WitnessConfig { full_pass_checks: 4, ..WitnessConfig::default() }).unwrap();
        assert_eq!(witness.slice(&allocation(512 << 20), 0), (0, 128 << 20));
        assert_eq!(witness.slice(&allocation(512 << 20), 384 << 20), (384 << 20, 128 << 20));
        // Smaller than the judged size: the whole allocation, read but not judged.
        assert_eq!(witness.slice(&allocation(4096), 0), (0, 4096));
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
