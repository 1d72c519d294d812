//! O1: one reading of one device, as the monitor keeps it in history and writes it to dumps.
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::level::{AlertLevel, AlertThresholds};
use crate::device::MemoryInfo;
use crate::pressure::utilization_percent;

/// A device's memory at one moment: the driver's figures, what vramguard tracks, and the level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuMemoryInfo {
    pub device: u32,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// `total_bytes - free_bytes`: everything on the device, this process's or not.
    pub used_bytes: u64,
    /// What the device's attached tracker holds; 0 when no tracker is attached.
    pub tracked_bytes: u64,
    /// `used / total * 100` (100 when the total is 0).
    pub utilization_percent: f64,
    /// Decided exactly from the byte counts, not from the rounded percentage.
    pub level: AlertLevel,
    /// Serialised as Unix seconds (a float), which every log tool reads.
    #[serde(serialize_with = "serialize_unix_seconds")]
    pub timestamp: SystemTime,
}

impl GpuMemoryInfo {
    /// A snapshot of `memory` on `device`, classified against `thresholds`. A source that
    /// reports more free than total memory reads as nothing used, never as an underflow.
    pub fn new(
        device: u32,
        memory: MemoryInfo,
        tracked_bytes: u64,
        thresholds: &AlertThresholds,
        timestamp: SystemTime,
    ) -> Self {
        let used_bytes = memory.total_bytes.saturating_sub(memory.free_bytes);
        GpuMemoryInfo {
            device,
            free_bytes: memory.free_bytes,
            total_bytes: memory.total_bytes,
            used_bytes,
            tracked_bytes,
            utilization_percent: utilization_percent(used_bytes, memory.total_bytes),
            level: thresholds.level_of(used_bytes, memory.total_bytes),
            timestamp,
        }
    }
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

pub(crate) fn serialize_unix_seconds<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(unix_seconds(*time))
}
