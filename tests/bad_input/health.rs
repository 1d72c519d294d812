//! `HealthConfig` and `HealthMonitor::new`: intervals and deadlines out of range, an empty purpose set.
use std::time::Duration;

use vramguard::health::{HealthConfig, HealthMonitor, MAX_CHECK_INTERVAL, MIN_CHECK_INTERVAL};
use vramguard::{Purpose, PurposeSet, Tracker};

use super::code;

#[test]
fn a_zero_check_interval_is_e007() {
    let config = HealthConfig { interval: Duration::ZERO, ..HealthConfig::default() };
    assert_eq!(code(config.validate()), "VRAM-E007");
    assert_eq!(code(HealthMonitor::new(Tracker::new(0).unwrap(), config)), "VRAM-E007");
}

#[test]
fn an_empty_purpose_set_is_e007() {
    let config = HealthConfig { purposes: PurposeSet::of(&[]), ..HealthConfig::default() };
    assert_eq!(code(config.validate()), "VRAM-E007");
    assert_eq!(code(HealthMonitor::new(Tracker::new(0).unwrap(), config)), "VRAM-E007");
}

#[test]
fn one_purpose_and_the_shortest_interval_are_enough() {
    let config = HealthConfig {
        interval: MIN_CHECK_INTERVAL,
        purposes: PurposeSet::of(&[Purpose::Unknown]),
        ..HealthConfig::default()
    };
    assert!(HealthMonitor::new(Tracker::new(0).unwrap(), config).is_ok());
}

/// A nanosecond interval would spin the checker against the driver's lock; a century one
/// (or `Duration::MAX`) would overflow every deadline computed from it.
#[test]
fn intervals_and_deadlines_out_of_range_are_e007() {
    let just_below = MIN_CHECK_INTERVAL - Duration::from_nanos(1);
    for interval in [Duration::from_nanos(1), just_below, MAX_CHECK_INTERVAL + Duration::from_secs(1), Duration::MAX] {
        let config = HealthConfig { interval, ..HealthConfig::default() };
        assert_eq!(code(config.validate()), "VRAM-E007", "interval {interval:?}");
        assert_eq!(code(HealthMonitor::new(Tracker::new(0).unwrap(), config)), "VRAM-E007", "interval {interval:?}");
    }
    for check_deadline in [Duration::ZERO, just_below, Duration::MAX] {
        let config = HealthConfig { check_deadline, ..HealthConfig::default() };
        assert_eq!(code(config.validate()), "VRAM-E007", "deadline {check_deadline:?}");
    }
    for stale_after in [0, 1001, u32::MAX] {
        let config = HealthConfig { stale_after, ..HealthConfig::default() };
        assert_eq!(code(config.validate()), "VRAM-E007", "stale_after {stale_after}");
    }
    let longest = HealthConfig {
        interval: MAX_CHECK_INTERVAL,
        check_deadline: MAX_CHECK_INTERVAL,
        stale_after: 1000,
        ..HealthConfig::default()
    };
    assert!(longest.validate().is_ok());
}

/// The bandwidth witness's settings: a full pass in 1..=1000 checks, readings of 1 MiB..=16 GiB.
#[test]
fn witness_settings_out_of_range_are_e007() {
    use vramguard::witness::WitnessConfig;
    for witness in [
        WitnessConfig { full_pass_checks: 0, ..WitnessConfig::default() },
        WitnessConfig { full_pass_checks: 1001, ..WitnessConfig::default() },
        WitnessConfig { min_bytes_read: (1 << 20) - 1, ..WitnessConfig::default() },
        WitnessConfig { min_bytes_read: (16 << 30) + 1, ..WitnessConfig::default() },
        WitnessConfig { confirm_windows: 1, ..WitnessConfig::default() },
        WitnessConfig { confirm_windows: 17, ..WitnessConfig::default() },
    ] {
        let config = HealthConfig { witness: Some(witness), ..HealthConfig::default() };
        assert_eq!(code(config.validate()), "VRAM-E007", "{witness:?}");
        assert_eq!(code(HealthMonitor::new(Tracker::new(0).unwrap(), config)), "VRAM-E007", "{witness:?}");
    }
    let edges = [
        WitnessConfig { full_pass_checks: 1, min_bytes_read: 1 << 20, confirm_windows: 2 },
        WitnessConfig { full_pass_checks: 1000, min_bytes_read: 16 << 30, confirm_windows: 16 },
    ];
    for witness in edges {
        assert!(HealthConfig { witness: Some(witness), ..HealthConfig::default() }.validate().is_ok());
    }
    assert!(HealthConfig { witness: None, ..HealthConfig::default() }.validate().is_ok());
}

/// The leak trend's window: 2..=10,000 checks.
#[test]
fn leak_window_out_of_range_is_e007() {
    for leak_window_checks in [0, 1, 10_001, u32::MAX] {
        let config = HealthConfig { leak_window_checks, ..HealthConfig::default() };
        assert_eq!(code(config.validate()), "VRAM-E007", "window {leak_window_checks}");
    }
    for leak_window_checks in [2, 10_000] {
        assert!(HealthConfig { leak_window_checks, ..HealthConfig::default() }.validate().is_ok());
    }
}
