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

use std::collections::VecDeque;
use std::sync::Mutex;

use vramguard::health::{
    BudgetReport, HealthConfig, HealthMonitor, HealthSource, HealthStatus, IntegrityFindings, NotJudgedReport,
    SlotReport, SlotView, ViolationReport,
};
use vramguard::{Error, Tracker};

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
    fn check_integrity(&self, _deadline: Duration) -> IntegrityFindings {
        if self.stalling.load(Ordering::SeqCst) {
            std::thread::sleep(self.stall);
        }
        IntegrityFindings::default()
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
    fn check_integrity(&self, _deadline: Duration) -> IntegrityFindings {
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

/// A slot view whose integrity passes play a script: each takes its time and returns its findings,
/// and says when it has begun.
struct ScriptedSlots {
    script: Mutex<VecDeque<(Duration, IntegrityFindings)>>,
    begun: AtomicBool,
}

impl ScriptedSlots {
    fn new(script: Vec<(Duration, IntegrityFindings)>) -> Arc<ScriptedSlots> {
        Arc::new(ScriptedSlots { script: Mutex::new(script.into()), begun: AtomicBool::new(false) })
    }
}

impl SlotView for ScriptedSlots {
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
    fn check_integrity(&self, _deadline: Duration) -> IntegrityFindings {
        let (take, findings) = self.script.lock().unwrap().pop_front().unwrap_or_default();
        self.begun.store(true, Ordering::SeqCst);
        std::thread::sleep(take);
        findings
    }
}

fn changed(slot: &str) -> ViolationReport {
    ViolationReport {
        description: slot.into(),
        purpose: "ModelWeights".into(),
        kind: "Device".into(),
        bytes: 1 << 20,
        reason: "checksum changed since load".into(),
        error_kind: "integrity_violation".into(),
    }
}

fn scripted(
    config: HealthConfig,
    script: Vec<(Duration, IntegrityFindings)>,
) -> (Arc<HealthMonitor>, Arc<ScriptedSlots>) {
    let slots = ScriptedSlots::new(script);
    let monitor = HealthMonitor::new(Tracker::new(UNUSABLE_DEVICE).unwrap(), config).unwrap().with_slots(slots.clone());
    (Arc::new(monitor), slots)
}

/// Two checks overlap: the older one is slow and finishes last. The cached verdict is the newer
/// check's, not the last finisher's.
#[test]
fn an_older_check_that_finishes_later_does_not_replace_a_newer_verdict() {
    let old = IntegrityFindings { violations: vec![changed("seen by the older check")], ..Default::default() };
    let new = IntegrityFindings { violations: vec![changed("seen by the newer check")], ..Default::default() };
    let (monitor, slots) =
        scripted(HealthConfig::default(), vec![(Duration::from_millis(400), old), (Duration::ZERO, new)]);
    let older = {
        let monitor = monitor.clone();
        std::thread::spawn(move || monitor.check_now())
    };
    wait_for("the older check to begin", Duration::from_secs(5), || slots.begun.load(Ordering::SeqCst));
    let newer = monitor.check_now();
    assert_eq!(newer.violations[0].description, "seen by the newer check");
    let older = older.join().unwrap();
    assert_eq!(older.violations[0].description, "seen by the older check", "its caller gets its own report");
    let cached = monitor.report();
    assert_eq!(cached.violations.len(), 1);
    assert_eq!(cached.violations[0].description, "seen by the newer check", "the older check replaced a newer verdict");
    assert_eq!(cached.last_check_duration_secs, newer.last_check_duration_secs);
}

/// A sticky CUDA error met by a check that also ran past its deadline ends liveness with that
/// check, not one check later (the deadline's error must not hide it).
#[test]
fn a_sticky_error_in_a_check_past_its_deadline_ends_liveness_at_once() {
    let config = HealthConfig { check_deadline: Duration::from_millis(100), ..HealthConfig::default() };
    let sticky = IntegrityFindings {
        check_error: Some(Error::CudaSticky("cudaErrorIllegalAddress while summing slot E1".into())),
        ..Default::default()
    };
    let (monitor, _) = scripted(config, vec![(Duration::from_millis(300), sticky)]);
    let report = monitor.check_now();
    assert!(!report.live, "{report:?}");
    assert_eq!(report.last_error.as_ref().unwrap()["code"], "VRAM-E018", "{:?}", report.last_error);
    assert!(!monitor.report().live);
}

/// A sticky error from a slot's integrity checksum (not only from the residency sweep) ends
/// liveness, for good.
#[test]
fn a_sticky_error_from_an_integrity_checksum_ends_liveness() {
    let sticky = IntegrityFindings {
        check_error: Some(Error::CudaSticky("cudaErrorIllegalAddress while summing slot E1".into())),
        ..Default::default()
    };
    let (monitor, _) = scripted(HealthConfig::default(), vec![(Duration::ZERO, sticky)]);
    assert!(!monitor.check_now().live);
    let later = monitor.check_now();
    assert!(!later.live && !monitor.report().live, "a corrupt context stays corrupt");
    assert_eq!(later.last_error.as_ref().unwrap()["code"], "VRAM-E018");
}

/// A check that fails (here past its deadline) keeps what it found: the violation stays in the
/// report and in the metrics; slots it could not judge are listed with their reason and counted.
#[test]
fn a_failed_check_keeps_its_findings_and_lists_what_it_could_not_judge() {
    let config = HealthConfig { check_deadline: Duration::from_millis(100), ..HealthConfig::default() };
    let findings = IntegrityFindings {
        violations: vec![changed("E1")],
        not_judged: vec![NotJudgedReport {
            description: "E2".into(),
            check: "integrity".into(),
            reason: "checksum could not be computed: [VRAM-E011] cudaErrorLaunchOutOfResources".into(),
        }],
        check_error: None,
    };
    let (monitor, _) = scripted(config, vec![(Duration::from_millis(200), findings)]);
    let report = monitor.check_now();
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(report.violations, vec![changed("E1")], "the violation outlives the failed check");
    assert_eq!(report.not_judged.len(), 1);
    assert_eq!(report.counters.integrity_not_judged, 1);
    let metrics = vramguard::server::encode_metrics(&monitor.report()).unwrap();
    assert!(metrics.contains("vramguard_integrity_violations 1\n"), "{metrics}");
    assert!(metrics.contains("vramguard_not_judged_total{check=\"integrity\"} 1\n"), "{metrics}");
}
