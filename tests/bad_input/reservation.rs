//! `MemoryGuard` and `MemoryLimits`: zero limits, thresholds out of order or NaN, reservations of
//! zero bytes, over the per-operation maximum and over the budget. A refusal holds nothing.
use vramguard::reservation::{MemoryGuard, MemoryLimits, Reservation};
use vramguard::{Budget, Error};

use super::code;

fn limits(total: u64, per_operation: u64) -> MemoryLimits {
    MemoryLimits { max_total: total, max_per_operation: per_operation, ..MemoryLimits::default() }
}

fn thresholds(warning: f64, critical: f64, cleanup: f64) -> MemoryLimits {
    MemoryLimits {
        warning_threshold: warning,
        critical_threshold: critical,
        cleanup_threshold: cleanup,
        ..MemoryLimits::default()
    }
}

/// Bytes charged, live reservations and what they hold.
fn state(guard: &MemoryGuard) -> (u64, Vec<(String, u64)>, u64, usize) {
    let live =
        guard.reservations().into_iter().map(|Reservation { operation_id, bytes, .. }| (operation_id, bytes)).collect();
    let stats = guard.stats();
    (guard.budget().used(), live, stats.reserved, stats.reservation_count)
}

/// A guard over 1000 bytes (at most 600 per operation) holding 300 for "warm-up".
fn guard() -> (MemoryGuard, vramguard::reservation::AllocationGuard) {
    let guard = MemoryGuard::new(limits(1000, 600)).unwrap();
    let held = guard.request_allocation("warm-up", 300).unwrap();
    (guard, held)
}

#[test]
fn zero_limits_are_e007() {
    assert_eq!(code(MemoryGuard::new(limits(0, 1))), "VRAM-E007", "max_total 0");
    assert_eq!(code(MemoryGuard::new(limits(1, 0))), "VRAM-E007", "max_per_operation 0");
    assert_eq!(
        code(MemoryGuard::with_budget(limits(1 << 20, 0), Budget::new(1 << 20).unwrap())),
        "VRAM-E007",
        "shared, per-op 0"
    );
}

#[test]
fn thresholds_out_of_order_are_e007() {
    for (w, c, k) in [(0.85, 0.75, 0.9), (0.75, 0.75, 0.9), (0.75, 0.9, 0.85), (0.9, 0.85, 0.75)] {
        assert_eq!(code(MemoryGuard::new(thresholds(w, c, k))), "VRAM-E007", "{w}, {c}, {k}");
        assert_eq!(code(thresholds(w, c, k).validate()), "VRAM-E007", "validate {w}, {c}, {k}");
    }
}

#[test]
fn thresholds_nan_infinite_or_outside_0_to_1_are_e007() {
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    for (w, c, k) in [
        (nan, 0.85, 0.9),
        (0.75, nan, 0.9),
        (0.75, 0.85, nan),
        (0.75, 0.85, inf),
        (0.0, 0.85, 0.9),
        (-0.5, 0.85, 0.9),
        (0.75, 0.85, 1.5),
        (75.0, 85.0, 90.0),
    ] {
        assert_eq!(code(MemoryGuard::new(thresholds(w, c, k))), "VRAM-E007", "{w}, {c}, {k}");
    }
    let shared = Budget::new(1 << 20).unwrap();
    assert_eq!(
        code(MemoryGuard::with_budget(thresholds(nan, 0.85, 0.9), shared)),
        "VRAM-E007",
        "with_budget validates too"
    );
}

#[test]
fn a_zero_byte_reservation_is_e003_and_holds_nothing() {
    let (guard, _held) = guard();
    let before = state(&guard);
    assert_eq!(code(guard.request_allocation("empty", 0)), "VRAM-E003");
    assert_eq!(state(&guard), before);
}

#[test]
fn a_reservation_over_the_per_operation_maximum_is_e013_and_holds_nothing() {
    let (guard, _held) = guard();
    let before = state(&guard);
    for bytes in [601, u64::MAX] {
        let error = guard.request_allocation("batch-7", bytes).unwrap_err();
        assert_eq!(error.code(), "VRAM-E013", "{bytes}");
        assert_eq!(error, Error::OperationTooLarge { operation: "batch-7".into(), requested: bytes, limit: 600 });
        assert_eq!(state(&guard), before, "{bytes}");
    }
}

#[test]
fn a_reservation_over_the_budget_is_e002_and_holds_nothing() {
    let (guard, _held) = guard();
    let _more = guard.request_allocation("more", 600).unwrap();
    let before = state(&guard);
    let error = guard.request_allocation("one-too-many", 101).unwrap_err();
    assert_eq!(error.code(), "VRAM-E002");
    let Error::OutOfMemory(oom) = &error else { unreachable!() };
    assert_eq!((oom.requested, oom.available, oom.budget), (101, Some(100), Some(1000)));
    assert_eq!(state(&guard), before);
    assert_eq!(guard.stats().refused, 1);
}

/// An operation whose estimate is refused never runs.
#[test]
fn a_memory_aware_operation_refused_its_estimate_never_runs() {
    use std::cell::Cell;
    use vramguard::reservation::{AllocationGuard, MemoryAwareOperation};

    struct Operation {
        estimate: u64,
        ran: Cell<bool>,
    }

    impl MemoryAwareOperation for Operation {
        type Output = ();
        type Error = Error;

        fn estimate_memory_usage(&self) -> u64 {
            self.estimate
        }

        fn execute(&self, _reservation: &AllocationGuard) -> Result<(), Error> {
            self.ran.set(true);
            Ok(())
        }
    }

    let (guard, _held) = guard();
    let before = state(&guard);
    for (estimate, expected) in [(0, "VRAM-E003"), (601, "VRAM-E013"), (u64::MAX, "VRAM-E013")] {
        let operation = Operation { estimate, ran: Cell::new(false) };
        assert_eq!(guard.execute_with_memory_guard(&operation, "op").unwrap_err().code(), expected, "{estimate}");
        assert!(!operation.ran.get(), "{estimate}: ran without its reservation");
        assert_eq!(state(&guard), before, "{estimate}");
    }
    let _more = guard.request_allocation("more", 600).unwrap();
    let operation = Operation { estimate: 101, ran: Cell::new(false) };
    assert_eq!(guard.execute_with_memory_guard(&operation, "op").unwrap_err().code(), "VRAM-E002");
    assert!(!operation.ran.get());
}
