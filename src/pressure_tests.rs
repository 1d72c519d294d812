use super::*;

#[test]
fn default_levels_at_each_boundary() {
    let cases = [
        (0.0, MemoryPressure::Low),
        (49.99, MemoryPressure::Low),
        (50.0, MemoryPressure::Medium),
        (79.99, MemoryPressure::Medium),
        (80.0, MemoryPressure::High),
        (94.99, MemoryPressure::High),
        (95.0, MemoryPressure::Critical),
        (96.0, MemoryPressure::Critical),
        (100.0, MemoryPressure::Critical),
        (130.0, MemoryPressure::Critical),
    ];
    for (percent, level) in cases {
        assert_eq!(MemoryPressure::from_utilization(percent), level, "{percent} %");
    }
    assert_eq!(MemoryPressure::from_utilization(f32::NAN), MemoryPressure::Critical);
}

#[test]
fn only_critical_evicts() {
    let evicting: Vec<_> = MemoryPressure::ALL.into_iter().filter(MemoryPressure::should_evict).collect();
    assert_eq!(evicting, [MemoryPressure::Critical]);
}

#[test]
fn integer_levels_match_the_boundaries_exactly() {
    let t = PressureThresholds::default();
    assert_eq!(t.level_of(499, 1000), MemoryPressure::Low);
    assert_eq!(t.level_of(500, 1000), MemoryPressure::Medium);
    assert_eq!(t.level_of(800, 1000), MemoryPressure::High);
    assert_eq!(t.level_of(949, 1000), MemoryPressure::High);
    assert_eq!(t.level_of(950, 1000), MemoryPressure::Critical);
    assert_eq!(t.level_of(960, 1000), MemoryPressure::Critical);
    assert_eq!(t.level_of(0, 0), MemoryPressure::Critical);
    // 95 % of 8 GiB is not a whole number of bytes: one byte below stays High.
    let budget = 8u64 << 30;
    let below = t.below_critical_bytes(budget);
    assert_eq!(t.level_of(below, budget), MemoryPressure::High);
    assert_eq!(t.level_of(below + 1, budget), MemoryPressure::Critical);
    assert_eq!(t.below_critical_bytes(1000), 949);
}

#[test]
fn configurable_thresholds_are_validated() {
    let t = PressureThresholds::new(60.0, 70.0, 90.0).unwrap();
    assert_eq!(t.level(59.9), MemoryPressure::Low);
    assert_eq!(t.level(60.0), MemoryPressure::Medium);
    assert_eq!(t.level(70.0), MemoryPressure::High);
    assert_eq!(t.level(90.0), MemoryPressure::Critical);
    for (m, h, c) in
        [(0.0, 50.0, 90.0), (50.0, 50.0, 90.0), (50.0, 80.0, 79.0), (50.0, 80.0, 100.1), (f64::NAN, 80.0, 95.0)]
    {
        let error = PressureThresholds::new(m, h, c).unwrap_err();
        assert_eq!(error.code(), "VRAM-E007", "{m} {h} {c}");
    }
}

#[test]
fn alert_levels_are_the_same_ladder_with_two_thresholds() {
    let t = AlertThresholds::default();
    assert_eq!((t.warning_percent(), t.critical_percent()), (80.0, 90.0));
    assert_eq!(t.level_of(799, 1000), AlertLevel::Normal);
    assert_eq!(t.level_of(800, 1000), AlertLevel::Warning);
    assert_eq!(t.level_of(900, 1000), AlertLevel::Critical);
    assert_eq!(t.level_of(0, 0), AlertLevel::Critical);
    assert_eq!(t.level(f64::NAN), AlertLevel::Critical);
    assert_eq!(t.below_critical_bytes(1001), 900);
    assert_eq!(t.percents(), [80.0, 90.0]);
    for (w, c) in [(80.0, 80.0), (0.0, 90.0), (80.0, 100.5), (f64::NAN, 90.0), (80.0, f64::INFINITY)] {
        assert_eq!(AlertThresholds::new(w, c).unwrap_err().code(), "VRAM-E007", "{w} {c}");
    }
}

#[test]
fn thresholds_serialise_under_their_names() {
    let alert = serde_json::to_value(AlertThresholds::default()).unwrap();
    assert_eq!(alert, serde_json::json!({ "warning_percent": 80.0, "critical_percent": 90.0 }));
    let pressure = serde_json::to_value(PressureThresholds::default()).unwrap();
    assert_eq!(pressure, serde_json::json!({ "medium": 50.0, "high": 80.0, "critical": 95.0 }));
    assert_eq!(format!("{:?}", AlertThresholds::default()), r#"{"warning_percent": 80.0, "critical_percent": 90.0}"#);
}

#[test]
fn one_threshold_reached_exceeded_and_the_bytes_below_it() {
    let ninety = Threshold::new(90.0);
    assert!(!ninety.reached_by(899, 1000) && ninety.reached_by(900, 1000));
    assert!(!ninety.exceeded_by(900, 1000) && ninety.exceeded_by(901, 1000));
    assert!(ninety.reached_by(0, 0) && ninety.exceeded_by(0, 0), "an unknown capacity is never safe");
    assert_eq!((ninety.bytes_below(1000), ninety.bytes_below(0)), (899, 0));
    // Exact at the byte: 90 % of u64::MAX is not a whole number.
    let below = ninety.bytes_below(u64::MAX);
    assert!(!ninety.reached_by(below, u64::MAX) && ninety.reached_by(below + 1, u64::MAX));
}
