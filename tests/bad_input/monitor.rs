//! `GpuMonitor`, `MonitorConfig` and `AlertThresholds`: an interval of zero or below 10 ms, no history, thresholds
//! out of order, NaN or beyond 100 %, a device no host has, and a dump directory that is not one.
use std::path::Path;

use vramguard::monitor::{AlertThresholds, GpuMonitor, MonitorConfig};

use super::{code, is_unusable_device, UNUSABLE_DEVICE};

fn config_with(warning: f64, critical: f64) -> MonitorConfig {
    MonitorConfig { warning_percent: warning, critical_percent: critical, ..MonitorConfig::default() }
}

/// (warning, critical) pairs that `0 < warning < critical <= 100` rules out.
const BAD_THRESHOLDS: [(f64, f64); 10] = [
    (90.0, 80.0),
    (80.0, 80.0),
    (0.0, 90.0),
    (-5.0, 90.0),
    (80.0, 100.5),
    (101.0, 150.0),
    (f64::NAN, 90.0),
    (80.0, f64::NAN),
    (80.0, f64::INFINITY),
    (f64::NEG_INFINITY, 90.0),
];

#[test]
fn a_zero_interval_is_e007() {
    let config = MonitorConfig { interval: std::time::Duration::ZERO, ..MonitorConfig::default() };
    assert_eq!(code(config.validate()), "VRAM-E007");
    assert_eq!(code(GpuMonitor::new(config)), "VRAM-E007");
}

/// A 1 ns interval is a busy loop on the driver: refused below the shortest check interval.
#[test]
fn an_interval_below_10_ms_is_e007() {
    use std::time::Duration;
    for interval in
        [Duration::from_nanos(1), Duration::from_millis(1), Duration::from_millis(10) - Duration::from_nanos(1)]
    {
        let config = MonitorConfig { interval, ..MonitorConfig::default() };
        assert_eq!(code(GpuMonitor::new(config)), "VRAM-E007", "{interval:?}");
    }
    let shortest = MonitorConfig { interval: vramguard::health::MIN_CHECK_INTERVAL, ..MonitorConfig::default() };
    assert!(GpuMonitor::new(shortest).is_ok());
}

#[test]
fn a_history_of_zero_entries_is_e007() {
    let config = MonitorConfig { history_len: 0, ..MonitorConfig::default() };
    assert_eq!(code(GpuMonitor::new(config)), "VRAM-E007");
}

#[test]
fn monitor_thresholds_out_of_order_nan_or_beyond_100_are_e007() {
    for (warning, critical) in BAD_THRESHOLDS {
        assert_eq!(code(GpuMonitor::new(config_with(warning, critical))), "VRAM-E007", "{warning}, {critical}");
    }
}

#[test]
fn alert_thresholds_out_of_order_nan_or_beyond_100_are_e007() {
    for (warning, critical) in BAD_THRESHOLDS {
        assert_eq!(code(AlertThresholds::new(warning, critical)), "VRAM-E007", "{warning}, {critical}");
    }
    assert!(AlertThresholds::new(0.001, 100.0).is_ok(), "the bounds themselves are valid");
}

#[test]
fn can_load_model_on_a_device_no_host_has_is_e001_or_e010() {
    let monitor = GpuMonitor::new(MonitorConfig::default()).unwrap();
    for bytes in [0, 1, u64::MAX] {
        let code = code(monitor.can_load_model(UNUSABLE_DEVICE, bytes));
        assert!(is_unusable_device(code), "{bytes}: {code}");
    }
    assert_eq!((monitor.checks_run(), monitor.devices()), (0, vec![]), "asking is not a check");
}

#[test]
fn a_dump_into_a_directory_that_is_not_one_is_e017() {
    let monitor = GpuMonitor::new(MonitorConfig::default()).unwrap();
    let a_file = std::env::current_exe().unwrap();
    for dir in [Path::new("/nonexistent/vramguard-dumps"), a_file.as_path()] {
        assert_eq!(code(monitor.write_dump(dir)), "VRAM-E017", "{}", dir.display());
    }
    assert_eq!(monitor.last_dump(), None);
}
