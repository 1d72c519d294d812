//! A slot in use: while a guard lives, the slot is not idle, is never chosen for eviction, and its
//! memory stays allocated even if the slot is deallocated meanwhile. The guard is also the handle
//! through which its holder declares the slot's bytes loaded (I1): the integrity reference is
//! taken from, and stored into, the very entry the guard holds.
use std::ffi::c_void;
use std::sync::Arc;

use crate::buffer::DeviceBuffer;
use crate::checksum::Checksum;
use crate::error::{check, Result};
use crate::sys;

use super::slot::{Holds, SlotMemory};

#[must_use = "the slot counts as in use only while the guard lives"]
pub struct SlotUse<K> {
    pub(crate) key: K,
    pub(crate) size_bytes: u64,
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
    /// Counts a user of `memory`. Called under the slot table's lock, on an entry in the table.
    pub(crate) fn new(key: K, size_bytes: u64, memory: &Arc<SlotMemory>, holds: &Arc<Holds>) -> SlotUse<K> {
        memory.add_user();
        SlotUse { key, size_bytes, memory: Some(Arc::clone(memory)), holds: Arc::clone(holds) }
    }

    fn memory(&self) -> &SlotMemory {
        self.memory.as_ref().expect("present until drop")
    }

    pub fn key(&self) -> &K {
        &self.key
    }

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
        match (self.holds.checksum)(memory, crate::checksum::DEFAULT_CHECKSUM_DEADLINE) {
            None => Ok(None),
            Some(sum) => {
                let sum = sum?;
                memory.set_reference(sum);
                Ok(Some(sum))
            }
        }
    }

    /// Which slot memory this guard holds (the unit tests' fake device keys its contents by it).
    #[cfg(test)]
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
            memory.remove_user();
            drop(memory); // the last holder of a deallocated slot frees its memory here
        }
        self.holds.notify(); // an eviction may wait for this guard's handle to go
    }
}
