//! How a slot manager behaves: its budget, pressure thresholds, anti-thrashing residency, retries,
//! clock and, optionally, the device that backs its slots with real memory.
use std::sync::Arc;
use std::time::Duration;

use crate::pressure::PressureThresholds;
use crate::purpose::AllocationKind;
use crate::tracker::Tracker;

use super::clock::{Clock, MonotonicClock};

/// Seed 000: 8 GiB for the 13 models.
pub const MODEL_BUDGET_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// Real device memory for slots: allocated through `tracker` as ModelWeights of `kind`.
#[derive(Debug, Clone)]
pub struct DeviceBacking {
    pub tracker: Tracker,
    pub kind: AllocationKind,
}

#[derive(Debug, Clone)]
pub struct SlotConfig {
    pub budget_bytes: u64,
    pub thresholds: PressureThresholds,
    /// L4: a slot loaded more recently than this is never evicted (no load/evict loops).
    pub min_residency: Duration,
    /// E4: retries of a device allocation that failed with out-of-memory, each after an eviction.
    pub max_oom_retries: u32,
    /// How many slots the workload has (13 for the embedders): the "n" of "Loaded Models: k/n".
    pub expected_slots: usize,
    pub clock: Arc<dyn Clock>,
    pub backing: Option<DeviceBacking>,
}

impl Default for SlotConfig {
    fn default() -> Self {
        SlotConfig {
            budget_bytes: MODEL_BUDGET_BYTES,
            thresholds: PressureThresholds::default(),
            min_residency: Duration::ZERO,
            max_oom_retries: 3,
            expected_slots: super::Embedder::COUNT,
            clock: Arc::new(MonotonicClock::default()),
            backing: None,
        }
    }
}
