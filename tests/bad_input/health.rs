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
