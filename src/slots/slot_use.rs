//! A slot in use: while a guard lives, the slot is not idle, is never chosen for eviction, and its
//! memory stays allocated even if the slot is deallocated meanwhile.
use std::ffi::c_void;
use std::sync::Arc;

use crate::buffer::DeviceBuffer;

use super::slot::SlotMemory;

#[must_use = "the slot counts as in use only while the guard lives"]
#[derive(Debug)]
pub struct SlotUse<K> {
    pub(crate) key: K,
    pub(crate) size_bytes: u64,
    pub(crate) memory: Arc<SlotMemory>,
}

impl<K> SlotUse<K> {
    pub fn key(&self) -> &K {
        &self.key
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The slot's device memory, when a device backs the manager.
    pub fn buffer(&self) -> Option<&DeviceBuffer> {
        self.memory.buffer.as_ref()
    }

    /// The device address, when a device backs the manager.
    pub fn device_ptr(&self) -> Option<*mut c_void> {
        self.buffer().map(DeviceBuffer::as_ptr)
    }
}
