//! Unload at critical: the monitor asks whoever owns the models to free memory. The trait lives
//! here so that the monitor depends on no model manager; a manager implements it.
//!
//! What the monitor judges by: the device's level is the driver's figure, everything on the device
//! (other processes included), because that is what runs out. But it unloads only what changes
//! that level: it asks for the bytes that bring the device just below Critical, and only when the
//! unloader could free that much ([`Unloader::reclaimable_bytes`]): device use minus what eviction
//! can free must fall below Critical, or nothing is evicted. Memory held by other processes, or by
//! models in use, pinned or loaded too recently, is no reason to unload the rest at every check.
use std::time::SystemTime;

use serde::Serialize;

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
    pub device: u32,
    /// Bytes needed to bring the device just below the critical threshold.
    pub requested_bytes: u64,
    /// What the unloader reported it unloaded (empty when nothing was idle, or it panicked).
    pub unloaded: Vec<String>,
    #[serde(serialize_with = "super::snapshot::serialize_unix_seconds")]
    pub timestamp: SystemTime,
}
