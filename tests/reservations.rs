//! B4 / seed 004: reservations admitted against a budget, held by guards, released on drop.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vramguard::reservation::{AllocationGuard, MemoryAwareOperation, MemoryGuard, MemoryLimits, ReservationLevel};
use vramguard::{Budget, Error, Purpose};

fn limits(total: u64, per_operation: u64) -> MemoryLimits {
    MemoryLimits { max_total: total, max_per_operation: per_operation, ..MemoryLimits::default() }
}

#[test]
fn a_guard_holds_its_bytes_until_dropped() {
    let guard = MemoryGuard::new(limits(1000, 600)).unwrap();
    let a = guard.request_allocation("search-1", 400).unwrap();
    let b = guard.request_allocation("search-2", 600).unwrap();
    assert_eq!((a.bytes(), a.operation_id()), (400, "search-1"));
    let stats = guard.stats();
    assert_eq!((stats.reserved, stats.reservation_count, stats.level), (1000, 2, ReservationLevel::Critical));
    assert_eq!(
        guard.reservations().iter().map(|r| r.operation_id.as_str()).collect::<Vec<_>>(),
        ["search-1", "search-2"]
    );
    drop(a);
    assert_eq!((guard.stats().reserved, guard.budget().used()), (600, 600));
    drop(b);
    assert_eq!((guard.stats().reserved, guard.stats().reservation_count, guard.budget().used()), (0, 0, 0));
}

#[test]
fn refusals_hold_nothing() {
    let guard = MemoryGuard::new(limits(1000, 600)).unwrap();
    let _held = guard.request_allocation("a", 500).unwrap();
    let too_large = guard.request_allocation("b", 601).unwrap_err();
    assert!(matches!(&too_large, Error::OperationTooLarge { requested: 601, limit: 600, .. }), "{too_large}");
    assert_eq!(too_large.code(), "VRAM-E013");
    let over = guard.request_allocation("c", 501).unwrap_err();
    let Error::OutOfMemory(oom) = &over else { panic!("{over}") };
    assert_eq!((oom.requested, oom.available, oom.budget), (501, Some(500), Some(1000)));
    assert_eq!(guard.request_allocation("d", 0).unwrap_err().code(), "VRAM-E003");
    let stats = guard.stats();
    assert_eq!((stats.reserved, stats.reservation_count, stats.granted, stats.refused), (500, 1, 1, 3));
    // Exactly the rest fits.
    let _rest = guard.request_allocation("e", 500).unwrap();
}

#[test]
fn levels_follow_the_thresholds() {
    let guard = MemoryGuard::new(limits(1000, 1000)).unwrap();
    let _a = guard.request_allocation("a", 749).unwrap();
    assert_eq!(guard.level(), ReservationLevel::Normal);
    let _b = guard.request_allocation("b", 1).unwrap();
    assert_eq!(guard.level(), ReservationLevel::Warning);
    let _c = guard.request_allocation("c", 100).unwrap();
    assert_eq!(guard.level(), ReservationLevel::Critical);
}

#[test]
fn cleanup_runs_above_the_cleanup_threshold_and_can_make_room() {
    let budget = Budget::new(1000).unwrap();
    let guard = MemoryGuard::with_budget(limits(0, 1000), budget.clone()).unwrap();
    // Something else (say, model weights) holds 800 of the shared budget; cleanup gives it back.
    let weights = Arc::new(std::sync::Mutex::new(Some(budget.charge(800, Purpose::ModelWeights).unwrap())));
    let asked = Arc::new(AtomicU64::new(0));
    let (w, a) = (Arc::clone(&weights), Arc::clone(&asked));
    guard.on_cleanup(move |wanted| {
        a.store(wanted, Ordering::Relaxed);
        w.lock().unwrap().take().map_or(0, |charge| charge.bytes())
    });
    let _small = guard.request_allocation("small", 50).unwrap(); // 85 %: below cleanup
    assert_eq!(guard.stats().cleanups, 0);
    let big = guard.request_allocation("big", 300).unwrap(); // would be 115 %: cleanup first
    assert_eq!((guard.stats().cleanups, asked.load(Ordering::Relaxed)), (1, 300));
    assert_eq!(budget.used(), 350);
    assert_eq!(budget.used_by(Purpose::IntermediateBuffers), 350);
    drop(big);
}

#[test]
fn a_panicking_cleanup_is_contained() {
    let guard = MemoryGuard::new(limits(100, 100)).unwrap();
    guard.on_cleanup(|_| panic!("cleanup bug"));
    let _a = guard.request_allocation("a", 80).unwrap(); // 80 %: no cleanup
    assert!(guard.request_allocation("b", 30).is_err()); // 110 %: cleanup panics, then refused
    assert_eq!(guard.stats().callback_panics, 1);
}

#[test]
fn invalid_limits_are_rejected() {
    for bad in [
        MemoryLimits { warning_threshold: 0.9, critical_threshold: 0.8, ..MemoryLimits::default() },
        MemoryLimits { cleanup_threshold: 1.5, ..MemoryLimits::default() },
        MemoryLimits { max_total: 0, ..MemoryLimits::default() },
        MemoryLimits { max_per_operation: 0, ..MemoryLimits::default() },
    ] {
        assert_eq!(MemoryGuard::new(bad).err().map(|e| e.code()), Some("VRAM-E007"));
    }
}

struct VectorSearch {
    results: u64,
}

impl MemoryAwareOperation for VectorSearch {
    type Output = u64;
    type Error = Error;

    fn estimate_memory_usage(&self) -> u64 {
        1536 * 4 + self.results * 1024
    }

    fn execute(&self, reservation: &AllocationGuard) -> Result<u64, Error> {
        Ok(reservation.bytes())
    }
}

#[test]
fn memory_aware_operations_reserve_their_estimate_while_running() {
    let guard = MemoryGuard::new(limits(1 << 20, 1 << 20)).unwrap();
    let reserved = guard.execute_with_memory_guard(&VectorSearch { results: 100 }, "search-7").unwrap();
    assert_eq!(reserved, 1536 * 4 + 100 * 1024);
    assert_eq!(guard.budget().used(), 0, "released after the operation");
    let refused = guard.execute_with_memory_guard(&VectorSearch { results: 2000 }, "search-8").unwrap_err();
    assert_eq!(refused.code(), "VRAM-E013");
}

#[test]
fn sixteen_threads_never_exceed_the_limit() {
    let guard = MemoryGuard::new(limits(10_000, 3_000)).unwrap();
    std::thread::scope(|scope| {
        for t in 0..16u64 {
            let guard = guard.clone();
            scope.spawn(move || {
                for i in 0..5_000u64 {
                    if let Ok(held) = guard.request_allocation("op", 1 + (t * 13 + i * 7) % 3000) {
                        assert!(guard.budget().used() <= 10_000);
                        drop(held);
                    }
                }
            });
        }
    });
    assert_eq!((guard.budget().used(), guard.stats().reservation_count), (0, 0));
}
