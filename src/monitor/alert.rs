//! O1: what a level change tells its listeners.
use serde::Serialize;

use super::level::AlertLevel;
use super::snapshot::GpuMemoryInfo;

/// A device changed level: into Warning, into Critical, or back (a recovery). Alerts fire on
/// changes only, so that a device that stays at Warning does not repeat itself every interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub device: u32,
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
