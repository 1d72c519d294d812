//! N1: structured events with the narration fields of seeds 001/002 — actor, action, target,
//! device, human, and error_kind for failures (at error level). They go to `tracing`, so the
//! binary's subscriber decides the format (N2: JSON with --json-logs) and tests capture them (N3).
use crate::format::bytes_human;
use crate::purpose::{AllocationKind, Purpose};

/// The actor for memory events.
pub const ACTOR_VRAM_RESIDENCY: &str = "vram-residency";
/// The actor for the worker's health.
pub const ACTOR_WORKER: &str = "vramguard";

fn gpu(device: u32) -> String {
    format!("GPU{device}")
}

pub(crate) fn vram_allocate(device: u32, bytes: u64, purpose: Purpose, kind: AllocationKind) {
    let gpu = gpu(device);
    tracing::info!(
        actor = ACTOR_VRAM_RESIDENCY, action = "vram_allocate", target = %gpu, device = %gpu,
        bytes, purpose = %purpose, kind = %kind,
        human = %format!("Allocated {} on {gpu} for {purpose} ({kind})", bytes_human(bytes)),
    );
}

pub(crate) fn vram_deallocate(device: u32, bytes: u64, remaining: u64) {
    let gpu = gpu(device);
    tracing::info!(
        actor = ACTOR_VRAM_RESIDENCY, action = "vram_deallocate", target = %gpu, device = %gpu,
        bytes, remaining,
        human = %format!("Deallocated {} on {gpu} ({} still in use)", bytes_human(bytes), bytes_human(remaining)),
    );
}

pub(crate) fn vram_oom(device: u32, requested: u64, available: Option<u64>) {
    let gpu = gpu(device);
    let available_text = available.map_or_else(|| "unknown".to_string(), bytes_human);
    tracing::error!(
        actor = ACTOR_VRAM_RESIDENCY, action = "vram_allocate", target = %gpu, device = %gpu,
        error_kind = "vram_oom", requested, available = available.unwrap_or(0),
        human = %format!("VRAM allocation failed on {gpu}: requested {}, only {available_text} available", bytes_human(requested)),
    );
}

pub(crate) fn verify_passed(device: u32, checked: u64) {
    let gpu = gpu(device);
    tracing::info!(
        actor = ACTOR_VRAM_RESIDENCY, action = "verify", target = %gpu, device = %gpu, checked,
        human = %format!("VRAM residency verified on {gpu}: all {checked} allocations resident"),
    );
}

pub(crate) fn verify_failed(device: u32, violations: usize, first: &str) {
    let gpu = gpu(device);
    tracing::error!(
        actor = ACTOR_VRAM_RESIDENCY, action = "verify", target = %gpu, device = %gpu,
        error_kind = "residency_violation", violations,
        human = %format!("CRITICAL: VRAM residency violated on {gpu}: RAM fallback or UMA detected ({violations} allocation(s), first: {first})"),
    );
}

pub(crate) fn integrity_failed(device: u32, slots: usize, first: &str) {
    let gpu = gpu(device);
    tracing::error!(
        actor = ACTOR_VRAM_RESIDENCY, action = "verify", target = %gpu, device = %gpu,
        error_kind = "integrity_violation", slots,
        human = %format!("CRITICAL: model weights changed on {gpu} since they were loaded ({slots} slot(s), first: {first})"),
    );
}

pub(crate) fn witness_calibrated(calibration: &crate::witness::WitnessCalibration) {
    let gpu = gpu(calibration.device);
    tracing::info!(
        actor = ACTOR_VRAM_RESIDENCY, action = "calibrate", target = %gpu, device = %gpu,
        device_gb_per_s = calibration.device_memory.gb_per_second(),
        host_gb_per_s = calibration.host_memory.gb_per_second(),
        threshold_gb_per_s = calibration.threshold_gb_per_second(),
        human = %format!("bandwidth witness calibrated on {gpu}: {calibration}"),
    );
    if let Some(why) = calibration.cannot_judge() {
        tracing::warn!(
            actor = ACTOR_VRAM_RESIDENCY, action = "calibrate", target = %gpu, device = %gpu,
            human = %format!("the bandwidth witness on {gpu} reads without judging: {why}"),
        );
    }
}

pub(crate) fn bandwidth_violation(device: u32, allocations: usize, first: &str) {
    let gpu = gpu(device);
    tracing::error!(
        actor = ACTOR_VRAM_RESIDENCY, action = "verify", target = %gpu, device = %gpu,
        error_kind = "residency_violation", reason = "bandwidth", allocations,
        human = %format!("CRITICAL: model weights on {gpu} read at host-memory speed ({allocations} allocation(s), first: {first})"),
    );
}

pub(crate) fn leak_suspected(device: u32, suspicion: &crate::health::ledger::LeakSuspicion) {
    let gpu = gpu(device);
    tracing::warn!(
        actor = ACTOR_VRAM_RESIDENCY, action = "leak_suspected", target = %gpu, device = %gpu,
        source = %suspicion.source, grew_bytes = suspicion.grew_bytes, over_checks = suspicion.over_checks,
        human = %format!(
            "leak suspected on {gpu}: {} grew by {} over {} checks without ever falling",
            suspicion.source, bytes_human(suspicion.grew_bytes), suspicion.over_checks
        ),
    );
}

pub(crate) fn verify_error(device: u32, error: &crate::Error) {
    let gpu = gpu(device);
    tracing::error!(
        actor = ACTOR_VRAM_RESIDENCY, action = "verify", target = %gpu, device = %gpu,
        error_kind = error.kind(), code = error.code(),
        human = %format!("VRAM residency check could not run on {gpu}: {error}"),
    );
}

/// The process met a CUDA error that corrupts its context: liveness ends here.
pub(crate) fn health_fatal(device: u32, error: &crate::Error) {
    let gpu = gpu(device);
    tracing::error!(
        actor = ACTOR_WORKER, action = "health_status", target = "worker", device = %gpu, status = "dead",
        error_kind = error.kind(), code = error.code(),
        human = %format!("Worker's CUDA context on {gpu} is corrupt; /health/live now fails so that it is restarted: {error}"),
    );
}

pub(crate) fn health_status(healthy: bool, reason: &str) {
    if healthy {
        tracing::info!(
            actor = ACTOR_WORKER, action = "health_status", target = "worker", status = "healthy",
            human = %format!("Worker marked healthy: {reason}"),
        );
    } else {
        tracing::error!(
            actor = ACTOR_WORKER, action = "health_status", target = "worker", status = "unhealthy",
            error_kind = "unhealthy",
            human = %format!("Worker marked unhealthy due to {reason}"),
        );
    }
}

pub(crate) fn eviction_receipt(device: u32, receipt: &crate::slots::receipts::EvictionReceipt) {
    let gpu = gpu(device);
    let (bytes, rose, waited_ms) = (receipt.bytes, receipt.free_rose_by, receipt.waited.as_secs_f64() * 1e3);
    if receipt.reclaimed {
        tracing::debug!(
            actor = ACTOR_VRAM_RESIDENCY, action = "vram_receipt", target = %gpu, bytes, free_rose_by = rose, waited_ms,
            human = %format!("The driver took back {} evicted from {gpu} ({waited_ms:.2} ms)", bytes_human(bytes)),
        );
    } else {
        tracing::warn!(
            actor = ACTOR_VRAM_RESIDENCY, action = "vram_receipt", target = %gpu, bytes, free_rose_by = rose, waited_ms,
            error_kind = "eviction_unreclaimed",
            human = %format!(
                "{gpu}'s free memory rose by {} of the {} evicted within {waited_ms:.0} ms: the rest is counted unreclaimed",
                bytes_human(rose), bytes_human(bytes)
            ),
        );
    }
}

pub(crate) fn slot_evicted(device: Option<u32>, slot: &str, bytes: u64, reason: &str) {
    let target = device.map_or_else(|| "budget".to_string(), gpu);
    tracing::info!(
        actor = ACTOR_VRAM_RESIDENCY, action = "vram_evict", target = %target, slot, bytes, reason,
        human = %format!("Evicted model slot {slot} ({}) from {target}: {reason}", bytes_human(bytes)),
    );
}
