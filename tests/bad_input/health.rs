//! `HealthConfig` and `HealthMonitor::new`: a zero interval and an empty purpose set.
use std::time::Duration;

use vramguard::health::{HealthConfig, HealthMonitor};
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
fn one_purpose_and_a_nanosecond_are_enough() {
    let config = HealthConfig { interval: Duration::from_nanos(1), purposes: PurposeSet::of(&[Purpose::Unknown]) };
    assert!(HealthMonitor::new(Tracker::new(0).unwrap(), config).is_ok());
}
