use super::*;

#[test]
fn exactly_at_the_budget_fits_and_one_byte_over_changes_nothing() {
    let budget = Budget::new(1000).unwrap();
    let first = budget.charge(1000, Purpose::ModelWeights).unwrap();
    assert_eq!((budget.used(), budget.available()), (1000, 0));
    let refusal = budget.charge(1, Purpose::KVCache).unwrap_err();
    assert_eq!(refusal, Refusal { source: OomSource::Budget, limit: 1000, used: 1000 });
    assert_eq!((budget.used(), budget.used_by(Purpose::KVCache)), (1000, 0));
    drop(first);
    assert_eq!((budget.used(), budget.used_by(Purpose::ModelWeights), budget.peak()), (0, 0, 1000));
}

#[test]
fn a_purpose_budget_refuses_and_rolls_back_the_total() {
    let budget = Budget::builder(1000).purpose_limit(Purpose::KVCache, 300).build().unwrap();
    let _kv = budget.charge(300, Purpose::KVCache).unwrap();
    let refusal = budget.charge(1, Purpose::KVCache).unwrap_err();
    assert_eq!(refusal.source, OomSource::PurposeBudget(Purpose::KVCache));
    assert_eq!(refusal.available(), 0);
    assert_eq!(budget.used(), 300, "the total was rolled back");
    let _weights = budget.charge(700, Purpose::ModelWeights).unwrap();
    assert_eq!(budget.available(), 0);
}

#[test]
fn overflowing_charges_are_refused() {
    let budget = Budget::new(u64::MAX).unwrap();
    let _big = budget.charge(u64::MAX - 1, Purpose::Unknown).unwrap();
    assert!(budget.charge(u64::MAX, Purpose::Unknown).is_err());
    assert_eq!(budget.used(), u64::MAX - 1);
}

#[test]
fn zero_budgets_are_invalid() {
    assert_eq!(Budget::new(0).unwrap_err().code(), "VRAM-E007");
    let error = Budget::builder(10).purpose_limit(Purpose::KVCache, 0).build().unwrap_err();
    assert_eq!(error.code(), "VRAM-E007");
}

#[test]
fn pressure_follows_the_charges() {
    let budget = Budget::new(1000).unwrap();
    let _a = budget.charge(960, Purpose::ModelWeights).unwrap();
    assert_eq!(budget.pressure(), MemoryPressure::Critical);
    assert!(budget.pressure().should_evict());
    assert_eq!(budget.pressure_with(0), MemoryPressure::Critical);
}

#[test]
fn sixteen_threads_never_exceed_the_budget() {
    let budget = Budget::new(64 * 1024).unwrap();
    std::thread::scope(|scope| {
        for t in 0..16u64 {
            let budget = budget.clone();
            scope.spawn(move || {
                let mut held = Vec::new();
                for i in 0..20_000u64 {
                    let bytes = 1 + (t * 7919 + i * 104_729) % 8192;
                    if let Ok(charge) = budget.charge(bytes, Purpose::ALL[(i % 4) as usize]) {
                        held.push(charge);
                    }
                    assert!(budget.used() <= budget.limit());
                    if held.len() > 3 {
                        drop(held.remove(0));
                    }
                }
            });
        }
    });
    assert_eq!(budget.used(), 0);
    assert!(budget.peak() <= budget.limit());
    assert!(Purpose::ALL.iter().all(|p| budget.used_by(*p) == 0));
}
