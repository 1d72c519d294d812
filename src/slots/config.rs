//! How a slot manager behaves: its budget, pressure thresholds, anti-thrashing residency, retries,
//! clock and, optionally, the device that backs its slots with real memory.
use std::sync::Arc;
use std::time::Duration;

use crate::loader::LoaderConfig;
use crate::pressure::PressureThresholds;
use crate::purpose::AllocationKind;
use crate::tracker::Tracker;
use crate::weights::WeightLimits;

use super::clock::{Clock, MonotonicClock};

/// The default of [`SlotConfig::unload_min_residency`]: 30 s, six checks of the GPU monitor at
/// its default 5 s interval.
pub const DEFAULT_UNLOAD_MIN_RESIDENCY: Duration = Duration::from_secs(30);

/// Real device memory for slots: allocated through `tracker` as ModelWeights of `kind`.
#[derive(Debug, Clone)]
pub struct DeviceBacking {
    /// The tracker that allocates and records the slots' memory.
    pub tracker: Tracker,
    /// The allocation kind of each slot (`Device` or `Pool` for resident weights).
    pub kind: AllocationKind,
}

/// How a slot manager behaves. `Default` assumes no application: no budget of its own
/// (`budget_bytes` is `u64::MAX`, so that only the device refuses a load) and no expected number
/// of slots (0: reports say "Loaded Models: k/k"). Set `budget_bytes`, or start from a preset's
/// [`slot_config`](super::presets::Preset::slot_config), for a workload with a budget.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    /// The bytes all slots together may hold; `u64::MAX` by default (no budget).
    pub budget_bytes: u64,
    /// The pressure thresholds of the manager's budget.
    pub thresholds: PressureThresholds,
    /// L4: a slot loaded more recently than this is never evicted (no load/evict loops). 0 by
    /// default: a load the caller asks for may evict any idle slot.
    pub min_residency: Duration,
    /// L4 against the GPU monitor: a slot loaded more recently than this (or than
    /// `min_residency`, whichever is longer) is never unloaded at Critical, so that a device held
    /// Critical by other processes cannot make the worker reload and unload its models at every
    /// check. [`DEFAULT_UNLOAD_MIN_RESIDENCY`] (30 s) by default; `Duration::ZERO` turns it off.
    pub unload_min_residency: Duration,
    /// ERR4: retries of a device allocation that failed with out-of-memory, each after an eviction.
    pub max_oom_retries: u32,
    /// How many slots the workload has (13 for seed 000's embedders): the "n" of "Loaded Models:
    /// k/n". 0 by default: none announced, the loaded count stands in.
    pub expected_slots: usize,
    /// The time source of idle times and minimum residency ([`MonotonicClock`] by default).
    pub clock: Arc<dyn Clock>,
    /// Real device memory for the slots; `None` (the default) keeps the books only, with no memory.
    pub backing: Option<DeviceBacking>,
    /// The weights loader made on the first [`load_weights`](super::ModelSlotManager::load_weights):
    /// its pinned staging (128 MiB by default) and readers.
    pub loader: LoaderConfig,
    /// How much of a weights file's header is believed (see [`WeightLimits`]).
    pub weight_limits: WeightLimits,
    /// How long an eviction or unload of `Device` slots waits for the driver's free memory to
    /// rise by their bytes (the receipt, [`super::receipts`]) before it counts them unreclaimed
    /// and returns: 1 s by default; zero takes no receipts.
    pub eviction_receipt_deadline: Duration,
}

impl Default for SlotConfig {
    fn default() -> Self {
        SlotConfig {
            budget_bytes: u64::MAX,
            thresholds: PressureThresholds::default(),
            min_residency: Duration::ZERO,
            unload_min_residency: DEFAULT_UNLOAD_MIN_RESIDENCY,
            max_oom_retries: 3,
            expected_slots: 0,
            clock: Arc::new(MonotonicClock::default()),
            backing: None,
            loader: LoaderConfig::default(),
            weight_limits: WeightLimits::default(),
            eviction_receipt_deadline: super::receipts::DEFAULT_RECEIPT_DEADLINE,
        }
    }
}
