//! How a monitor is configured, and the checks that reject a configuration that cannot work.
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::health::MIN_CHECK_INTERVAL;
use crate::pressure::AlertThresholds;

/// A [`super::GpuMonitor`]'s settings. `Default` gives 5 s, 80 % / 90 %, 100 entries, no dumps.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Time between background checks: at least [`MIN_CHECK_INTERVAL`] (10 ms), as for the
    /// health checks — a check reads every device, and faster it would only compete with the
    /// worker for the driver.
    pub interval: Duration,
    /// Warning starts at this utilisation, in percent.
    pub warning_percent: f64,
    /// Critical starts here; must be above warning and at most 100.
    pub critical_percent: f64,
    /// Readings kept per device (oldest dropped); at least 1.
    pub history_len: usize,
    /// Where the out-of-memory hook writes JSON dumps; `None` writes none.
    pub dump_dir: Option<PathBuf>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(5),
            warning_percent: 80.0,
            critical_percent: 90.0,
            history_len: 100,
            dump_dir: None,
        }
    }
}

impl MonitorConfig {
    /// The thresholds, or [`Error::InvalidArgument`] (VRAM-E007) naming what is wrong.
    pub fn validate(&self) -> Result<AlertThresholds> {
        if self.interval < MIN_CHECK_INTERVAL {
            return Err(Error::InvalidArgument(format!(
                "monitor interval is {:?}; it must be at least {MIN_CHECK_INTERVAL:?}",
                self.interval
            )));
        }
        if self.history_len == 0 {
            return Err(Error::InvalidArgument("monitor history_len must be at least 1".to_string()));
        }
        AlertThresholds::new(self.warning_percent, self.critical_percent)
    }
}
