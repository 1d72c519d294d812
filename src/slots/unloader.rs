//! The slot manager as the GPU monitor's unloader: at critical device pressure the monitor asks
//! it for memory back, and it evicts idle least-recently-used slots by fit plan — all the bytes
//! asked for, or nothing. Only slots resident for at least
//! [`SlotConfig::unload_min_residency`](super::SlotConfig::unload_min_residency) (30 s by
//! default) may be taken, so that a device kept Critical by others cannot make the worker load
//! and unload the same models at every check.
use crate::monitor::Unloader;

use super::manager::ModelSlotManager;
use super::slot::SlotKey;

impl<K: SlotKey> ModelSlotManager<K> {
    fn backs(&self, device: u32) -> bool {
        self.backing().is_some_and(|backing| backing.tracker.device() == device)
    }
}

impl<K: SlotKey> Unloader for ModelSlotManager<K> {
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String> {
        if !self.backs(device) {
            return Vec::new(); // no memory on that device to give back
        }
        self.unload(bytes).iter().map(ToString::to_string).collect()
    }

    fn reclaimable_bytes(&self, device: u32) -> Option<u64> {
        Some(if self.backs(device) { self.unloadable_bytes() } else { 0 })
    }
}
