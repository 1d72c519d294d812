//! The health monitor when its check cannot run — no driver here, or (on a GPU host) a device
//! ordinal that does not exist: the worker is unhealthy with the coded error, narrated at error
//! level; the background thread keeps checking and stops on drop. Runs the same with or without
//! a GPU.
#[path = "support/capture.rs"]
mod capture;

use std::sync::Arc;
use std::time::Duration;

use capture::Capture;
use tracing::Level;
use vramguard::health::{HealthConfig, HealthMonitor, HealthSource, HealthStatus};
use vramguard::slots::ModelSlotManager;
use vramguard::{Purpose, PurposeSet, Tracker};

/// No host has this many GPUs: checks of its tracker fail with VRAM-E001 (no driver) or
/// VRAM-E010 (no such device).
const UNUSABLE_DEVICE: u32 = 63;

fn monitor(interval: Duration) -> HealthMonitor {
    let config = HealthConfig { interval, ..HealthConfig::default() };
    HealthMonitor::new(Tracker::new(UNUSABLE_DEVICE).unwrap(), config).unwrap()
}

fn unusable(code: &serde_json::Value) -> bool {
    code == "VRAM-E001" || code == "VRAM-E010"
}

#[test]
fn before_the_first_check_the_worker_is_starting_and_not_ready() {
    let report = monitor(Duration::from_secs(60)).report();
    assert_eq!(report.status, HealthStatus::Starting);
    assert!(!report.ready() && report.last_check_secs.is_none());
}

#[test]
fn a_check_that_cannot_run_is_unhealthy_with_the_coded_error_and_narrated() {
    let capture = Capture::default();
    let monitor = monitor(Duration::from_secs(60));
    let report = capture.run(|| monitor.check_now());
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(!report.resident && !report.ready());
    let error = report.last_error.as_ref().expect("the check's error");
    assert!(unusable(&error["code"]), "{error}");
    assert_eq!(report.counters.checks_failed, 1);
    assert_eq!(report.device.process_bytes, None, "unknown, never guessed");
    assert_eq!(monitor.report().last_error, report.last_error, "cached for the HTTP layer");

    let verify = capture.with_action("verify");
    assert_eq!(verify.len(), 1, "{:?}", capture.events());
    assert_eq!(verify[0].level, Level::ERROR);
    assert!(matches!(verify[0].field("error_kind"), Some("no_device" | "invalid_device")), "{:?}", verify[0]);
    assert_eq!(verify[0].field("actor"), Some("vram-residency"));
    assert_eq!(verify[0].field("device"), Some("GPU63"));
    let status = capture.with_action("health_status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].level, Level::ERROR);
    assert_eq!(status[0].field("status"), Some("unhealthy"));
    assert!(status[0].field("human").unwrap().contains("Worker marked unhealthy"), "{:?}", status[0]);

    // Still failing: no second status event (events mark changes).
    capture.run(|| monitor.check_now());
    assert_eq!(capture.with_action("health_status").len(), 1);
    assert_eq!(monitor.report().counters.checks_failed, 2);
}

#[test]
fn the_report_carries_the_slots_budget_and_pressure() {
    let slots = ModelSlotManager::<String>::with_budget(1000);
    slots.allocate_slot("encoder".into(), 960).unwrap();
    let config = HealthConfig::default();
    let monitor = HealthMonitor::new(Tracker::new(0).unwrap(), config).unwrap().with_slots(Arc::new(slots.clone()));
    let report = monitor.check_now();
    let budget = report.budget.expect("budget");
    assert_eq!((budget.limit_bytes, budget.allocated_bytes, budget.available_bytes), (1000, 960, 40));
    assert_eq!((budget.pressure.as_str(), budget.pressure_level), ("critical", 3));
    assert_eq!(report.slots.len(), 1);
    assert_eq!((report.slots[0].name.as_str(), report.slots[0].size_bytes), ("encoder", 960));
    assert_eq!(report.expected_slots, 13);
}

#[test]
fn tracked_figures_come_from_the_tracker() {
    let tracker = Tracker::new(0).unwrap();
    let fake = 0x7000_0000_0000usize as *const std::ffi::c_void;
    tracker.adopt(fake, 4096, Purpose::KVCache, "framework tensor").unwrap();
    let monitor = HealthMonitor::new(tracker, HealthConfig::default()).unwrap();
    let report = monitor.check_now();
    assert_eq!((report.vram_bytes_used, report.tracked_allocations), (4096, 1));
    assert_eq!(report.by_purpose["KVCache"], 4096);
    assert_eq!(report.by_purpose["ModelWeights"], 0);
}

#[test]
fn invalid_configurations_are_rejected() {
    let zero = HealthConfig { interval: Duration::ZERO, ..HealthConfig::default() };
    assert_eq!(HealthMonitor::new(Tracker::new(0).unwrap(), zero).unwrap_err().code(), "VRAM-E007");
    let none = HealthConfig { purposes: PurposeSet::of(&[]), ..HealthConfig::default() };
    assert_eq!(HealthMonitor::new(Tracker::new(0).unwrap(), none).unwrap_err().code(), "VRAM-E007");
}

#[test]
fn background_checks_repeat_and_stop_on_drop() {
    let monitor = Arc::new(monitor(Duration::from_millis(10)));
    let handle = monitor.start().unwrap();
    let mut seen = 0;
    for _ in 0..2000 {
        seen = monitor.report().counters.checks_failed;
        if seen >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen >= 3, "only {seen} checks ran");
    drop(handle); // joins
    let after = monitor.report().counters.checks_failed;
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(monitor.report().counters.checks_failed, after, "a check ran after the handle was dropped");
    let age = monitor.report().last_check_secs.unwrap();
    assert!(age > 0.0, "the report's age advances between checks");
}

#[test]
fn a_long_interval_does_not_delay_shutdown() {
    let monitor = Arc::new(monitor(Duration::from_secs(3600)));
    let handle = monitor.start().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(handle);
        done.send(()).unwrap();
    });
    assert!(finished.recv_timeout(Duration::from_secs(10)).is_ok(), "dropping the handle did not return");
    assert!(monitor.report().counters.checks_failed >= 1, "the first check runs at once");
}
