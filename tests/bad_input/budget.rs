//! `Budget`, `BudgetedAllocator` and `PressureThresholds`: zero limits, charges that would wrap
//! the counters, refusals over the total and over a purpose's limit, and thresholds out of order,
//! NaN or beyond 100 %. A refusal leaves every figure of the budget and the tracker as it was.
use vramguard::{
    sys, AllocationKind, Budget, BudgetedAllocator, Error, OomSource, PressureThresholds, Purpose, Tracker, Usage,
};

use super::{code, is_unusable_device, UNUSABLE_DEVICE};

/// Everything a budget reports.
#[derive(Debug, PartialEq)]
struct Figures {
    used: u64,
    peak: u64,
    by_purpose: [u64; 4],
}

fn figures(budget: &Budget) -> Figures {
    Figures { used: budget.used(), peak: budget.peak(), by_purpose: Purpose::ALL.map(|p| budget.used_by(p)) }
}

/// A budgeted allocator on `device`, and what its budget and tracker hold now.
fn allocator(device: u32, budget: Budget) -> BudgetedAllocator {
    BudgetedAllocator::new(Tracker::new(device).unwrap(), budget)
}

fn state(allocator: &BudgetedAllocator) -> (Figures, Usage) {
    (figures(allocator.budget()), allocator.tracker().usage())
}

// --- Budget ----------------------------------------------------------------------------------

#[test]
fn a_zero_budget_is_e007() {
    assert_eq!(code(Budget::new(0)), "VRAM-E007");
    assert_eq!(code(Budget::builder(0).build()), "VRAM-E007");
}

#[test]
fn a_zero_purpose_limit_is_e007_for_every_purpose() {
    for purpose in Purpose::ALL {
        assert_eq!(code(Budget::builder(1 << 20).purpose_limit(purpose, 0).build()), "VRAM-E007", "{purpose}");
    }
}

#[test]
fn a_charge_that_would_wrap_the_counter_is_refused_and_changes_nothing() {
    let budget = Budget::new(u64::MAX).unwrap();
    let held = budget.charge(u64::MAX - 1, Purpose::KVCache).unwrap();
    let before = figures(&budget);
    for bytes in [2, u64::MAX] {
        let refusal = budget.charge(bytes, Purpose::KVCache).unwrap_err();
        assert_eq!(refusal.source, OomSource::Budget, "{bytes}");
        assert_eq!((refusal.limit, refusal.used, refusal.available()), (u64::MAX, u64::MAX - 1, 1), "{bytes}");
        assert_eq!(figures(&budget), before, "{bytes}");
    }
    drop(held);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_charge_over_the_total_is_refused_and_changes_nothing() {
    let budget = Budget::new(1000).unwrap();
    let _held = budget.charge(600, Purpose::ModelWeights).unwrap();
    let before = figures(&budget);
    let refusal = budget.charge(401, Purpose::ModelWeights).unwrap_err();
    assert_eq!((refusal.source, refusal.limit, refusal.used, refusal.available()), (OomSource::Budget, 1000, 600, 400));
    assert_eq!(figures(&budget), before);
}

#[test]
fn a_charge_over_a_purpose_limit_is_refused_and_the_total_rolled_back() {
    let budget = Budget::builder(1000).purpose_limit(Purpose::KVCache, 100).build().unwrap();
    let _held = budget.charge(60, Purpose::KVCache).unwrap();
    let before = figures(&budget);
    let refusal = budget.charge(41, Purpose::KVCache).unwrap_err();
    assert_eq!(refusal.source, OomSource::PurposeBudget(Purpose::KVCache));
    assert_eq!((refusal.limit, refusal.used, refusal.available()), (100, 60, 40));
    assert_eq!(figures(&budget), before);
}

// --- PressureThresholds ----------------------------------------------------------------------

#[test]
fn pressure_thresholds_out_of_order_are_e007() {
    for (medium, high, critical) in
        [(80.0, 50.0, 95.0), (50.0, 50.0, 95.0), (50.0, 95.0, 95.0), (95.0, 80.0, 50.0), (50.0, 95.0, 80.0)]
    {
        assert_eq!(code(PressureThresholds::new(medium, high, critical)), "VRAM-E007", "{medium}, {high}, {critical}");
    }
}

#[test]
fn pressure_thresholds_with_nan_or_infinity_are_e007() {
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    for (medium, high, critical) in [
        (nan, 80.0, 95.0),
        (50.0, nan, 95.0),
        (50.0, 80.0, nan),
        (nan, nan, nan),
        (50.0, 80.0, inf),
        (-inf, 80.0, 95.0),
    ] {
        assert_eq!(code(PressureThresholds::new(medium, high, critical)), "VRAM-E007", "{medium}, {high}, {critical}");
    }
}

#[test]
fn pressure_thresholds_outside_0_to_100_are_e007() {
    for (medium, high, critical) in
        [(50.0, 80.0, 100.5), (50.0, 80.0, 1000.0), (0.0, 80.0, 95.0), (-10.0, 80.0, 95.0), (101.0, 102.0, 103.0)]
    {
        assert_eq!(code(PressureThresholds::new(medium, high, critical)), "VRAM-E007", "{medium}, {high}, {critical}");
    }
    assert!(PressureThresholds::new(0.001, 80.0, 100.0).is_ok(), "the bounds themselves are valid");
}

// --- BudgetedAllocator: the budget is asked before the device ---------------------------------

#[test]
fn budgeted_zero_bytes_is_e003_and_charges_nothing() {
    let allocator = allocator(0, Budget::new(1 << 20).unwrap());
    let before = state(&allocator);
    for kind in [AllocationKind::Device, AllocationKind::Pool, AllocationKind::Managed, AllocationKind::PinnedHost] {
        assert_eq!(code(allocator.allocate_kind(0, Purpose::KVCache, kind, "kv")), "VRAM-E003", "{kind}");
    }
    assert_eq!(state(&allocator), before);
}

/// On device 63 a refusal that touched the device would read E001/E010: E002 proves the budget
/// refused first, on any host.
#[test]
fn budgeted_one_byte_over_is_e002_before_the_device_is_touched() {
    let allocator = allocator(UNUSABLE_DEVICE, Budget::new(1 << 20).unwrap());
    let before = state(&allocator);
    let error = allocator.allocate((1 << 20) + 1, Purpose::KVCache, "kv").unwrap_err();
    assert_eq!(error.code(), "VRAM-E002");
    let Error::OutOfMemory(oom) = error else { unreachable!() };
    assert_eq!(oom.source, OomSource::Budget);
    assert_eq!((oom.requested, oom.available, oom.budget), ((1 << 20) + 1, Some(1 << 20), Some(1 << 20)));
    assert_eq!(state(&allocator), before);
}

#[test]
fn budgeted_over_a_purpose_limit_is_e002_naming_the_purpose() {
    let budget = Budget::builder(1 << 20).purpose_limit(Purpose::IntermediateBuffers, 4096).build().unwrap();
    let allocator = allocator(UNUSABLE_DEVICE, budget);
    let before = state(&allocator);
    let error = allocator.allocate(4097, Purpose::IntermediateBuffers, "scratch").unwrap_err();
    assert_eq!(error.code(), "VRAM-E002");
    let Error::OutOfMemory(oom) = error else { unreachable!() };
    assert_eq!(oom.source, OomSource::PurposeBudget(Purpose::IntermediateBuffers));
    assert_eq!((oom.available, oom.budget), (Some(4096), Some(4096)));
    assert_eq!(state(&allocator), before);
}

/// Over the 256 TiB any allocation may have: an invalid size (as the tracker says), not a wrap.
#[test]
fn budgeted_u64_max_is_e003_not_a_wrap() {
    let allocator = allocator(UNUSABLE_DEVICE, Budget::new(1 << 30).unwrap());
    let _held = allocator.budget().charge(1, Purpose::KVCache).unwrap();
    let before = state(&allocator);
    assert_eq!(code(allocator.allocate(u64::MAX, Purpose::KVCache, "kv")), "VRAM-E003");
    assert_eq!(state(&allocator), before);
}

/// Within the budget, the device (63: none) refuses; the charge is rolled back.
#[test]
fn a_device_refusal_rolls_the_charge_back() {
    let allocator = allocator(UNUSABLE_DEVICE, Budget::new(1 << 30).unwrap());
    let code = code(allocator.allocate(1 << 20, Purpose::KVCache, "kv"));
    assert!(is_unusable_device(code), "{code}");
    assert_eq!(allocator.budget().used(), 0);
    assert_eq!(Purpose::ALL.map(|p| allocator.budget().used_by(p)), [0; 4]);
    assert_eq!(allocator.tracker().usage(), Usage::default());
}

/// Arguments the budget cannot judge (the description, the kind, the 256 TiB cap) are refused by
/// the tracker after the charge; the charge is rolled back.
#[test]
fn an_argument_refusal_after_the_charge_rolls_it_back() {
    let max = sys::VG_MAX_ALLOCATION_BYTES;
    let allocator = allocator(UNUSABLE_DEVICE, Budget::new(u64::MAX).unwrap());
    let long = "d".repeat(256);
    let cases: [(&str, u64, AllocationKind, &str); 4] = [
        ("VRAM-E009", 64, AllocationKind::Device, &long),
        ("VRAM-E007", 64, AllocationKind::Device, "kv\0cache"),
        ("VRAM-E007", 64, AllocationKind::Adopted, "kv"),
        ("VRAM-E003", max + 1, AllocationKind::Device, "kv"),
    ];
    for (expected, bytes, kind, description) in cases {
        let what = format!("{bytes} {kind} {:?}", &description[..description.len().min(8)]);
        assert_eq!(code(allocator.allocate_kind(bytes, Purpose::KVCache, kind, description)), expected, "{what}");
        assert_eq!((allocator.budget().used(), allocator.budget().used_by(Purpose::KVCache)), (0, 0), "{what}");
        assert_eq!(allocator.tracker().usage(), Usage::default(), "{what}");
    }
}

/// A refused allocation must leave every figure as it was, the peak included: a peak of bytes
/// that were never allocated misleads whoever sizes the budget from it.
#[test]
fn a_refused_allocation_leaves_the_budget_peak_unchanged() {
    let allocator = allocator(UNUSABLE_DEVICE, Budget::new(u64::MAX).unwrap());
    let before = state(&allocator);
    let bytes = sys::VG_MAX_ALLOCATION_BYTES + 1;
    assert_eq!(code(allocator.allocate(bytes, Purpose::KVCache, "kv")), "VRAM-E003");
    assert_eq!(code(allocator.allocate(64, Purpose::KVCache, &"d".repeat(256))), "VRAM-E009");
    assert_eq!(state(&allocator), before);
}
