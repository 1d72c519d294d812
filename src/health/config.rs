//! How often and what the health monitor checks.
use std::time::Duration;

use crate::error::{Error, Result};
use crate::purpose::{Purpose, PurposeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between checks: 60 s by default (seed 002), down to milliseconds for tests.
    pub interval: Duration,
    /// Purposes whose allocations must be resident: everything but Unknown by default.
    pub purposes: PurposeSet,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(60),
            purposes: PurposeSet::of(&[Purpose::ModelWeights, Purpose::KVCache, Purpose::IntermediateBuffers]),
        }
    }
}

impl HealthConfig {
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::InvalidArgument("the health check interval must be above zero".into()));
        }
        if self.purposes == PurposeSet::of(&[]) {
            return Err(Error::InvalidArgument("the health check needs at least one purpose".into()));
        }
        Ok(())
    }
}
