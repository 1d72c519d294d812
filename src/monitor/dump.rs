//! O2: the monitor's state as JSON, for an operator reading it after an incident: per device the
//! latest reading, the history, and what the attached tracker holds, by allocation and purpose.
use serde_json::{json, Map, Value};

use super::gpu_monitor::GpuMonitor;
use super::lock;
use super::snapshot::unix_seconds;
use crate::purpose::Purpose;
use crate::tracker::{Allocation, Tracker};
use crate::usage::Usage;

impl GpuMonitor {
    /// Everything the monitor knows, for every device it has checked or has a tracker for.
    pub fn dump_json(&self) -> Value {
        let mut ids: Vec<u32> = self.devices();
        ids.extend(lock(&self.trackers).keys().copied());
        ids.sort_unstable();
        ids.dedup();
        let devices: Vec<Value> = ids.into_iter().map(|device| self.device_json(device)).collect();
        json!({
            "generated_at": unix_seconds(std::time::SystemTime::now()),
            "pid": std::process::id(),
            "thresholds": self.thresholds,
            "checks_run": self.checks_run(),
            "checks_failed": self.checks_failed(),
            "callback_panics": self.callback_panics(),
            "ooms_seen": self.ooms_seen(),
            "models_unloaded": self.models_unloaded(),
            "last_error": self.last_error().map(|e| e.to_json()),
            "unloads": to_value(&self.unloads()),
            "devices": devices,
        })
    }

    fn device_json(&self, device: u32) -> Value {
        json!({
            "device": device,
            "latest": to_value(&self.latest(device)),
            "history": to_value(&self.history(device)),
            "tracker": self.tracker(device).map(|tracker| tracker_json(&tracker)),
        })
    }
}

/// Our own types always serialise; Null marks the impossible failure rather than panicking.
fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn tracker_json(tracker: &Tracker) -> Value {
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
