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
    bytes_refused(&["", " ", "lots", "GiB", "8 gigs", "8gib", "8GiBGiB", "0x10", "8,000", "_", "8 G iB", "1PiB", "1EiB", "8\0GiB", "٨GiB"]);
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

#[test]
fn the_smallest_accepted_duration_is_not_zero() {
    assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
}
