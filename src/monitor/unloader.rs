//! Unload at critical: the monitor asks whoever owns the models to free memory. The trait lives
//! here so that the monitor depends on no model manager; a manager implements it.
use std::time::SystemTime;

use serde::Serialize;


/// Frees memory on a device by unloading least-recently-used idle models.
pub trait Unloader: Send + Sync {
    /// Unloads until at least `bytes` are freed on `device` (or nothing idle is left);
    /// returns the names of the models unloaded.
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String>;
}

/// One request to the unloader, made at a check that found the device Critical.
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

