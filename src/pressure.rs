//! B1, O1, B4: levels of memory use. One type, [`Thresholds`], decides the level of `used` bytes out
//! of a capacity against rising thresholds, exactly in integers, so that a boundary (exactly 95 %
//! of an odd byte count) is never lost to float rounding. Every level in the crate is one of its
//! instances:
//!
//! - a budget's pressure, [`MemoryPressure`] against [`PressureThresholds`] (50/80/95 %);
//! - the GPU monitor's device level, [`AlertLevel`] against [`AlertThresholds`] (80/90 %);
//! - the reservations' level, the same [`AlertLevel`] against the thresholds of
//!   [`MemoryLimits`](crate::reservation::MemoryLimits) (75/85 %).
use std::fmt;
use std::marker::PhantomData;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

/// Thresholds are compared at a resolution of a millionth of a percent: fine enough for any
/// threshold a person writes, coarse enough that `used * 100 * SCALE` fits in a u128.
const SCALE: u128 = 1_000_000;

/// One threshold: a percentage of a capacity, compared exactly in integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Threshold {
    percent: f64,
    /// `percent` in millionths of a percent.
    scaled: u128,
}

impl Threshold {
    /// `percent` is finite and within [0, 100]: the callers validate it.
    pub(crate) fn new(percent: f64) -> Threshold {
        Threshold { percent, scaled: (percent * SCALE as f64).round() as u128 }
    }

    pub(crate) fn percent(&self) -> f64 {
        self.percent
    }

    /// `used / capacity >= percent / 100`, exactly. A zero capacity reaches every threshold: an
    /// unknown capacity must not look safe.
    pub(crate) fn reached_by(&self, used: u64, capacity: u64) -> bool {
        capacity == 0 || u128::from(used) * 100 * SCALE >= self.scaled * u128::from(capacity)
    }

    /// `used / capacity > percent / 100`, exactly (a zero capacity exceeds it).
    pub(crate) fn exceeded_by(&self, used: u64, capacity: u64) -> bool {
        capacity == 0 || u128::from(used) * 100 * SCALE > self.scaled * u128::from(capacity)
    }

    /// The most bytes out of `capacity` that stay below the threshold (0 when `capacity` is 0).
    pub(crate) fn bytes_below(&self, capacity: u64) -> u64 {
        let limit = self.scaled * u128::from(capacity);
        // The largest `used` with used * 100 * SCALE < limit.
        let below = limit.div_ceil(100 * SCALE).saturating_sub(1);
        below.min(u128::from(capacity)) as u64
    }
}

/// A set of levels ordered from the lowest to the highest, each after the first starting at one
/// threshold of a [`Thresholds`].
pub trait Level: Copy + Ord + fmt::Debug + Send + Sync + 'static {
    /// Every level, lowest first.
    const LADDER: &'static [Self];
    /// The thresholds' names, lowest first, as configuration and JSON call them.
    const THRESHOLD_NAMES: &'static [&'static str];
    /// What errors call the thresholds ("pressure", "alert").
    const KIND: &'static str;
}

/// The most thresholds a [`Level`] ladder has (the four pressure levels need three).
const MAX_THRESHOLDS: usize = 3;

/// Where each level of `L` above the lowest starts, in percent of a capacity. Each bound belongs
/// to the higher level: exactly at a threshold is the level it starts. Levels are decided in
/// integers from byte counts ([`level_of`](Self::level_of)); a float percentage can be classified
/// too ([`level`](Self::level)), NaN as the highest level.
#[derive(Clone, Copy, PartialEq)]
pub struct Thresholds<L: Level> {
    /// The first `L::LADDER.len() - 1` are used, rising.
    bounds: [Threshold; MAX_THRESHOLDS],
    level: PhantomData<L>,
}

impl<L: Level> Thresholds<L> {
    /// Thresholds in percent, lowest first; they must rise strictly within (0, 100]
    /// (else [`Error::InvalidArgument`], VRAM-E007; NaN is rejected too).
    fn from_percents(percents: &[f64]) -> Result<Thresholds<L>> {
        debug_assert_eq!(percents.len(), L::THRESHOLD_NAMES.len());
        let rising = percents.iter().try_fold(0.0, |below, &p| (below < p).then_some(p));
        if !rising.is_some_and(|top| top <= 100.0) || percents.len() != L::LADDER.len() - 1 {
            let names = L::THRESHOLD_NAMES.join(" < ");
            let got: Vec<String> = L::THRESHOLD_NAMES.iter().zip(percents).map(|(n, p)| format!("{n} {p}")).collect();
            return Err(Error::InvalidArgument(format!(
                "{} thresholds must satisfy 0 < {names} <= 100; got {}",
                L::KIND,
                got.join(", ")
            )));
        }
        let mut bounds = [Threshold::new(100.0); MAX_THRESHOLDS];
        for (bound, &percent) in bounds.iter_mut().zip(percents) {
            *bound = Threshold::new(percent);
        }
        Ok(Thresholds { bounds, level: PhantomData })
    }

    fn bounds(&self) -> &[Threshold] {
        &self.bounds[..L::LADDER.len() - 1]
    }

    /// The thresholds in percent, lowest first.
    pub fn percents(&self) -> Vec<f64> {
        self.bounds().iter().map(Threshold::percent).collect()
    }

    /// The level of `used` bytes out of `capacity`, exactly. A zero capacity is the highest level.
    pub fn level_of(&self, used: u64, capacity: u64) -> L {
        L::LADDER[self.bounds().iter().take_while(|b| b.reached_by(used, capacity)).count()]
    }

    /// The level of a utilisation in percent. NaN is the highest level: an unknown figure must not
    /// look safe.
    pub fn level(&self, percent: f64) -> L {
        L::LADDER[self.bounds().iter().take_while(|b| percent.is_nan() || percent >= b.percent()).count()]
    }

    /// The most bytes out of `capacity` that stay below the highest level (0 when `capacity` is 0).
    pub fn below_critical_bytes(&self, capacity: u64) -> u64 {
        self.bounds().last().map_or(capacity, |top| top.bytes_below(capacity))
    }
}

impl<L: Level> fmt::Debug for Thresholds<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(L::THRESHOLD_NAMES.iter().zip(self.percents())).finish()
    }
}

/// As a map from each threshold's name to its percentage: `{"warning_percent": 80.0, ...}`.
impl<L: Level> Serialize for Thresholds<L> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(L::THRESHOLD_NAMES.len()))?;
        for (name, percent) in L::THRESHOLD_NAMES.iter().zip(self.percents()) {
            map.serialize_entry(name, &percent)?;
        }
        map.end()
    }
}

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

impl Level for MemoryPressure {
    const LADDER: &'static [MemoryPressure] = &MemoryPressure::ALL;
    const THRESHOLD_NAMES: &'static [&'static str] = &["medium", "high", "critical"];
    const KIND: &'static str = "pressure";
}

impl MemoryPressure {
    /// Every level, from Low to Critical.
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

/// Where each pressure level starts, in percent of the budget: exactly 50 % is Medium, exactly
/// 95 % is Critical.
pub type PressureThresholds = Thresholds<MemoryPressure>;

impl Default for Thresholds<MemoryPressure> {
    fn default() -> Self {
        PressureThresholds::new(50.0, 80.0, 95.0).expect("the default pressure thresholds rise")
    }
}

impl Thresholds<MemoryPressure> {
    /// Thresholds in percent; they must rise strictly within (0, 100] (else VRAM-E007).
    pub fn new(medium: f64, high: f64, critical: f64) -> Result<PressureThresholds> {
        Thresholds::from_percents(&[medium, high, critical])
    }

    /// Where Medium starts, in percent.
    pub fn medium(&self) -> f64 {
        self.bounds[0].percent()
    }

    /// Where High starts, in percent.
    pub fn high(&self) -> f64 {
        self.bounds[1].percent()
    }

    /// Where Critical starts, in percent.
    pub fn critical(&self) -> f64 {
        self.bounds[2].percent()
    }
}

/// How full a device is against the GPU monitor's thresholds, or a reservation guard's budget
/// against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AlertLevel {
    /// Below the warning threshold.
    Normal,
    /// From the warning threshold up to the critical one.
    Warning,
    /// At or above the critical threshold: the monitor unloads idle models.
    Critical,
}

impl Level for AlertLevel {
    const LADDER: &'static [AlertLevel] = &[AlertLevel::Normal, AlertLevel::Warning, AlertLevel::Critical];
    const THRESHOLD_NAMES: &'static [&'static str] = &["warning_percent", "critical_percent"];
    const KIND: &'static str = "alert";
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

/// Where Warning and Critical start, in percent of the capacity (a device's total memory, a
/// reservation guard's budget): exactly 80 % is Warning, exactly 90 % is Critical.
pub type AlertThresholds = Thresholds<AlertLevel>;

impl Default for Thresholds<AlertLevel> {
    fn default() -> Self {
        AlertThresholds::new(80.0, 90.0).expect("the default alert thresholds rise")
    }
}

impl Thresholds<AlertLevel> {
    /// Thresholds in percent; they must satisfy `0 < warning < critical <= 100`
    /// (else [`Error::InvalidArgument`], VRAM-E007; NaN is rejected too).
    pub fn new(warning_percent: f64, critical_percent: f64) -> Result<AlertThresholds> {
        Thresholds::from_percents(&[warning_percent, critical_percent])
    }

    /// Where Warning starts, in percent.
    pub fn warning_percent(&self) -> f64 {
        self.bounds[0].percent()
    }

    /// Where Critical starts, in percent.
    pub fn critical_percent(&self) -> f64 {
        self.bounds[1].percent()
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
