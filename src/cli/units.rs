//! Command-line quantities: durations like `60s`, `500ms`, `2m` and sizes like `8GiB`, `500MB`.
use std::time::Duration;

/// `500ms`, `60s`, `2m`, or a bare number of seconds (fractions allowed).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = split_unit(text, &[("ms", 0.001), ("s", 1.0), ("m", 60.0), ("", 1.0)])?;
    let seconds = number * scale;
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e9) {
        return Err(format!("{text:?} is not a positive duration"));
    }
    let duration = Duration::from_secs_f64(seconds);
    if duration.is_zero() {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(duration)
}

/// `8GiB`, `512MiB`, `1.5GB`, `4096` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let units = [
        ("TiB", (1u64 << 40) as f64),
        ("GiB", (1u64 << 30) as f64),
        ("MiB", (1u64 << 20) as f64),
        ("KiB", 1024.0),
        ("TB", 1e12),
        ("GB", 1e9),
        ("MB", 1e6),
        ("KB", 1e3),
        ("B", 1.0),
        ("", 1.0),
    ];
    let (number, scale) = split_unit(text, &units)?;
    let bytes = number * scale;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?} is not a size of at least 1 byte"));
    }
    Ok(bytes.round() as u64)
}

fn split_unit(text: &str, units: &[(&str, f64)]) -> Result<(f64, f64), String> {
    for (unit, scale) in units {
        if let Some(number) = text.strip_suffix(unit) {
            if let Ok(value) = number.trim().replace('_', "").parse::<f64>() {
                return Ok((value, *scale));
            }
        }
    }
    Err(format!("cannot read {text:?}"))
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
        for bad in ["0s", "-1s", "abc", "", "1h", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("4_096").unwrap(), 4096);
        assert_eq!(parse_bytes("10B").unwrap(), 10);
        for bad in ["0", "-1GiB", "lots", "", "1PiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
