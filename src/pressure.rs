//! B1: memory pressure, from utilisation against configurable thresholds (50/80/95 % by default).
use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};

/// How close to its budget a pool of memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum MemoryPressure {
    /// Below the medium threshold (50 %).
    Low,
    /// From 50 % up to 80 %.
    Medium,
    /// From 80 % up to 95 %.
    High,
    /// 95 % and above: evict.
    Critical,
}

impl MemoryPressure {
    pub const ALL: [MemoryPressure; 4] =
        [MemoryPressure::Low, MemoryPressure::Medium, MemoryPressure::High, MemoryPressure::Critical];

    /// The level for a utilisation in percent, with the default thresholds.
    pub fn from_utilization(percent: f32) -> MemoryPressure {
        PressureThresholds::default().level(f64::from(percent))
    }

    /// Eviction is due at Critical.
    pub fn should_evict(&self) -> bool {
        *self == MemoryPressure::Critical
    }

    /// 0 (Low) … 3 (Critical), for metrics.
    pub fn as_index(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for MemoryPressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryPressure::Low => "low",
            MemoryPressure::Medium => "medium",
            MemoryPressure::High => "high",
            MemoryPressure::Critical => "critical",
        })
    }
}

/// Where each level starts, in percent of the budget. Each bound belongs to the higher level:
/// exactly 50 % is Medium, exactly 95 % is Critical.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PressureThresholds {
    medium: f64,
    high: f64,
    critical: f64,
}

impl Default for PressureThresholds {
    fn default() -> Self {
        PressureThresholds { medium: 50.0, high: 80.0, critical: 95.0 }
    }
}

impl PressureThresholds {
    /// Thresholds in percent; they must rise strictly within (0, 100].
    pub fn new(medium: f64, high: f64, critical: f64) -> Result<PressureThresholds> {
        let ordered = 0.0 < medium && medium < high && high < critical && critical <= 100.0;
        if !ordered {
            return Err(Error::InvalidArgument(format!(
                "pressure thresholds must satisfy 0 < medium < high < critical <= 100; got {medium}, {high}, {critical}"
            )));
        }
        Ok(PressureThresholds { medium, high, critical })
    }

    pub fn medium(&self) -> f64 {
        self.medium
    }

    pub fn high(&self) -> f64 {
        self.high
    }

    pub fn critical(&self) -> f64 {
        self.critical
    }

    /// The level for a utilisation in percent. NaN counts as Critical: an unknown figure must not
    /// look safe.
    pub fn level(&self, percent: f64) -> MemoryPressure {
        match percent {
            p if p < self.medium => MemoryPressure::Low,
            p if p < self.high => MemoryPressure::Medium,
            p if p < self.critical => MemoryPressure::High,
            _ => MemoryPressure::Critical,
        }
    }

    /// The level of `used` bytes out of `capacity`, computed exactly in integers so that a
    /// boundary such as 95 % of an odd byte count is not lost to rounding.
    pub fn level_of(&self, used: u64, capacity: u64) -> MemoryPressure {
        if capacity == 0 {
            return MemoryPressure::Critical;
        }
        let at_or_above =
            |percent: f64| (used as u128) * 100_000 >= (percent * 1000.0).round() as u128 * capacity as u128;
        if at_or_above(self.critical) {
            MemoryPressure::Critical
        } else if at_or_above(self.high) {
            MemoryPressure::High
        } else if at_or_above(self.medium) {
            MemoryPressure::Medium
        } else {
            MemoryPressure::Low
        }
    }

    /// The most bytes out of `capacity` that stay below Critical.
    pub fn below_critical_bytes(&self, capacity: u64) -> u64 {
        let limit = (self.critical * 1000.0).round() as u128 * capacity as u128;
        // Largest used with used * 100_000 < limit.
        let below = limit.div_ceil(100_000).saturating_sub(1);
        below.min(capacity as u128) as u64
    }
}

/// Utilisation in percent; 100 % when the capacity is zero.
pub fn utilization_percent(used: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        100.0
    } else {
        used as f64 * 100.0 / capacity as f64
    }
}

#[cfg(test)]
#[path = "pressure_tests.rs"]
mod tests;
