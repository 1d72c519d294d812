//! How often the health monitor checks, what it checks, and when a verdict stops being trusted.
use std::time::Duration;

use crate::error::{Error, Result};
use crate::purpose::{Purpose, PurposeSet};

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
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(60),
            purposes: PurposeSet::of(&[Purpose::ModelWeights, Purpose::KVCache, Purpose::IntermediateBuffers]),
            stale_after: 3,
            check_deadline: Duration::from_secs(30),
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
