//! Callbacks that panic: the slot manager's `on_evict` and `on_oom`, the reservation guard's
//! `on_cleanup`, the monitor's `on_alert` and `on_unload`. Each panic is contained (it never
//! unwinds into the caller), counted, the callbacks after it still run, and the product keeps
//! working afterwards. The panic messages these tests print are expected.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vramguard::monitor::{AlertLevel, GpuMonitor, MemorySource, MonitorConfig, Unloader};
use vramguard::reservation::{MemoryGuard, MemoryLimits};
use vramguard::slots::ModelSlotManager;
use vramguard::{MemoryInfo, Result};

/// Counts its calls.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicU64>);

impl Calls {
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

// --- slots -----------------------------------------------------------------------------------

#[test]
fn a_panicking_eviction_callback_is_counted_and_the_next_one_still_runs() {
    let manager = ModelSlotManager::<String>::with_budget(1000);
    let after = Calls::default();
    manager.on_evict(|_| panic!("eviction callback bug"));
    let seen = after.clone();
    manager.on_evict(move |_| seen.hit());
    manager.allocate_slot("a".into(), 600).unwrap();
    let outcome = manager.load_slot("b".into(), 600).unwrap();
    assert_eq!(outcome.evicted, ["a"]);
    assert_eq!((manager.stats().callback_panics, manager.stats().evictions, after.count()), (1, 1, 1));
    // The manager keeps working: another eviction panics and is counted again.
    let outcome = manager.load_slot("c".into(), 600).unwrap();
    assert_eq!(outcome.evicted, ["b"]);
    assert_eq!((manager.stats().callback_panics, manager.allocated(), manager.loaded_count()), (2, 600, 1));
}

#[test]
fn a_panicking_oom_callback_is_counted_and_the_error_still_returned() {
    let manager = ModelSlotManager::<String>::with_budget(1000);
    let after = Calls::default();
    manager.on_oom(|_| panic!("oom callback bug"));
    let seen = after.clone();
    manager.on_oom(move |_| seen.hit());
    assert_eq!(manager.allocate_slot("big".into(), 1001).unwrap_err().code(), "VRAM-E002");
    assert_eq!(manager.load_slot("big".into(), 1001).unwrap_err().code(), "VRAM-E002");
    assert_eq!((manager.stats().callback_panics, after.count()), (2, 2));
    assert_eq!((manager.allocated(), manager.loaded_count()), (0, 0));
    manager.allocate_slot("fits".into(), 1000).unwrap();
}

// --- reservations ----------------------------------------------------------------------------

#[test]
fn a_panicking_cleanup_is_counted_and_the_reservation_still_decided() {
    let limits = MemoryLimits { max_total: 1000, max_per_operation: 1000, ..MemoryLimits::default() };
    let guard = MemoryGuard::new(limits).unwrap();
    let after = Calls::default();
    guard.on_cleanup(|_| panic!("cleanup bug"));
    let seen = after.clone();
    guard.on_cleanup(move |_| {
        seen.hit();
        0
    });
    // 950 of 1000 is above the 0.9 cleanup threshold: the cleanups run, then it is admitted.
    let held = guard.request_allocation("big", 950).unwrap();
    assert_eq!((guard.stats().callback_panics, guard.stats().cleanups, after.count()), (1, 1, 1));
    // Over the budget even after cleanup: refused, and the panic counted again.
    assert_eq!(guard.request_allocation("more", 100).unwrap_err().code(), "VRAM-E002");
    assert_eq!((guard.stats().callback_panics, guard.budget().used()), (2, 950));
    drop(held);
    assert_eq!(guard.request_allocation("small", 10).unwrap().bytes(), 10);
}

// --- the GPU monitor -------------------------------------------------------------------------

/// One device whose used bytes out of 1000 the test sets.
#[derive(Default)]
struct Scripted(Mutex<BTreeMap<u32, u64>>);

impl Scripted {
    fn set_used(&self, used: u64) {
        self.0.lock().unwrap().insert(0, used);
    }
}

impl MemorySource for Scripted {
    fn read(&self, device: u32) -> Result<MemoryInfo> {
        let used = self.0.lock().unwrap()[&device];
        Ok(MemoryInfo { free_bytes: 1000 - used, total_bytes: 1000 })
    }

    fn devices(&self) -> Result<Vec<u32>> {
        Ok(self.0.lock().unwrap().keys().copied().collect())
    }
}

fn scripted_monitor() -> (GpuMonitor, Arc<Scripted>) {
    let source = Arc::new(Scripted::default());
    source.set_used(0);
    let monitor = GpuMonitor::with_source(MonitorConfig::default(), source.clone() as Arc<dyn MemorySource>).unwrap();
    (monitor, source)
}

#[test]
fn a_panicking_alert_callback_is_counted_and_checks_go_on() {
    let (monitor, source) = scripted_monitor();
    let after = Calls::default();
    monitor.on_alert(|_| panic!("alert callback bug"));
    let seen = after.clone();
    monitor.on_alert(move |_| seen.hit());
    source.set_used(850); // Warning
    assert_eq!(monitor.check_now().unwrap()[0].level, AlertLevel::Warning);
    assert_eq!((monitor.callback_panics(), after.count()), (1, 1));
    source.set_used(100); // back to Normal: another alert, another contained panic
    assert_eq!(monitor.check_now().unwrap()[0].level, AlertLevel::Normal);
    assert_eq!((monitor.callback_panics(), after.count(), monitor.checks_failed()), (2, 2, 0));
    assert_eq!(monitor.history(0).len(), 2);
    assert!(monitor.last_error().is_none());
}

struct Frees;

impl Unloader for Frees {
    fn unload_lru(&self, _device: u32, _bytes: u64) -> Vec<String> {
        vec!["E1 Semantic".into()]
    }
}

#[test]
fn a_panicking_unload_callback_is_counted_and_the_unload_still_recorded() {
    let (monitor, source) = scripted_monitor();
    monitor.set_unloader(Arc::new(Frees));
    monitor.on_unload(|_| panic!("unload callback bug"));
    source.set_used(950); // Critical
    let reading = monitor.check_now().unwrap();
    assert_eq!(reading[0].level, AlertLevel::Critical);
    assert_eq!((monitor.callback_panics(), monitor.models_unloaded()), (1, 1));
    assert_eq!(monitor.unloaded(), ["E1 Semantic"]);
    assert!(monitor.check_now().is_ok(), "the monitor keeps checking");
}
