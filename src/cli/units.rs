//! Command-line quantities: durations like `60s`, `500ms`, `2m` and sizes like `8GiB`, `500MB`.
//!
//! Both are read exactly, in integers, never through a float: a decimal number (ASCII digits,
//! `_` allowed as a separator, an optional fraction after `.`) followed by an optional unit. No
//! sign, no exponent (`1e3`), no `inf` or `NaN`. A fraction is accepted only where the result is
//! whole: `1.5GiB` is 1,610,612,736 bytes, `0.1KiB` (102.4 bytes) is refused.
use std::time::Duration;

use crate::health::MIN_CHECK_INTERVAL;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// `--interval`: `500ms`, `60s`, `2m`, or a bare number of seconds (fractions allowed, down to
/// whole nanoseconds). Refused: zero or negative, below [`MIN_CHECK_INTERVAL`] (10 ms: faster
/// checks would compete with the worker for the driver), 10⁹ s or more.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let units = [("ms", 1_000_000), ("s", NANOS_PER_SECOND), ("m", 60 * NANOS_PER_SECOND), ("", NANOS_PER_SECOND)];
    let nanos = match parse_scaled(text, &units)? {
        Scaled::Whole(nanos) => nanos,
        Scaled::Fractional => return Err(format!("{text:?} is not a whole number of nanoseconds")),
        Scaled::TooLarge => return Err(format!("{text:?} is not a duration below 1e9 s")),
    };
    if nanos == 0 {
        return Err(format!("{text:?} is not a positive duration"));
    }
    if nanos >= 1_000_000_000 * NANOS_PER_SECOND {
        return Err(format!("{text:?} is not a duration below 1e9 s"));
    }
    let duration = Duration::from_nanos(nanos as u64); // below 10^18: fits
    if duration < MIN_CHECK_INTERVAL {
        return Err(format!("{text:?} is shorter than the shortest check interval, {MIN_CHECK_INTERVAL:?}"));
    }
    Ok(duration)
}

/// `--budget`: `8GiB`, `512MiB`, `1.5GB`, `4096` (bytes). Binary units KiB…TiB, decimal KB…TB,
/// `B` or none for bytes. Refused: zero, fractions of a byte, more than `u64::MAX` bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let units = [
        ("TiB", 1u128 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
        ("B", 1),
        ("", 1),
    ];
    match parse_scaled(text, &units)? {
        Scaled::Whole(bytes) if bytes >= 1 => {
            u64::try_from(bytes).map_err(|_| format!("{text:?} is more than {} bytes", u64::MAX))
        }
        Scaled::Whole(_) => Err(format!("{text:?} is not a size of at least 1 byte")),
        Scaled::Fractional => Err(format!("{text:?} is not a whole number of bytes")),
        Scaled::TooLarge => Err(format!("{text:?} is more than {} bytes", u64::MAX)),
    }
}

/// A number times its unit's scale.
#[derive(Debug, PartialEq, Eq)]
enum Scaled {
    Whole(u128),
    /// Not a whole number of the base unit.
    Fractional,
    /// Beyond u128 on the way (and so beyond any limit of the callers).
    TooLarge,
}

/// The first unit (in the order given: longer suffixes first) whose suffix the text ends with
/// and whose rest is a [`Decimal`].
fn parse_scaled(text: &str, units: &[(&str, u128)]) -> Result<Scaled, String> {
    for (unit, scale) in units {
        if let Some(number) = text.strip_suffix(unit) {
            if let Some(decimal) = Decimal::parse(number.trim()) {
                return Ok(decimal.times(*scale));
            }
        }
    }
    Err(format!("cannot read {text:?}: expected digits, an optional fraction and a unit"))
}

/// `digits` / 10^`scale`, exactly. `None` from `parse` when the text is not a plain decimal or
/// has more digits than a u128 holds (which no quantity here needs).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    digits: u128,
    scale: u32,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let text: String = text.chars().filter(|c| *c != '_').collect();
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, fraction.trim_end_matches('0')),
            None => (text.as_str(), ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty() && !text.contains(|c: char| c.is_ascii_digit()) {
            return None; // "", ".", "_": no digit at all
        }
        if !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        let mut digits = 0u128;
        for b in whole.bytes().chain(fraction.bytes()) {
            digits = digits.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
        }
        Some(Decimal { digits, scale: fraction.len() as u32 })
    }

    fn times(&self, unit: u128) -> Scaled {
        let Some(product) = self.digits.checked_mul(unit) else { return Scaled::TooLarge };
        let Some(divisor) = 10u128.checked_pow(self.scale) else { return Scaled::Fractional };
        if product % divisor == 0 {
            Scaled::Whole(product / divisor)
        } else {
            Scaled::Fractional
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration(" 10ms ").unwrap(), MIN_CHECK_INTERVAL);
        assert_eq!(parse_duration("0.010000001s").unwrap(), Duration::from_nanos(10_000_001));
        for bad in
            ["0s", "-1s", "abc", "", "1h", "NaN", "1e3", "1e-2", "+5s", "1ns", "9ms", "0.009999999s", "0.0100000001s"]
        {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("0.5KiB").unwrap(), 512);
        assert_eq!(parse_bytes("4_096").unwrap(), 4096);
        assert_eq!(parse_bytes("10B").unwrap(), 10);
        assert_eq!(parse_bytes("2.000GB").unwrap(), 2_000_000_000);
        for bad in ["0", "-1GiB", "lots", "", "1PiB", "1e3", "1E3", "0.1KiB", "1.3B", "+8GiB", "8.GiB.5", "0x10"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    /// Above 2^53 an f64 cannot hold every integer: these were rounded before.
    #[test]
    fn sizes_are_exact_beyond_two_to_the_53() {
        assert_eq!(parse_bytes("9007199254740993").unwrap(), (1 << 53) + 1);
        assert_eq!(parse_bytes("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(parse_bytes("18446744073709551615B").unwrap(), u64::MAX);
        assert!(parse_bytes("18446744073709551616").is_err());
        assert_eq!(parse_bytes("16777215.5TiB").unwrap(), u64::MAX - (1 << 39) + 1);
        assert!(parse_bytes("340282366920938463463374607431768211456").is_err(), "past u128: refused, no panic");
    }

    #[test]
    fn decimals_are_read_exactly() {
        assert_eq!(Decimal::parse("1.50"), Some(Decimal { digits: 15, scale: 1 }));
        assert_eq!(Decimal::parse("007"), Some(Decimal { digits: 7, scale: 0 }));
        assert_eq!(Decimal::parse(".5"), Some(Decimal { digits: 5, scale: 1 }));
        assert_eq!(Decimal::parse("5."), Some(Decimal { digits: 5, scale: 0 }));
        for bad in ["", ".", "_", "1.2.3", "1e3", "-1", "+1", "inf", "NaN", "١"] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
    }
}
