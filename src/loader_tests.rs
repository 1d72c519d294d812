//! The loader's arguments, judged before any device is touched (this machine may have none).
use std::time::Duration;

use super::*;

#[test]
fn a_load_timeout_of_zero_is_refused_before_the_device() {
    let config = LoaderConfig { load_timeout: Some(Duration::ZERO), ..LoaderConfig::default() };
    let error = WeightsLoader::new(0, &config).expect_err("a zero load timeout was accepted");
    assert_eq!(error.code(), "VRAM-E003", "{error}");
    assert!(error.to_string().contains("load timeout of 0 ms"), "{error}");
}

#[test]
fn load_timeouts_travel_in_whole_milliseconds_rounded_up() {
    assert!(timeout_ms(Duration::ZERO).is_err());
    assert_eq!(timeout_ms(Duration::from_nanos(1)).ok(), Some(1));
    assert_eq!(timeout_ms(Duration::from_micros(1500)).ok(), Some(2));
    assert_eq!(timeout_ms(Duration::from_secs(3)).ok(), Some(3000));
    assert_eq!(timeout_ms(Duration::MAX).ok(), Some(u64::MAX));
}

/// Without a GPU, a valid configuration gets as far as the device, and says there is none.
#[test]
fn a_valid_timeout_reaches_the_device() {
    if crate::device_count().map(|n| n > 0).unwrap_or(false) {
        return; // with a GPU the loader is made: the device tests load through it
    }
    let config = LoaderConfig { load_timeout: Some(Duration::from_millis(1)), ..LoaderConfig::default() };
    let error = WeightsLoader::new(0, &config).expect_err("a loader without a GPU");
    assert_eq!(error.code(), "VRAM-E001", "{error}");
}
