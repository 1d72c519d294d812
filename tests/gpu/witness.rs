//! Issue 16, parts 1 and 2 on a real GPU: the bandwidth witness judges memory by how fast the GPU
//! reads it — mapped host memory adopted as model weights is caught by the reading alone — and a
//! sampled sweep queries foreign memory every time and a rotating part of vramguard's own.
use std::ffi::c_void;
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use vramguard::health::{HealthConfig, HealthMonitor, HealthSource};
use vramguard::witness::{BandwidthWitness, WitnessConfig, WitnessVerdict, SMALLEST_JUDGED_BYTES};
use vramguard::{AllocationKind, Device, Purpose, PurposeSet, SweepSample};

use crate::ensure;
use crate::gpu_gate::{gpu, without_gpu};

const MIB: u64 = 1 << 20;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("witness::mapped_host_memory_adopted_as_weights_is_judged_by_bandwidth", mapped_host_judged_by_bandwidth),
        gpu("witness::rotating_slices_cover_each_allocation_and_reach_health_and_metrics", rotating_slices),
        gpu("residency::sampled_sweep_queries_foreign_memory_always_and_own_in_rotation", sampled_sweep),
        without_gpu("no_device::witness_calibration_is_no_device", calibration_without_gpu),
    ]
}

extern "C" {
    fn cudaHostAlloc(ptr: *mut *mut c_void, bytes: usize, flags: u32) -> i32;
    fn cudaFreeHost(ptr: *mut c_void) -> i32;
}
const HOST_ALLOC_PORTABLE: u32 = 1;
const HOST_ALLOC_MAPPED: u32 = 2;

/// Mapped pinned host memory made outside vramguard, freed on drop.
pub(crate) struct MappedHost(pub(crate) *mut c_void);

impl MappedHost {
    pub(crate) fn new(bytes: u64) -> Result<MappedHost, Failed> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the memory is freed by Drop.
        let status = unsafe { cudaHostAlloc(&mut ptr, bytes as usize, HOST_ALLOC_PORTABLE | HOST_ALLOC_MAPPED) };
        ensure!(status == 0, "cudaHostAlloc failed with {status}");
        // SAFETY: `bytes` bytes of host memory were just allocated at ptr.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0x5A, bytes as usize) };
        Ok(MappedHost(ptr))
    }
}

impl Drop for MappedHost {
    fn drop(&mut self) {
        // SAFETY: allocated by cudaHostAlloc and freed once.
        unsafe { cudaFreeHost(self.0) };
    }
}

fn mapped_host_judged_by_bandwidth() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let host = MappedHost::new(64 * MIB)?;
    tracker.adopt(host.0, 64 * MIB, Purpose::ModelWeights, "adopted host weights")?;
    let device_weights = tracker.allocate(256 * MIB, Purpose::ModelWeights, "device weights")?;
    let witness = BandwidthWitness::new(WitnessConfig { full_pass_checks: 1, ..WitnessConfig::default() })?;
    // The witness alone: no pointer attribute decides these verdicts.
    let outcome = witness.check(&tracker, Duration::from_secs(30));
    ensure!(outcome.check_error.is_none() && outcome.not_judging.is_none(), "{outcome:?}");
    let calibration = outcome.calibration.ok_or("no calibration")?;
    println!("[ vramguard ] witness calibration: {calibration}");
    let readings = &outcome.readings;
    let host_reading = readings.iter().find(|r| r.description == "adopted host weights").ok_or("no host reading")?;
    let device_reading = readings.iter().find(|r| r.description == "device weights").ok_or("no device reading")?;
    println!(
        "[ vramguard ] adopted mapped host weights read at {:.1} GB/s ({} confirming windows, control {:?} GB/s), device weights at {:.0} GB/s (host ceiling {:.0})",
        host_reading.gb_per_s,
        host_reading.windows,
        host_reading.control_gb_per_s,
        device_reading.gb_per_s,
        calibration.host_ceiling_gb_per_second()
    );
    ensure!(host_reading.verdict == WitnessVerdict::HostBacked, "{host_reading:?}");
    ensure!(device_reading.verdict == WitnessVerdict::Resident, "{device_reading:?}");
    ensure!(host_reading.slice_bytes == 64 * MIB && device_reading.slice_bytes == 256 * MIB, "{readings:?}");
    // Through the health monitor: the same allocation is a residency violation of reason
    // `bandwidth`, beside the attribute sweep's own finding.
    let monitor = HealthMonitor::new(tracker.clone(), HealthConfig::default())?;
    let report = monitor.check_now();
    let bandwidth: Vec<_> = report.violations.iter().filter(|v| v.reason.starts_with("bandwidth")).collect();
    ensure!(
        bandwidth.len() == 1 && bandwidth[0].description == "adopted host weights",
        "violations: {:?}",
        report.violations
    );
    ensure!(bandwidth[0].error_kind == "residency_violation", "{:?}", bandwidth[0]);
    ensure!(report.status == vramguard::health::HealthStatus::Unhealthy, "{:?}", report.status);
    let metrics = vramguard::server::encode_metrics(&monitor.report())?;
    ensure!(metrics.contains("vramguard_bandwidth_violations 1"), "{metrics}");
    tracker.forget(host.0)?;
    drop(device_weights);
    let report = monitor.check_now();
    ensure!(report.violations.is_empty(), "{:?}", report.violations);
    Ok(())
}

fn rotating_slices() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let weights = tracker.allocate(512 * MIB, Purpose::ModelWeights, "slot A")?;
    let small = tracker.allocate(SMALLEST_JUDGED_BYTES / 2, Purpose::ModelWeights, "tiny slot")?;
    let config = HealthConfig {
        witness: Some(WitnessConfig { full_pass_checks: 4, ..WitnessConfig::default() }),
        ..HealthConfig::default()
    };
    let monitor = HealthMonitor::new(tracker.clone(), config)?;
    let mut offsets = Vec::new();
    for _ in 0..5 {
        let report = monitor.check_now();
        ensure!(report.violations.is_empty() && report.last_error.is_none(), "{report:?}");
        let witness = report.witness.as_ref().ok_or("no witness in the report")?;
        let a = witness.readings.iter().find(|r| r.description == "slot A").ok_or("no reading of slot A")?;
        ensure!(a.slice_bytes == 128 * MIB && a.verdict == WitnessVerdict::Resident, "{a:?}");
        ensure!(a.gb_per_s > witness.host_ceiling_gb_per_s, "{a:?} vs {}", witness.host_ceiling_gb_per_s);
        offsets.push(a.offset);
        // Below the smallest judged size: not read at all, counted.
        ensure!(witness.readings.iter().all(|r| r.description != "tiny slot") && witness.too_small == 1, "{witness:?}");
    }
    ensure!(offsets == [0, 128 * MIB, 256 * MIB, 384 * MIB, 0], "slices at {offsets:?}");
    let json = serde_json::to_value(monitor.report())?;
    ensure!(json["witness"]["readings"].as_array().map(Vec::len) == Some(1), "{json}");
    let metrics = vramguard::server::encode_metrics(&monitor.report())?;
    ensure!(metrics.contains("vramguard_witness_readings{verdict=\"resident\"} 1"), "{metrics}");
    println!(
        "[ vramguard ] witness over 4 checks: slot A slices at {offsets:?}, last read {:.0} GB/s",
        monitor.report().witness.map(|w| w.readings[0].gb_per_s).unwrap_or(0.0)
    );
    drop((weights, small));
    Ok(())
}

fn sampled_sweep() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let mut own = Vec::new();
    for i in 0..5000 {
        own.push(tracker.allocate_kind(4096, Purpose::KVCache, AllocationKind::Pool, &format!("kv {i}"))?);
    }
    let managed = tracker.allocate_kind(MIB, Purpose::IntermediateBuffers, AllocationKind::Managed, "managed")?;
    let host = MappedHost::new(MIB)?;
    tracker.adopt(host.0, MIB, Purpose::ModelWeights, "adopted host")?;
    let full = tracker.verify(PurposeSet::ALL)?;
    ensure!(full.checked == 5002 && full.not_queried == 0 && full.violations.len() == 2, "{full:?}");
    let mut seen_not_queried = 0;
    for rotation in 0..3 {
        let sampled = tracker.verify_sampled(PurposeSet::ALL, SweepSample { own_per_sweep: 100, rotation })?;
        ensure!(sampled.violations.len() == 2, "rotation {rotation}: {:?}", sampled.violations);
        ensure!(sampled.checked + sampled.not_queried == 5002, "{sampled:?}");
        ensure!(sampled.checked <= 102 + 2, "rotation {rotation} queried {}", sampled.checked);
        seen_not_queried = sampled.not_queried;
    }
    println!(
        "[ vramguard ] sampled sweep of 5,002 allocations: {} queried (the managed and adopted ones among them), {seen_not_queried} own classified at allocation",
        5002 - seen_not_queried
    );
    tracker.forget(host.0)?;
    drop((own, managed));
    Ok(())
}

fn calibration_without_gpu() -> Result<(), Failed> {
    match vramguard::witness::ReadWitness::new(0) {
        Err(error @ vramguard::Error::NoDevice(_)) => {
            ensure!(error.code() == "VRAM-E001", "{error}");
            Ok(())
        }
        other => Err(format!("expected VRAM-E001 without a GPU, got {other:?}").into()),
    }
}
