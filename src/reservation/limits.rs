//! Seed 004's limits: a total, a per-operation maximum, and the warning, critical and cleanup
//! thresholds as fractions of the total.
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pressure::{AlertLevel, AlertThresholds, Threshold};

/// Seed 004's limits of a [`MemoryGuard`](super::MemoryGuard): the total, the most one operation
/// may reserve, and the thresholds as fractions of the total. `Default`: 2 GiB, 512 MiB, 0.75,
/// 0.85, 0.9.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryLimits {
    /// Bytes all reservations together may hold (ignored when the guard shares a budget).
    pub max_total: u64,
    /// The most one operation may reserve.
    pub max_per_operation: u64,
    /// Warning starts at this fraction of the total.
    pub warning_threshold: f64,
    /// Critical starts at this fraction; above warning, at most the cleanup threshold.
    pub critical_threshold: f64,
    /// Above this fraction, cleanup callbacks run before a reservation is admitted.
    pub cleanup_threshold: f64,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            max_total: 2 << 30,
            max_per_operation: 512 << 20,
            warning_threshold: 0.75,
            critical_threshold: 0.85,
            cleanup_threshold: 0.9,
        }
    }
}

impl MemoryLimits {
    /// `VRAM-E007` unless `0 < warning < critical <= cleanup <= 1` and both byte limits are at
    /// least 1.
    pub fn validate(&self) -> Result<()> {
        let (w, c, k) = (self.warning_threshold, self.critical_threshold, self.cleanup_threshold);
        if !(0.0 < w && w < c && c <= k && k <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "thresholds must satisfy 0 < warning < critical <= cleanup <= 1; got {w}, {c}, {k}"
            )));
        }
        if self.max_total == 0 || self.max_per_operation == 0 {
            return Err(Error::InvalidArgument("max_total and max_per_operation must be at least 1 byte".into()));
        }
        Ok(())
    }

    /// The warning and critical thresholds as the crate's one level type, after [`validate`](Self::validate).
    pub(crate) fn thresholds(&self) -> Result<AlertThresholds> {
        self.validate()?;
        AlertThresholds::new(self.warning_threshold * 100.0, self.critical_threshold * 100.0)
    }

    /// The cleanup threshold (valid once [`validate`](Self::validate) passed).
    pub(crate) fn cleanup(&self) -> Threshold {
        Threshold::new(self.cleanup_threshold * 100.0)
    }
}

/// Where reservations stand against the limits: the monitor's levels, Normal, Warning and
/// Critical, decided the same way (exactly, from the bytes charged and the budget).
pub type ReservationLevel = AlertLevel;
