//! One model slot: its key, the copy callers read, and the memory it owns with everything that
//! holds that memory — the slot table, [`SlotUse`] guards, and the integrity pass's transient
//! readers. Memory in use is never freed under its user: it goes, and its bytes return to the
//! budget, when the last holder lets go.
//!
//! A slot in use: while a [`SlotUse`] guard lives, the slot is not idle, is never chosen for
//! eviction, and its memory stays allocated even if the slot is deallocated meanwhile. The guard
//! is also the handle through which its holder declares the slot's bytes loaded (I1): the
//! integrity reference is taken from, and stored into, the very memory the guard holds.
use std::ffi::c_void;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::budget::BudgetCharge;
use crate::buffer::DeviceBuffer;
use crate::checksum::{Checksum, DEFAULT_CHECKSUM_DEADLINE};
use crate::error::{check, Result};
use crate::loader::LoadedWeights;
use crate::sys;

/// What names a slot: an [`Embedder`](super::Embedder), a `String`, or any such key.
pub trait SlotKey: Clone + Eq + Hash + Debug + Display + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Debug + Display + Send + Sync + 'static> SlotKey for T {}

/// A copy of one slot's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSlot<K> {
    /// The slot's name.
    pub key: K,
    /// The bytes it holds against the budget.
    pub size_bytes: u64,
    /// Clock time of the load.
    pub loaded_at: Duration,
    /// Clock time of the last allocate, touch or use.
    pub last_accessed: Duration,
    /// True for every slot the manager returns: a slot exists only while allocated.
    pub loaded: bool,
    /// L4: a pinned slot is never evicted.
    pub pinned: bool,
    /// Live [`SlotUse`] guards.
    pub users: usize,
    /// Whether real device memory backs the slot.
    pub on_device: bool,
    /// The slot's weights, once loaded from files by
    /// [`load_weights`](super::ModelSlotManager::load_weights): files, tensor table, load report.
    #[serde(skip)]
    pub weights: Option<Arc<LoadedWeights>>,
}

/// Locks, ignoring poison: every value guarded here is consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// I1: the integrity reference of one slot's memory. `generation` counts the references set, so
/// that a check that read one reference and finds another after its checksum knows the bytes
/// were declared anew meanwhile, and compares nothing.
#[derive(Debug, Clone, Copy, Default)]
struct Reference {
    checksum: Option<Checksum>,
    generation: u64,
}

/// The memory of a slot: device memory (when backed) and its budget charge. Shared with the
/// slot's use guards, so that memory in use is never freed under its user: it goes, and its bytes
/// return to the budget, when the last holder drops it.
///
/// Two kinds of holder share it besides the table: [`SlotUse`] guards, counted
/// in `users` (a slot with users is busy and never evicted), and transient readers (the integrity
/// pass, see [`Reader`]), which are not users: a slot being checksummed is still idle, and an
/// eviction of it waits the one checksum for the reader to let go (see [`Holds::free`]).
/// Idleness is never judged by `Arc::strong_count`.
#[derive(Debug)]
pub(crate) struct SlotMemory {
    // Field order is drop order: the memory is freed before its budget is released.
    buffer: Option<DeviceBuffer>,
    _charge: BudgetCharge,
    /// Live `SlotUse` guards of this memory.
    users: AtomicUsize,
    /// Set when the slot left the table (evicted or deallocated): readers skip it.
    retired: AtomicBool,
    /// No reference until a holder declares the bytes loaded ([`SlotUse::mark_loaded`]).
    reference: Mutex<Reference>,
    /// Set once, when weights loaded from files are verified in this memory.
    weights: OnceLock<Arc<LoadedWeights>>,
}

impl SlotMemory {
    pub(crate) fn new(buffer: Option<DeviceBuffer>, charge: BudgetCharge) -> SlotMemory {
        SlotMemory {
            buffer,
            _charge: charge,
            users: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            reference: Mutex::new(Reference::default()),
            weights: OnceLock::new(),
        }
    }

    /// The weights loaded from files into this memory, once verified.
    pub(crate) fn weights(&self) -> Option<&Arc<LoadedWeights>> {
        self.weights.get()
    }

    /// Live [`SlotUse`] guards: the explicit count, never the `Arc`'s strong count (which also
    /// counts the integrity pass's transient readers).
    pub(crate) fn users(&self) -> usize {
        self.users.load(Ordering::SeqCst)
    }

    /// Whether real device memory backs the slot.
    pub(crate) fn on_device(&self) -> bool {
        self.buffer.is_some()
    }

    /// The bytes of device memory that back the slot (0 without).
    pub(crate) fn device_bytes(&self) -> u64 {
        self.buffer.as_ref().map_or(0, |buffer| buffer.len())
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    fn reference(&self) -> Reference {
        *lock(&self.reference)
    }

    fn set_reference(&self, checksum: Checksum) {
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
    checksum: ChecksumFn,
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
    fn notify(&self) {
        let _guard = lock(&self.lock);
        self.let_go.notify_all();
    }

    /// Frees a slot's memory that has left the table, now: waits until no reader holds it
    /// (an integrity pass in the middle of its checksum, one slot's checksum at most), so that
    /// the memory and its budget come back before an eviction returns. Memory that still has
    /// users is not waited for: it goes when its last [`SlotUse`] drops.
    /// Returns the device bytes freed now (0 when users keep the memory, or it has none).
    pub(crate) fn free(&self, memory: Arc<SlotMemory>) -> u64 {
        memory.retire();
        let mut guard = lock(&self.lock);
        // No user can appear (the slot is out of the table); a user that is dropping notifies.
        while Arc::strong_count(&memory) > 1 && memory.users() == 0 {
            guard = self.let_go.wait(guard).unwrap_or_else(PoisonError::into_inner);
        }
        drop(guard);
        let freed_now = if Arc::strong_count(&memory) == 1 { memory.device_bytes() } else { 0 };
        drop(memory);
        freed_now
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

    /// I1: the slot's integrity reference and its checksum now, computed within `left`; `None`
    /// when there is nothing to compare — no reference declared yet, no device memory, no time
    /// left, or the slot was evicted or declared loaded anew while it was read.
    pub(crate) fn check(&self, left: Duration) -> Option<(Checksum, Result<Checksum>)> {
        let memory = self.memory.as_ref().expect("present until drop");
        let reference = memory.reference();
        let expected = reference.checksum?;
        if memory.is_retired() || left.is_zero() {
            return None;
        }
        let actual = (self.holds.checksum)(memory, left)?;
        if memory.reference().generation != reference.generation || memory.is_retired() {
            return None; // declared loaded anew, or evicted, while it was read
        }
        Some((expected, actual))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        drop(self.memory.take());
        self.holds.notify();
    }
}

/// A slot held in use ([`ModelSlotManager::use_slot`](super::ModelSlotManager::use_slot)): busy,
/// never evicted, its memory kept, until the guard drops; the handle that uploads into the slot
/// and declares it loaded.
#[must_use = "the slot counts as in use only while the guard lives"]
pub struct SlotUse<K> {
    key: K,
    size_bytes: u64,
    /// `Some` until drop.
    memory: Option<Arc<SlotMemory>>,
    holds: Arc<Holds>,
}

impl<K: std::fmt::Debug> std::fmt::Debug for SlotUse<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotUse")
            .field("key", &self.key)
            .field("size_bytes", &self.size_bytes)
            .field("buffer", &self.buffer())
            .finish()
    }
}

impl<K> SlotUse<K> {
    /// Counts a user of `memory`. Called under the slot table's lock only, on an entry in the
    /// table: no user appears once the slot has left it.
    pub(crate) fn new(key: K, size_bytes: u64, memory: &Arc<SlotMemory>, holds: &Arc<Holds>) -> SlotUse<K> {
        memory.users.fetch_add(1, Ordering::SeqCst);
        SlotUse { key, size_bytes, memory: Some(Arc::clone(memory)), holds: Arc::clone(holds) }
    }

    fn memory(&self) -> &SlotMemory {
        self.memory.as_ref().expect("present until drop")
    }

    /// The name of the slot this guard holds.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The slot's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The slot's device memory, when a device backs the manager.
    pub fn buffer(&self) -> Option<&DeviceBuffer> {
        self.memory.as_ref().and_then(|memory| memory.buffer.as_ref())
    }

    /// The device address, when a device backs the manager.
    pub fn device_ptr(&self) -> Option<*mut c_void> {
        self.buffer().map(DeviceBuffer::as_ptr)
    }

    /// Copies `data` into the slot's device memory at byte `offset` (uploading weights). A
    /// range past the slot is VRAM-E008; a slot without device memory is VRAM-E007. Holders
    /// that write the same bytes at once race, as with any shared device memory.
    pub fn copy_from_host(&self, offset: u64, data: &[u8]) -> Result<()> {
        let buffer = self.buffer().ok_or_else(|| {
            crate::Error::InvalidArgument("the slot has no device memory (a bookkeeping-only manager)".into())
        })?;
        // SAFETY: data is a valid host slice; the core checks offset + len against the tracked
        // allocation, which stays allocated while this guard holds it.
        check(unsafe {
            sys::vg_copy_to_device(
                buffer.tracker_raw(),
                buffer.as_ptr(),
                offset,
                data.as_ptr().cast(),
                data.len() as u64,
            )
        })
    }

    /// I1: declares the slot's bytes loaded. The checksum of its memory as it is now becomes the
    /// slot's integrity reference, which every later integrity pass compares against; before the
    /// first call the slot has no reference and the pass skips it. Call it after the weights are
    /// uploaded, and again after rewriting them. The checksum runs on the memory this guard holds,
    /// outside the slot table's lock, and the reference is stored into that same slot — never
    /// into another one loaded under the same key meanwhile.
    ///
    /// Returns the reference, or `None` when no device backs the slot (nothing to checksum).
    /// A failed checksum leaves the reference as it was.
    pub fn mark_loaded(&self) -> Result<Option<Checksum>> {
        let memory = self.memory();
        match (self.holds.checksum)(memory, DEFAULT_CHECKSUM_DEADLINE) {
            None => Ok(None),
            Some(sum) => {
                let sum = sum?;
                memory.set_reference(sum);
                Ok(Some(sum))
            }
        }
    }

    /// Declares weights loaded from files into this memory: their verified checksum becomes the
    /// integrity reference, their tensor table the slot's. Once per memory: the loader fills a
    /// fresh slot only.
    pub(crate) fn set_loaded_weights(&self, weights: Arc<LoadedWeights>) {
        let memory = self.memory();
        memory.set_reference(weights.report.checksum);
        let _ = memory.weights.set(weights);
    }

    /// The weights loaded from files into the slot ([`load_weights`](super::ModelSlotManager::load_weights)):
    /// files, tensor table with device addresses, load report. `None` for a slot filled otherwise.
    pub fn weights(&self) -> Option<&LoadedWeights> {
        self.memory().weights().map(|w| &**w)
    }

    /// Which slot memory this guard holds: the same value as long as the slot is the same one
    /// (a slot deallocated and allocated again under its key has another).
    pub(crate) fn memory_id(&self) -> usize {
        self.memory() as *const SlotMemory as usize
    }

    /// The integrity reference declared with [`mark_loaded`](Self::mark_loaded), if any.
    pub fn integrity_reference(&self) -> Option<Checksum> {
        self.memory().reference().checksum
    }
}

impl<K> Drop for SlotUse<K> {
    fn drop(&mut self) {
        if let Some(memory) = self.memory.take() {
            memory.users.fetch_sub(1, Ordering::SeqCst);
            drop(memory); // the last holder of a deallocated slot frees its memory here
        }
        self.holds.notify(); // an eviction may wait for this guard's handle to go
    }
}
