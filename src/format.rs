//! Byte counts for people: "1.50 GiB (1,610,612,736 bytes)".

/// Exact count with thousands separators.
pub fn bytes_exact(bytes: u64) -> String {
    let digits = bytes.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Binary-unit figure followed by the exact count.
pub fn bytes_human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {} ({} bytes)", UNITS[unit], bytes_exact(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_counts_group_thousands() {
        assert_eq!(bytes_exact(0), "0");
        assert_eq!(bytes_exact(999), "999");
        assert_eq!(bytes_exact(1000), "1,000");
        assert_eq!(bytes_exact(8_589_934_592), "8,589,934,592");
    }

    #[test]
    fn human_counts_use_binary_units() {
        assert_eq!(bytes_human(512), "512 B");
        assert_eq!(bytes_human(1 << 30), "1.00 GiB (1,073,741,824 bytes)");
        assert_eq!(bytes_human(1_610_612_736), "1.50 GiB (1,610,612,736 bytes)");
    }
}
