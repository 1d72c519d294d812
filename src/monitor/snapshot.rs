//! O1, O2: what the monitor reads and keeps. One reading of one device ([`GpuMemoryInfo`]), where
//! readings come from ([`MemorySource`]), the bounded history they are kept in, and how what was
//! seen reads as JSON in a dump: per device the latest reading, the history, and what the attached
//! tracker holds, by allocation and purpose.
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::device::{device_count, Device, MemoryInfo};
use crate::error::Result;
use crate::pressure::{utilization_percent, AlertLevel, AlertThresholds};
use crate::purpose::Purpose;
use crate::tracker::{Allocation, Tracker};
use crate::usage::Usage;

/// A device's memory at one moment: the driver's figures, what vramguard tracks, and the level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuMemoryInfo {
    /// The device's CUDA ordinal.
    pub device: u32,
    /// Free memory as the driver reports it.
    pub free_bytes: u64,
    /// The device's whole memory.
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

/// Free and total memory per device. A trait, so that the monitor's policy (levels, alerts,
/// history, unloading) can be tested with scripted figures; the real source asks the driver.
pub trait MemorySource: Send + Sync {
    /// The memory of one device right now.
    fn read(&self, device: u32) -> Result<MemoryInfo>;
    /// The devices to watch.
    fn devices(&self) -> Result<Vec<u32>>;
}

/// The driver's figures (`cudaMemGetInfo`) for every visible GPU. Without a GPU every call is
/// [`crate::Error::NoDevice`] (VRAM-E001): the monitor never reports a fake device.
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaMemorySource;

impl MemorySource for CudaMemorySource {
    fn read(&self, device: u32) -> Result<MemoryInfo> {
        Device::new(device)?.memory_info()
    }

    fn devices(&self) -> Result<Vec<u32>> {
        Ok((0..device_count()?).collect())
    }
}

/// A bounded ring of past entries: the monitor keeps the last N readings per device (and
/// requests to the unloader), so that its memory use does not grow with uptime.
pub(super) struct History<T> {
    entries: VecDeque<T>,
    capacity: usize,
}

impl<T: Clone> History<T> {
    /// `capacity` is validated to be at least 1 by the monitor's config.
    pub(super) fn new(capacity: usize) -> History<T> {
        History { entries: VecDeque::with_capacity(capacity.min(1024)), capacity: capacity.max(1) }
    }

    /// Appends `entry`, dropping the oldest when full.
    pub(super) fn push(&mut self, entry: T) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Copies, oldest first.
    pub(super) fn to_vec(&self) -> Vec<T> {
        self.entries.iter().cloned().collect()
    }

    pub(super) fn last(&self) -> Option<&T> {
        self.entries.back()
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

/// Our own types always serialise; Null marks the impossible failure rather than panicking.
pub(super) fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A tracker in a dump: its usage and every live allocation.
pub(super) fn tracker_json(tracker: &Tracker) -> Value {
    let allocations = match tracker.snapshot() {
        Ok(list) => Value::Array(list.iter().map(allocation_json).collect()),
        Err(error) => json!({ "error": error.to_json() }),
    };
    json!({ "usage": usage_json(&tracker.usage()), "allocations": allocations })
}

fn allocation_json(allocation: &Allocation) -> Value {
    json!({
        "id": allocation.id,
        "address": format!("{:#x}", allocation.address),
        "bytes": allocation.bytes,
        "purpose": allocation.purpose,
        "kind": allocation.kind,
        "device": allocation.device,
        "owned": allocation.owned,
        "recorded_at": unix_seconds(allocation.recorded_at),
        "description": allocation.description,
    })
}

fn usage_json(usage: &Usage) -> Value {
    let by_purpose: Map<String, Value> = Purpose::ALL
        .iter()
        .map(|&purpose| {
            let figures = usage.purpose(purpose);
            let entry = json!({ "bytes": figures.bytes, "count": figures.count, "peak_bytes": figures.peak_bytes });
            (purpose.to_string(), entry)
        })
        .collect();
    json!({
        "total_bytes": usage.total_bytes,
        "allocation_count": usage.allocation_count,
        "peak_total_bytes": usage.peak_total_bytes,
        "lifetime_allocations": usage.lifetime_allocations,
        "unknown_deallocations": usage.unknown_deallocations,
        "by_purpose": by_purpose,
    })
}
