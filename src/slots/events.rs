//! What the slot manager tells its callers: evictions, load outcomes, counters.
use serde::Serialize;

/// Why a slot was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictionReason {
    /// L2: the load would have crossed Critical pressure or the budget.
    Pressure,
    /// ERR4: the device itself ran out of memory.
    DeviceOutOfMemory,
    /// An unloader (the GPU monitor at critical) asked for memory back.
    Unload,
}

impl EvictionReason {
    /// The reason in snake_case, as in logs, events and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Pressure => "pressure",
            EvictionReason::DeviceOutOfMemory => "device_out_of_memory",
            EvictionReason::Unload => "unload",
        }
    }
}

/// Passed to eviction callbacks, before the slot's memory is freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction<K> {
    /// The slot evicted.
    pub key: K,
    /// The bytes it held.
    pub size_bytes: u64,
    /// Why it was evicted.
    pub reason: EvictionReason,
}

/// What a [`load_slot`](super::ModelSlotManager::load_slot) had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOutcome<K> {
    /// Evicted to make room, in eviction order.
    pub evicted: Vec<K>,
    /// Device allocations retried after an out-of-memory.
    pub oom_retries: u32,
}

impl<K> Default for LoadOutcome<K> {
    fn default() -> Self {
        LoadOutcome { evicted: Vec::new(), oom_retries: 0 }
    }
}

/// What a [`load_weights`](super::ModelSlotManager::load_weights) did: the fit it needed, and
/// the slot's weights (tensor table, files, checksum, time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsLoaded<K> {
    /// What the fit had to do: evictions and out-of-memory retries.
    pub outcome: LoadOutcome<K>,
    /// The slot's tensor table, files and load report.
    pub weights: std::sync::Arc<crate::loader::LoadedWeights>,
}

/// Counters since the manager was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SlotStats {
    /// Slots evicted, for any reason.
    pub evictions: u64,
    /// Device allocations retried after an out-of-memory.
    pub oom_retries: u64,
    /// Out-of-memory failures seen: device failures (recovered or not) and refused loads.
    pub ooms: u64,
    /// Callbacks that panicked; the panic was contained.
    pub callback_panics: u64,
    /// Eviction receipts: bytes the driver was seen to take back, and not (see
    /// [`receipts`](super::receipts)).
    pub receipts: super::receipts::ReceiptCounts,
}

/// I1: a slot whose device memory no longer has the checksum it had when its holder declared it
/// loaded ([`SlotUse::mark_loaded`](super::SlotUse::mark_loaded)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityViolation<K> {
    /// The slot.
    pub key: K,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The checksum recorded when it was loaded.
    pub expected: crate::checksum::Checksum,
    /// The checksum now, or why it could not be computed.
    pub actual: crate::error::Result<crate::checksum::Checksum>,
}
