//! How often the health monitor checks, what it checks, and when a verdict stops being trusted.
use std::time::Duration;

use crate::error::{Error, Result};
use crate::purpose::{Purpose, PurposeSet};
use crate::witness::WitnessConfig;

/// The shortest interval accepted: a check reads every tracked pointer and the device's free
/// memory, and faster than this it would compete with the worker for the driver's lock.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// The longest interval or deadline accepted: beyond a day the verdict means nothing, and
/// deadlines computed from it could overflow `Instant`.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// How the health monitor checks: how often, which purposes, and when its verdict is stale or a
/// check failed. [`HealthConfig::validate`] says what is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between checks: 60 s by default, down to [`MIN_CHECK_INTERVAL`] for tests.
    pub interval: Duration,
    /// Purposes whose allocations must be resident: everything but Unknown by default.
    pub purposes: PurposeSet,
    /// A verdict whose last completed check is older than `stale_after` intervals is served as
    /// `stale` (503 on `/health` and `/health/ready`): the checker is stuck or gone, and an old
    /// "healthy" must not keep a worker in rotation. 3 by default.
    pub stale_after: u32,
    /// A check still running after this long counts as failed, and the one that finally ends
    /// past it too: a device that takes this long to answer is not serving. 30 s by default;
    /// also the longest the integrity checksum waits for the GPU.
    pub check_deadline: Duration,
    /// The bandwidth witness over `ModelWeights` allocations (on by default; `None` turns it
    /// off): see [`crate::witness`].
    pub witness: Option<WitnessConfig>,
    /// About how many of vramguard's own `Device` and `Pool` allocations each check queries with
    /// `cudaPointerGetAttributes` (a different part each check); recorded and adopted pointers,
    /// and own managed and pinned host memory, are queried every check. 1,024 by default;
    /// `u64::MAX` queries every allocation every check (see [`crate::Tracker::verify_sampled`]).
    pub own_queries_per_check: u64,
    /// The leak trend's window: a figure (the untracked remainder, or a purpose's tracked bytes)
    /// that never fell over this many checks and grew by at least `leak_min_growth_bytes` is a
    /// suspected leak ([`super::ledger`]). 10 by default; 2..=10,000.
    pub leak_window_checks: u32,
    /// The least growth over the window that is flagged: 256 MiB by default.
    pub leak_min_growth_bytes: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(60),
            purposes: PurposeSet::of(&[Purpose::ModelWeights, Purpose::KVCache, Purpose::IntermediateBuffers]),
            stale_after: 3,
            check_deadline: Duration::from_secs(30),
            witness: Some(WitnessConfig::default()),
            own_queries_per_check: 1024,
            leak_window_checks: 10,
            leak_min_growth_bytes: 256 << 20,
        }
    }
}

impl HealthConfig {
    /// VRAM-E007 for an interval or deadline out of range, a zero stale multiple, or no purpose.
    pub fn validate(&self) -> Result<()> {
        let in_range = |d: Duration| (MIN_CHECK_INTERVAL..=MAX_CHECK_INTERVAL).contains(&d);
        if !in_range(self.interval) {
            return Err(Error::InvalidArgument(format!(
                "the health check interval is {:?}; it must be between {MIN_CHECK_INTERVAL:?} and {MAX_CHECK_INTERVAL:?}",
                self.interval
            )));
        }
        if !in_range(self.check_deadline) {
            return Err(Error::InvalidArgument(format!(
                "the health check deadline is {:?}; it must be between {MIN_CHECK_INTERVAL:?} and {MAX_CHECK_INTERVAL:?}",
                self.check_deadline
            )));
        }
        if self.stale_after == 0 || self.stale_after > 1000 {
            return Err(Error::InvalidArgument(format!(
                "stale_after is {} intervals; it must be between 1 and 1000",
                self.stale_after
            )));
        }
        if !(2..=10_000).contains(&self.leak_window_checks) {
            return Err(Error::InvalidArgument(format!(
                "the leak trend's window is {} checks; it must be between 2 and 10,000",
                self.leak_window_checks
            )));
        }
        if let Some(witness) = &self.witness {
            witness.validate()?;
        }
        if self.purposes == PurposeSet::of(&[]) {
            return Err(Error::InvalidArgument("the health check needs at least one purpose".into()));
        }
        Ok(())
    }

    /// How old the last completed check may be before the verdict is stale.
    pub fn stale_after_duration(&self) -> Duration {
        self.interval.saturating_mul(self.stale_after)
    }
}
