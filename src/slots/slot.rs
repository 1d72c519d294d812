//! One model slot: its bookkeeping, and the device memory it owns.
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::budget::BudgetCharge;
use crate::buffer::DeviceBuffer;
use crate::checksum::Checksum;

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

/// Locks, ignoring poison: every value guarded here is consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// I1: the integrity reference of one slot's memory. `generation` counts the references set, so
/// that a check that read one reference and finds another after its checksum knows the bytes
/// were declared anew meanwhile, and compares nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reference {
    pub(crate) checksum: Option<Checksum>,
    pub(crate) generation: u64,
}

/// The memory of a slot: device memory (when backed) and its budget charge. Shared with the
/// slot's use guards, so that memory in use is never freed under its user: it goes, and its bytes
/// return to the budget, when the last holder drops it.
///
/// Two kinds of holder share it besides the table: [`SlotUse`](super::SlotUse) guards, counted
/// in `users` (a slot with users is busy and never evicted), and transient readers (the integrity
/// pass, see [`Reader`]), which are not users: a slot being checksummed is still idle, and an
/// eviction of it waits the one checksum for the reader to let go (see [`Holds::free`]).
/// Idleness is never judged by `Arc::strong_count`.
#[derive(Debug)]
pub(crate) struct SlotMemory {
    // Field order is drop order: the memory is freed before its budget is released.
    pub(crate) buffer: Option<DeviceBuffer>,
    pub(crate) _charge: BudgetCharge,
    /// Live `SlotUse` guards of this memory.
    users: AtomicUsize,
    /// Set when the slot left the table (evicted or deallocated): readers skip it.
    retired: AtomicBool,
    /// No reference until a holder declares the bytes loaded ([`SlotUse::mark_loaded`](super::SlotUse::mark_loaded)).
    reference: Mutex<Reference>,
}

impl SlotMemory {
    pub(crate) fn new(buffer: Option<DeviceBuffer>, charge: BudgetCharge) -> SlotMemory {
        SlotMemory {
            buffer,
            _charge: charge,
            users: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            reference: Mutex::new(Reference::default()),
        }
    }

    pub(crate) fn users(&self) -> usize {
        self.users.load(Ordering::SeqCst)
    }

    /// Called under the table lock only, by `use_slot`: no user appears once the slot has left
    /// the table.
    pub(crate) fn add_user(&self) {
        self.users.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn remove_user(&self) {
        self.users.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    pub(crate) fn reference(&self) -> Reference {
        *lock(&self.reference)
    }

    pub(crate) fn set_reference(&self, checksum: Checksum) {
        let mut reference = lock(&self.reference);
        reference.checksum = Some(checksum);
        reference.generation += 1;
    }
}

/// How a slot's memory is checksummed: `None` when there is nothing to checksum (a bookkeeping
/// slot). The device's kernel in a running manager; the crate's unit tests put in another.
/// A slot memory's checksum, waiting for the GPU at most the given time.
pub(crate) type ChecksumFn =
    Arc<dyn Fn(&SlotMemory, std::time::Duration) -> Option<crate::error::Result<Checksum>> + Send + Sync>;

/// The device checksum of the slot's whole buffer.
pub(crate) fn device_checksum(
    memory: &SlotMemory,
    deadline: std::time::Duration,
) -> Option<crate::error::Result<Checksum>> {
    memory.buffer.as_ref().map(|buffer| buffer.checksum_range_within(0, buffer.len(), deadline))
}

/// What every holder of a manager's slot memory shares: how to checksum it, and the signal that
/// wakes an eviction waiting for the other holders to let go (guards and readers notify it after
/// dropping their handle).
pub(crate) struct Holds {
    lock: Mutex<()>,
    let_go: Condvar,
    pub(crate) checksum: ChecksumFn,
}

impl Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds").finish_non_exhaustive()
    }
}

impl Holds {
    pub(crate) fn new(checksum: ChecksumFn) -> Holds {
        Holds { lock: Mutex::new(()), let_go: Condvar::new(), checksum }
    }

    /// Called by a holder after it dropped its handle of some slot memory.
    pub(crate) fn notify(&self) {
        let _guard = lock(&self.lock);
        self.let_go.notify_all();
    }

    /// Frees a slot's memory that has left the table, now: waits until no reader holds it
    /// (an integrity pass in the middle of its checksum, one slot's checksum at most), so that
    /// the memory and its budget come back before an eviction returns. Memory that still has
    /// users is not waited for: it goes when its last [`SlotUse`](super::SlotUse) drops.
    pub(crate) fn free(&self, memory: Arc<SlotMemory>) {
        memory.retire();
        let mut guard = lock(&self.lock);
        // No user can appear (the slot is out of the table); a user that is dropping notifies.
        while Arc::strong_count(&memory) > 1 && memory.users() == 0 {
            guard = self.let_go.wait(guard).unwrap_or_else(PoisonError::into_inner);
        }
        drop(guard);
        drop(memory);
    }
}

/// A transient hold of a slot's memory by the integrity pass: it keeps the memory allocated
/// while a checksum reads it, without making the slot busy. Dropping it wakes an eviction that
/// waits for it.
pub(crate) struct Reader {
    memory: Option<Arc<SlotMemory>>,
    holds: Arc<Holds>,
}

impl Reader {
    pub(crate) fn new(memory: Arc<SlotMemory>, holds: Arc<Holds>) -> Reader {
        Reader { memory: Some(memory), holds }
    }

    pub(crate) fn memory(&self) -> &SlotMemory {
        self.memory.as_ref().expect("present until drop")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        drop(self.memory.take());
        self.holds.notify();
    }
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
}

impl SlotEntry {
    /// Live use guards: the explicit count, never the `Arc`'s strong count (which also counts
    /// the integrity pass's transient readers).
    pub(crate) fn users(&self) -> usize {
        self.memory.users()
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
