//! What the monitor tells and asks when a device's level changes: [`Alert`]s to its listeners,
//! and at Critical, requests to an [`Unloader`] to free memory ([`UnloadEvent`]s). The trait lives
//! here so that the monitor depends on no model manager; the slot manager's adapter
//! (`impl Unloader for ModelSlotManager`) is here too, so that slots depend on no monitor.
//!
//! What the monitor judges by: the device's level is the driver's figure, everything on the device
//! (other processes included), because that is what runs out. But it unloads only what changes
//! that level: it asks for the bytes that bring the device just below Critical, and only when the
//! unloader could free that much ([`Unloader::reclaimable_bytes`]): device use minus what eviction
//! can free must fall below Critical, or nothing is evicted. Memory held by other processes, or by
//! models in use, pinned or loaded too recently, is no reason to unload the rest at every check.
use std::time::SystemTime;

use serde::Serialize;

use super::snapshot::{serialize_unix_seconds, GpuMemoryInfo};
use crate::pressure::AlertLevel;
use crate::slots::{ModelSlotManager, SlotKey};

/// A device changed level: into Warning, into Critical, or back (a recovery). Alerts fire on
/// changes only, so that a device that stays at Warning does not repeat itself every interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The device's CUDA ordinal.
    pub device: u32,
    /// The level the device is at now.
    pub level: AlertLevel,
    /// The level at the previous check (Normal before the first one).
    pub previous: AlertLevel,
    /// The reading that changed the level.
    pub snapshot: GpuMemoryInfo,
    /// Models the unloader freed at this check (only ever non-empty at Critical).
    pub unloaded: Vec<String>,
}

impl Alert {
    /// True when the level fell, e.g. Critical to Warning, or anything to Normal.
    pub fn is_recovery(&self) -> bool {
        self.level < self.previous
    }
}

/// Frees memory on a device by unloading least-recently-used idle models.
pub trait Unloader: Send + Sync {
    /// Unloads idle models on `device` that together free at least `bytes`, or nothing when no
    /// set of them frees that much (a partial unload would cost reloads and leave the device
    /// Critical); returns the names of the models unloaded.
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String>;

    /// The bytes that unloading every model it may unload on `device` would free now, or `None`
    /// when it cannot tell (then the monitor asks [`unload_lru`](Self::unload_lru) anyway, and the
    /// unloader alone keeps to all-or-nothing). The monitor asks nothing of an unloader that
    /// answers less than the bytes needed.
    fn reclaimable_bytes(&self, device: u32) -> Option<u64> {
        let _ = device;
        None
    }
}

/// One request to the unloader, made at a check that found the device Critical and an unloader
/// able to bring it below.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnloadEvent {
    /// The device's CUDA ordinal.
    pub device: u32,
    /// Bytes needed to bring the device just below the critical threshold.
    pub requested_bytes: u64,
    /// What the unloader reported it unloaded (empty when nothing was idle, or it panicked).
    pub unloaded: Vec<String>,
    /// When the request was made; serialised as Unix seconds.
    #[serde(serialize_with = "serialize_unix_seconds")]
    pub timestamp: SystemTime,
}

/// The slot manager as the monitor's unloader: at critical device pressure it evicts idle
/// least-recently-used slots by fit plan — all the bytes asked for, or nothing. Only slots
/// resident for at least [`SlotConfig::unload_min_residency`](crate::slots::SlotConfig::unload_min_residency)
/// (30 s by default) may be taken, so that a device kept Critical by others cannot make the worker
/// load and unload the same models at every check. A manager without device memory on `device`
/// has nothing there to give back.
impl<K: SlotKey> Unloader for ModelSlotManager<K> {
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String> {
        if !backs(self, device) {
            return Vec::new();
        }
        self.unload(bytes).iter().map(ToString::to_string).collect()
    }

    fn reclaimable_bytes(&self, device: u32) -> Option<u64> {
        Some(if backs(self, device) { self.unloadable_bytes() } else { 0 })
    }
}

fn backs<K: SlotKey>(manager: &ModelSlotManager<K>, device: u32) -> bool {
    manager.backing().is_some_and(|backing| backing.tracker.device() == device)
}
