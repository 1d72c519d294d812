//! A fit plan before loading (`/plan`, `vramguard plan`), CPU only: the answer computed from a
//! health report is the plan the slot manager itself would make for the same state, the device's
//! free memory is a limit of its own, bad questions are refused with their codes, and the
//! command-line client asks a running endpoint and exits by the answer.
#[path = "support/http_client.rs"]
mod http_client;
#[path = "support/reports.rs"]
mod reports;

use std::process::Command;
use std::time::Duration;

use vramguard::health::{FitPlan, HealthReport, SlotView};
use vramguard::slots::{ModelSlotManager, SlotConfig};
use vramguard::Purpose;

/// A bookkeeping manager with a 1,000-byte budget and five slots: `a` (oldest) … `e`, `b` pinned,
/// `d` in use (the guard is returned).
fn manager() -> (ModelSlotManager<String>, vramguard::slots::SlotUse<String>) {
    let config = SlotConfig { budget_bytes: 1000, unload_min_residency: Duration::ZERO, ..SlotConfig::default() };
    let slots = ModelSlotManager::with_config(config);
    for (key, size) in [("a", 100), ("b", 150), ("c", 200), ("d", 120), ("e", 180)] {
        slots.allocate_slot(key.to_string(), size).unwrap();
        std::thread::sleep(Duration::from_millis(2)); // distinct access times
    }
    slots.pin(&"b".to_string(), true).unwrap();
    let in_use = slots.use_slot(&"d".to_string()).unwrap();
    slots.touch(&"a".to_string()); // a becomes the most recently used
    (slots, in_use)
}

/// The report a health check of `slots` would serve, on a device with `free` bytes free.
fn report_of(slots: &ModelSlotManager<String>, free: u64) -> HealthReport {
    let mut report = reports::healthy();
    report.budget = Some(slots.budget_report());
    report.slots = slots.slot_reports();
    report.device.used_bytes = 1_000_000_000;
    report.device.total_bytes = report.device.used_bytes + free;
    report
}

#[test]
fn the_plan_from_a_report_is_the_plan_the_manager_makes() {
    let (slots, _in_use) = manager();
    let report = report_of(&slots, 1 << 40);
    let evictable: Vec<_> = report.slots.iter().filter(|s| s.evictable).map(|s| s.name.as_str()).collect();
    assert_eq!(evictable, ["c", "e", "a"], "pinned b and in-use d are not candidates; a was touched last");
    for bytes in (1..=1200).step_by(7) {
        let plan = FitPlan::for_report(&report, bytes, Purpose::ModelWeights);
        match slots.plan_fit(bytes) {
            Ok(keys) => {
                assert!(plan.fits, "{bytes}: {plan:?}");
                assert_eq!(plan.evict, keys, "{bytes}");
                let freed: u64 = keys.iter().map(|k| slots.slot(k).unwrap().size_bytes).sum();
                assert_eq!(plan.evict_bytes, freed, "{bytes}");
                assert_eq!(plan.budget_left_bytes, Some(1000 - (750 - freed + bytes)), "{bytes}");
                assert!(plan.reason.is_none());
            }
            Err(error) => {
                assert_eq!(error.code(), "VRAM-E002");
                assert!(!plan.fits && plan.evict.is_empty() && plan.reason.is_some(), "{bytes}: {plan:?}");
            }
        }
    }
    // Nothing changed: every slot is still there, nothing was evicted.
    assert_eq!((slots.loaded_count(), slots.stats().evictions, slots.allocated()), (5, 0, 750));
}

#[test]
fn the_device_is_a_limit_of_its_own() {
    // The fixture's budget: 8 MB, 3 MB charged, no slot evictable.
    let with_free = |free: u64| {
        let mut report = reports::healthy();
        report.device.used_bytes = 1_000_000_000;
        report.device.total_bytes = report.device.used_bytes + free;
        report
    };
    // 1 MB fits the budget without eviction, but the device has 500 kB free.
    let plan = FitPlan::for_report(&with_free(500_000), 1_000_000, Purpose::ModelWeights);
    assert!(!plan.fits && plan.reason.as_deref().is_some_and(|r| r.contains("500000 bytes free")), "{plan:?}");
    assert!(plan.evict.is_empty() && plan.device_left_bytes.is_none(), "{plan:?}");
    let plan = FitPlan::for_report(&with_free(3_000_000), 1_000_000, Purpose::ModelWeights);
    assert_eq!((plan.fits, plan.device_left_bytes, plan.budget_left_bytes), (true, Some(2_000_000), Some(4_000_000)));
    // A buffer of another purpose is judged against the device alone: no budget, no eviction.
    let plan = FitPlan::for_report(&with_free(50_000_000), 40_000_000, Purpose::KVCache);
    assert!(plan.fits && plan.evict.is_empty() && plan.budget_left_bytes.is_none(), "{plan:?}");
    // More than the whole budget.
    let plan = FitPlan::for_report(&with_free(50_000_000), 8_000_001, Purpose::ModelWeights);
    assert!(!plan.fits && plan.reason.as_deref().is_some_and(|r| r.contains("whole budget")), "{plan:?}");
    // Slots the plan evicts count as device memory given back.
    let (slots, _in_use) = manager();
    let report = report_of(&slots, 100);
    let plan = FitPlan::for_report(&report, 240, Purpose::ModelWeights);
    assert!(plan.fits && plan.evict_bytes >= 140, "{plan:?}");
    assert_eq!(plan.device_left_bytes, Some(100 + plan.evict_bytes - 240));
}

#[test]
fn plan_over_http_answers_and_refuses_bad_questions_with_codes() {
    let server = reports::serve(reports::healthy());
    let addr = server.local_addr();
    let answer = http_client::get(addr, "/plan?bytes=1000000&purpose=ModelWeights");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    assert_eq!((json["fits"].as_bool(), json["bytes"].as_u64()), (Some(true), Some(1_000_000)), "{json}");
    assert_eq!(json["budget_left_bytes"], 4_000_000, "{json}");
    assert_eq!(http_client::get(addr, "/plan?bytes=1MiB").json()["bytes"], 1 << 20);
    for (query, code) in [
        ("", "VRAM-E007"),
        ("?purpose=KVCache", "VRAM-E007"),
        ("?bytes=0", "VRAM-E003"),
        ("?bytes=lots", "VRAM-E003"),
        ("?bytes=1&bytes=2", "VRAM-E007"),
        ("?bytes=1&purpose=Weights", "VRAM-E007"),
        ("?bytes=1&evict=yes", "VRAM-E007"),
        ("?bytes=300TiB", "VRAM-E003"),
    ] {
        let response = http_client::get(addr, &format!("/plan{query}"));
        assert_eq!(response.status, 400, "{query}: {}", response.text());
        assert_eq!(response.json()["error"]["code"], code, "{query}: {}", response.text());
    }
}

#[test]
fn vramguard_plan_asks_a_running_worker_and_exits_by_the_answer() {
    let server = reports::serve(reports::healthy());
    let address = server.local_addr().to_string();
    let plan = |bytes: &str| {
        // VRAMGUARD_BIN where the suite runs away from its build tree (the GPU runner).
        let binary = std::env::var_os("VRAMGUARD_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_vramguard").into());
        Command::new(binary).args(["plan", bytes, "--address", &address]).output().unwrap()
    };
    let fits = plan("1MB");
    assert_eq!(fits.status.code(), Some(0), "{}", String::from_utf8_lossy(&fits.stderr));
    let json: serde_json::Value = serde_json::from_slice(&fits.stdout).unwrap();
    assert_eq!(json["fits"], true);
    let too_big = plan("1GB"); // the fixture's budget is 8 MB
    assert_eq!(too_big.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&too_big.stdout).unwrap();
    assert!(json["reason"].as_str().is_some_and(|r| r.contains("whole budget")), "{json}");
    drop(server);
    let unreachable = plan("1MB");
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("VRAM-E017"));
}
