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
