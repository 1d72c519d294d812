//! `cli::parse_bytes` and `cli::parse_duration` (the `--budget` and `--interval` parsers). They
//! answer clap with a message naming the input, not a coded error: each refusal is an `Err`
//! whose text quotes what was given (trimmed, as Rust's `{:?}` writes it).
use std::time::Duration;

use vramguard::cli::{parse_bytes, parse_duration};

fn bytes_refused(inputs: &[&str]) {
    for input in inputs {
        let message = parse_bytes(input).expect_err(input);
        assert!(message.contains(&format!("{:?}", input.trim())), "{input:?}: {message}");
    }
}

fn duration_refused(inputs: &[&str]) {
    for input in inputs {
        let message = parse_duration(input).expect_err(input);
        assert!(message.contains(&format!("{:?}", input.trim())), "{input:?}: {message}");
    }
}

#[test]
fn parse_bytes_refuses_garbage() {
    bytes_refused(&[
        "", " ", "lots", "GiB", "8 gigs", "8gib", "8GiBGiB", "0x10", "8,000", "_", "8 G iB", "1PiB", "1EiB", "8\0GiB",
        "٨GiB",
    ]);
}

#[test]
fn parse_bytes_refuses_zero_negative_and_fractions_of_a_byte() {
    bytes_refused(&["0", "0B", "0GiB", "-0", "-1", "-1GiB", "0.4", "0.4B", "1e-12GiB"]);
}

#[test]
fn parse_bytes_refuses_nan_and_infinity() {
    bytes_refused(&["NaN", "nanGiB", "inf", "infinity", "-inf", "infGiB"]);
}

#[test]
fn parse_bytes_refuses_sizes_beyond_u64() {
    bytes_refused(&["1e30GiB", "1e20", "20000000000000000000", "17000000TiB", "1.8e308TiB"]);
}

#[test]
fn parse_bytes_refuses_two_to_the_64() {
    bytes_refused(&["18446744073709551616", "16777216TiB", "18446744073709551999"]);
}

#[test]
fn parse_duration_refuses_garbage_and_unknown_units() {
    duration_refused(&["", "soon", "s", "ms", "1h", "1d", "1 µs", "1us", "1ns", "5 m s", "0x10s", "1:30"]);
}

#[test]
fn parse_duration_refuses_zero_and_negative() {
    duration_refused(&["0", "0s", "0ms", "0m", "-0", "-1s", "-500ms", "-0.001"]);
}

#[test]
fn parse_duration_refuses_nan_and_infinity() {
    duration_refused(&["NaN", "nans", "inf", "infs", "-infms"]);
}

#[test]
fn parse_duration_refuses_overflow() {
    duration_refused(&["1e9", "1e9s", "1e30m", "99999999999999999999s", "1.8e308ms"]);
}

/// "Positive" must survive the conversion: a duration that rounds to zero nanoseconds is a zero
/// interval, which HealthConfig later refuses (VRAM-E007) instead of the parser naming the input.
#[test]
fn parse_duration_refuses_durations_that_round_to_zero() {
    duration_refused(&["1e-300", "0.0000000001s", "1e-7ms"]);
}

/// Defect: a 1 ns check interval was accepted. (This test said the smallest accepted duration
/// was 1 ns; it is now the shortest check interval, 10 ms, and the parser names the input.)
#[test]
fn the_smallest_accepted_duration_is_the_shortest_check_interval() {
    assert_eq!(vramguard::health::MIN_CHECK_INTERVAL, Duration::from_millis(10));
    assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
    assert_eq!(parse_duration("0.01"), Ok(Duration::from_millis(10)));
    assert_eq!(parse_duration("0.010000001s"), Ok(Duration::from_nanos(10_000_001)));
    duration_refused(&["0.000000001s", "1ns", "9ms", "9.999999ms", "0.009999999", "0.0099999999s"]);
}

/// Durations are read exactly too: no exponent, no sign, no sub-nanosecond digits.
#[test]
fn parse_duration_refuses_exponents_signs_and_fractions_of_a_nanosecond() {
    duration_refused(&["1e3", "1E3s", "6e4ms", "+60s", "1.5e1s", "0.0100000001s"]);
    assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
}

/// Defect: sizes went through f64, which holds no odd integer above 2^53 and read `1e3`.
#[test]
fn parse_bytes_is_exact_above_two_to_the_53() {
    assert_eq!(parse_bytes("9007199254740993"), Ok((1 << 53) + 1));
    assert_eq!(parse_bytes("9_007_199_254_740_993B"), Ok((1 << 53) + 1));
    assert_eq!(parse_bytes("18446744073709551615"), Ok(u64::MAX));
    assert_eq!(parse_bytes("18446744073709551614"), Ok(u64::MAX - 1));
    assert_eq!(parse_bytes("16777215TiB"), Ok(u64::MAX - (1 << 40) + 1));
}

#[test]
fn parse_bytes_refuses_exponents_and_signs() {
    bytes_refused(&["1e3", "1E3", "1e3B", "8e9GiB", "1.5e9", "+8GiB", "+1"]);
}

/// A fraction is accepted where the bytes come out whole, and refused where they do not.
#[test]
fn parse_bytes_takes_exact_fractions_only() {
    assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
    assert_eq!(parse_bytes("0.25KiB"), Ok(256));
    assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
    assert_eq!(parse_bytes("2.000B"), Ok(2));
    bytes_refused(&["0.1KiB", "1.3B", "1.0000000001GB", "0.5"]);
}
