//! One model slot: its bookkeeping, and the device memory it owns.
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::buffer::DeviceBuffer;
use crate::budget::BudgetCharge;

/// What names a slot: an [`Embedder`](super::Embedder), a `String`, or any such key.
pub trait SlotKey: Clone + Eq + Hash + Debug + Display + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Debug + Display + Send + Sync + 'static> SlotKey for T {}

/// A copy of one slot's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSlot<K> {
    pub key: K,
    pub size_bytes: u64,
    /// Clock time of the load.
    pub loaded_at: Duration,
    /// Clock time of the last allocate, touch or use.
    pub last_accessed: Duration,
    pub loaded: bool,
    pub pinned: bool,
    /// Live [`SlotUse`](super::SlotUse) guards.
    pub users: usize,
    /// Whether real device memory backs the slot.
    pub on_device: bool,
}

/// The memory of a slot: device memory (when backed) and its budget charge. Shared with the
/// slot's use guards, so that memory in use is never freed under its user: it goes, and its bytes
/// return to the budget, when the last holder drops it.
#[derive(Debug)]
pub(crate) struct SlotMemory {
    // Field order is drop order: the memory is freed before its budget is released.
    pub(crate) buffer: Option<DeviceBuffer>,
    pub(crate) _charge: BudgetCharge,
}

/// The table entry.
#[derive(Debug)]
pub(crate) struct SlotEntry {
    pub(crate) size_bytes: u64,
    pub(crate) loaded_at: Duration,
    pub(crate) last_accessed: Duration,
    /// Tie-break for equal clock readings: a later access has a larger sequence number.
    pub(crate) access_seq: u64,
    pub(crate) pinned: bool,
    pub(crate) memory: Arc<SlotMemory>,
    /// I1: the checksum of the slot's device memory when it was loaded (or last refreshed).
    pub(crate) checksum: Option<crate::checksum::Checksum>,
}

impl SlotEntry {
    pub(crate) fn users(&self) -> usize {
        Arc::strong_count(&self.memory) - 1
    }

    pub(crate) fn lru_key(&self) -> (Duration, u64) {
        (self.last_accessed, self.access_seq)
    }

    pub(crate) fn info<K: Clone>(&self, key: &K) -> ModelSlot<K> {
        ModelSlot {
            key: key.clone(),
            size_bytes: self.size_bytes,
            loaded_at: self.loaded_at,
            last_accessed: self.last_accessed,
            loaded: true,
            pinned: self.pinned,
            users: self.users(),
            on_device: self.memory.buffer.is_some(),
        }
    }
}
