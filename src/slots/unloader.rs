//! The slot manager as the GPU monitor's unloader: at critical device pressure the monitor asks
//! it for memory back, and it evicts idle least-recently-used slots by fit plan.
use crate::monitor::Unloader;

use super::events::EvictionReason;
use super::manager::ModelSlotManager;
use super::slot::SlotKey;

impl<K: SlotKey> Unloader for ModelSlotManager<K> {
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String> {
        match self.backing() {
            Some(backing) if backing.tracker.device() == device => {}
            _ => return Vec::new(), // no memory on that device to give back
        }
        let victims = self.eviction_plan_or_all_idle(bytes);
        self.evict(&victims, EvictionReason::Unload).iter().map(ToString::to_string).collect()
    }
}
