//! A verdict that cannot go stale: the report carries its age and is judged against the clock.
//! A verdict older than `stale_after` intervals reads `stale`; a check still running past its
//! deadline reads as failed (VRAM-E019) while it runs, and counts as failed when it ends;
//! stopping the background checks never waits on a stuck check longer than its deadline.
//!
//! The stuck check is provoked for real through the monitor's own slot view, whose integrity
//! pass here blocks for as long as the test says (on a GPU host the same happens when a kernel
//! holds the device: see tests/gpu/faults.rs). Runs the same with or without a GPU: the tracker is
//! on a device no host has, so its residency check fails at once and the slot view decides the
//! timing.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vramguard::health::{
    BudgetReport, HealthConfig, HealthMonitor, HealthSource, HealthStatus, SlotReport, SlotView, ViolationReport,
};
use vramguard::Tracker;

/// No host has this many GPUs.
const UNUSABLE_DEVICE: u32 = 63;

/// The budget both slot views below report: one byte, nothing charged.
fn empty_budget() -> BudgetReport {
    BudgetReport {
        limit_bytes: 1,
        allocated_bytes: 0,
        available_bytes: 1,
        pressure: "low".into(),
        pressure_level: 0,
        below_critical_bytes: 1,
    }
}

/// A slot view whose integrity pass takes `stall` while `stalling` is set.
struct StallingSlots {
    stall: Duration,
    stalling: AtomicBool,
}

impl SlotView for StallingSlots {
    fn budget_report(&self) -> BudgetReport {
        empty_budget()
    }
    fn slot_reports(&self) -> Vec<SlotReport> {
        Vec::new()
    }
    fn expected_slots(&self) -> usize {
        0
    }
    fn evictions(&self) -> u64 {
        0
    }
    fn ooms(&self) -> u64 {
        0
    }
    fn integrity_violations(&self, _deadline: Duration) -> Vec<ViolationReport> {
        if self.stalling.load(Ordering::SeqCst) {
            std::thread::sleep(self.stall);
        }
        Vec::new()
    }
}

fn monitor(config: HealthConfig, stall: Duration) -> (Arc<HealthMonitor>, Arc<StallingSlots>) {
    let slots = Arc::new(StallingSlots { stall, stalling: AtomicBool::new(false) });
    let monitor = HealthMonitor::new(Tracker::new(UNUSABLE_DEVICE).unwrap(), config).unwrap().with_slots(slots.clone());
    (Arc::new(monitor), slots)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_old_verdict_reads_stale_and_a_new_check_clears_it() {
    let config = HealthConfig { interval: Duration::from_millis(20), stale_after: 3, ..HealthConfig::default() };
    let (monitor, _) = monitor(config, Duration::ZERO);
    let checked = monitor.check_now();
    assert_eq!(checked.status, HealthStatus::Unhealthy, "device 63 cannot be checked");
    assert_eq!(monitor.report().status, HealthStatus::Unhealthy, "fresh: the check's own verdict");
    std::thread::sleep(Duration::from_millis(80)); // past 3 x 20 ms
    let old = monitor.report();
    assert_eq!(old.status, HealthStatus::Stale);
    assert!(!old.ready() && old.live, "stale is not ready, but the process is alive");
    assert!(old.last_check_secs.unwrap() >= 0.06, "{:?}", old.last_check_secs);
    monitor.check_now();
    assert_eq!(monitor.report().status, HealthStatus::Unhealthy, "a new check replaces the stale verdict");
}

#[test]
fn a_verdict_never_given_goes_stale() {
    // A checker that never completes a check (stuck from the start) must not read "starting" for
    // ever. (An old "healthy" going stale is shown on the GPU: tests/gpu/faults.rs.)
    let config = HealthConfig { interval: Duration::from_millis(10), stale_after: 2, ..HealthConfig::default() };
    let (monitor, _) = monitor(config, Duration::ZERO);
    assert_eq!(monitor.report().status, HealthStatus::Starting);
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(monitor.report().status, HealthStatus::Stale, "no check completed within 2 intervals");
}

#[test]
fn a_check_past_its_deadline_reads_failed_while_it_runs_and_counts_as_failed() {
    let config = HealthConfig {
        interval: Duration::from_secs(60),
        check_deadline: Duration::from_millis(100),
        ..HealthConfig::default()
    };
    let (monitor, slots) = monitor(config, Duration::from_millis(600));
    slots.stalling.store(true, Ordering::SeqCst);
    let checker = {
        let monitor = monitor.clone();
        std::thread::spawn(move || monitor.check_now())
    };
    wait_for("the running check to pass its deadline", Duration::from_secs(5), || {
        monitor.report().last_error.is_some_and(|e| e["code"] == "VRAM-E019")
    });
    let during = monitor.report();
    assert_eq!(during.status, HealthStatus::Unhealthy);
    assert_eq!(during.counters.checks_failed, 1, "the overdue check is counted as failed");
    assert!(during.live, "a slow device is not a dead process");
    assert!(during.last_error.as_ref().unwrap()["message"].as_str().unwrap().contains("deadline"));

    let finished = checker.join().unwrap();
    assert_eq!(finished.status, HealthStatus::Unhealthy);
    assert_eq!(finished.last_error.as_ref().unwrap()["code"], "VRAM-E019", "ended past its deadline: failed");
    assert_eq!(finished.last_error.as_ref().unwrap()["recoverable"], true);
    assert_eq!(finished.counters.checks_failed, 1);

    slots.stalling.store(false, Ordering::SeqCst);
    let next = monitor.check_now();
    assert_ne!(
        next.last_error.as_ref().unwrap()["code"],
        "VRAM-E019",
        "a check within its deadline is judged on what it found"
    );
    assert_eq!(next.counters.checks_failed, 2);
}

#[test]
fn stopping_never_waits_on_a_stuck_check_past_its_deadline() {
    let config = HealthConfig {
        interval: Duration::from_millis(10),
        check_deadline: Duration::from_millis(100),
        ..HealthConfig::default()
    };
    let (monitor, slots) = monitor(config, Duration::from_secs(4));
    slots.stalling.store(true, Ordering::SeqCst);
    let checks = monitor.start().unwrap();
    wait_for("the background check to pass its deadline", Duration::from_secs(3), || {
        monitor.report().last_error.is_some_and(|e| e["code"] == "VRAM-E019")
    });
    let stopping = Instant::now();
    drop(checks);
    let took = stopping.elapsed();
    // deadline (100 ms) + 1 s grace, far below the 4 s the check is stuck for.
    assert!(took < Duration::from_millis(2500), "stopping waited {took:?} on a stuck check");
    assert_eq!(monitor.report().status, HealthStatus::Unhealthy);
}

/// A slot view whose integrity pass panics.
struct PanickingSlots;

impl SlotView for PanickingSlots {
    fn budget_report(&self) -> BudgetReport {
        empty_budget()
    }
    fn slot_reports(&self) -> Vec<SlotReport> {
        Vec::new()
    }
    fn expected_slots(&self) -> usize {
        0
    }
    fn evictions(&self) -> u64 {
        0
    }
    fn ooms(&self) -> u64 {
        0
    }
    fn integrity_violations(&self, _deadline: Duration) -> Vec<ViolationReport> {
        panic!("integrity pass failed");
    }
}

#[test]
fn a_check_that_panicked_is_not_read_as_running_past_its_deadline() {
    let config = HealthConfig { check_deadline: Duration::from_millis(50), ..HealthConfig::default() };
    let monitor = HealthMonitor::new(Tracker::new(UNUSABLE_DEVICE).unwrap(), config)
        .unwrap()
        .with_slots(Arc::new(PanickingSlots));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.check_now()));
    assert!(panicked.is_err(), "the slot view panics");
    std::thread::sleep(Duration::from_millis(100)); // past the deadline
    let report = monitor.report();
    assert_eq!(report.status, HealthStatus::Starting, "no check completed and none is running: {report:?}");
    assert!(report.last_error.is_none(), "{:?}", report.last_error);
}
