//! O1: alert levels from utilisation. Levels are decided in integers from byte counts, so that a
//! boundary (exactly 80 % of an odd byte count) is never lost to float rounding.
use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};

/// How full a device is against the monitor's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AlertLevel {
    /// Below the warning threshold.
    Normal,
    /// From the warning threshold up to the critical one.
    Warning,
    /// At or above the critical threshold: idle models are unloaded.
    Critical,
}

impl fmt::Display for AlertLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertLevel::Normal => "normal",
            AlertLevel::Warning => "warning",
            AlertLevel::Critical => "critical",
        })
    }
}

/// Thresholds are compared at a resolution of a millionth of a percent: fine enough for any
/// threshold a person writes, coarse enough that `used * 100 * SCALE` fits in a u128.
const SCALE: u128 = 1_000_000;

/// Where Warning and Critical start, in percent of the device's total memory. Each bound belongs
/// to the higher level: exactly 80 % is Warning, exactly 90 % is Critical.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlertThresholds {
    warning_percent: f64,
    critical_percent: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds { warning_percent: 80.0, critical_percent: 90.0 }
    }
}

impl AlertThresholds {
    /// Thresholds in percent; they must satisfy `0 < warning < critical <= 100`
    /// (else [`Error::InvalidArgument`], VRAM-E007; NaN is rejected too).
    pub fn new(warning_percent: f64, critical_percent: f64) -> Result<AlertThresholds> {
        let (warning, critical) = (warning_percent, critical_percent);
        let ordered = 0.0 < warning && warning < critical && critical <= 100.0;
        if !ordered {
            return Err(Error::InvalidArgument(format!(
                "alert thresholds must satisfy 0 < warning < critical <= 100; got warning {warning_percent}, critical {critical_percent}"
            )));
        }
        Ok(AlertThresholds { warning_percent, critical_percent })
    }

    pub fn warning_percent(&self) -> f64 {
        self.warning_percent
    }

    pub fn critical_percent(&self) -> f64 {
        self.critical_percent
    }

    /// The level of `used` bytes out of `total`. A zero total is Critical: an unknown capacity
    /// must not look safe.
    pub fn level_of(&self, used: u64, total: u64) -> AlertLevel {
        if total == 0 || reaches(self.critical_percent, used, total) {
            AlertLevel::Critical
        } else if reaches(self.warning_percent, used, total) {
            AlertLevel::Warning
        } else {
            AlertLevel::Normal
        }
    }

    /// The most bytes out of `total` that stay below Critical (0 when `total` is 0).
    pub fn below_critical_bytes(&self, total: u64) -> u64 {
        let limit = scaled(self.critical_percent) * u128::from(total);
        // The largest `used` with used * 100 * SCALE < limit.
        let below = limit.div_ceil(100 * SCALE).saturating_sub(1);
        below.min(u128::from(total)) as u64
    }
}

fn scaled(percent: f64) -> u128 {
    (percent * SCALE as f64).round() as u128
}

/// `used / total >= percent / 100`, exactly.
fn reaches(percent: f64, used: u64, total: u64) -> bool {
    u128::from(used) * 100 * SCALE >= scaled(percent) * u128::from(total)
}
