//! Health reports built by hand, and a server that serves one: the input of the HTTP tests and
//! of the operator kit's checks (tests/http.rs, tests/deploy.rs).
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use vramguard::health::ledger::{LeakSuspicion, UntrackedLedger};
use vramguard::health::{
    BudgetReport, DeviceReport, HealthCounters, HealthReport, HealthSource, HealthStatus, NotJudgedReport, SlotReport,
    ViolationReport, WitnessReport,
};
use vramguard::server::{HealthServer, ServerConfig};
use vramguard::witness::{WitnessReading, WitnessVerdict};

/// A report that can be swapped while the server runs.
pub struct Fixed(pub Mutex<HealthReport>);

impl HealthSource for Fixed {
    fn report(&self) -> HealthReport {
        self.0.lock().unwrap().clone()
    }
}

pub fn device() -> DeviceReport {
    DeviceReport {
        ordinal: 0,
        name: "Test GPU".into(),
        pci_bus_id: "0000:19:00.0".into(),
        total_bytes: 80_000_000_000,
        used_bytes: 5_000_000_000,
        integrated: false,
        unified_memory: false,
        process_bytes: None,
        untracked_bytes: None,
    }
}

pub fn healthy() -> HealthReport {
    HealthReport {
        status: HealthStatus::Healthy,
        live: true,
        resident: true,
        vram_bytes_used: 3_500_000,
        last_check_secs: Some(1.5),
        last_check_unix_secs: Some(1_700_000_000.25),
        last_check_duration_secs: Some(0.004),
        last_error: None,
        violations: Vec::new(),
        by_purpose: BTreeMap::from([
            ("ModelWeights".to_owned(), 3_000_000),
            ("KVCache".to_owned(), 400_000),
            ("IntermediateBuffers".to_owned(), 100_000),
        ]),
        tracked_allocations: 7,
        device: device(),
        budget: Some(BudgetReport {
            limit_bytes: 8_000_000,
            allocated_bytes: 3_000_000,
            available_bytes: 5_000_000,
            pressure: "medium".into(),
            pressure_level: 1,
            below_critical_bytes: 7_600_000,
        }),
        slots: vec![
            SlotReport {
                name: "E1".into(),
                size_bytes: 2_000_000,
                pinned: true,
                users: 0,
                idle_secs: 3.0,
                evictable: false,
                weights: None,
            },
            SlotReport {
                name: "E2".into(),
                size_bytes: 1_000_000,
                pinned: false,
                users: 1,
                idle_secs: 0.0,
                evictable: false,
                weights: None,
            },
        ],
        expected_slots: 2,
        not_judged: Vec::new(),
        witness: None,
        ledger: None,
        leak_suspected: Vec::new(),
        counters: HealthCounters {
            checks_passed: 41,
            checks_violated: 2,
            checks_failed: 1,
            witness_not_judged: 5,
            integrity_not_judged: 1,
            evictions: 3,
            ooms: 4,
            eviction_reclaimed_bytes: 3 << 20,
            eviction_unreclaimed_bytes: 0,
        },
    }
}

pub fn unhealthy() -> HealthReport {
    HealthReport {
        status: HealthStatus::Unhealthy,
        resident: false,
        violations: vec![ViolationReport {
            description: "layer 3 weights".into(),
            purpose: "ModelWeights".into(),
            kind: "Managed".into(),
            bytes: 1_000_000,
            reason: "not device memory (memory type Managed)".into(),
            error_kind: "residency_violation".into(),
        }],
        ..healthy()
    }
}

pub fn config() -> ServerConfig {
    ServerConfig { port: 0, ..ServerConfig::default() }
}

pub fn serve(report: HealthReport) -> HealthServer {
    serve_with(config(), report)
}

pub fn serve_with(config: ServerConfig, report: HealthReport) -> HealthServer {
    HealthServer::start(config, Arc::new(Fixed(Mutex::new(report)))).expect("server starts")
}

/// A report in which every metric family is present: a budget, NVML's process figure and the
/// untracked bytes with their ledger and a suspected leak, a finished check, one violation of
/// each kind, and the witness with a reading of each verdict.
pub fn every_family() -> HealthReport {
    let mut report = unhealthy();
    report.device.process_bytes = Some(4_000_000);
    report.device.untracked_bytes = Some(500_000);
    report.violations.push(ViolationReport {
        description: "E2".into(),
        purpose: "ModelWeights".into(),
        kind: "Device".into(),
        bytes: 1_000_000,
        reason: "checksum changed since load".into(),
        error_kind: "integrity_violation".into(),
    });
    report.ledger = Some(UntrackedLedger {
        process_bytes: 4_000_000,
        tracked_bytes: 3_500_000,
        untracked_bytes: 500_000,
        cuda_context_bytes: 300_000,
        cuda_context_measured: "at device open",
        pool_cache_bytes: 100_000,
        witness_bytes: 64_000,
        remainder_bytes: 36_000,
    });
    report.leak_suspected.push(LeakSuspicion { source: "untracked".into(), grew_bytes: 1 << 30, over_checks: 10 });
    let reading = |description: &str, verdict, gb_per_s| WitnessReading {
        id: 0,
        description: description.into(),
        kind: "Device".into(),
        bytes: 1 << 30,
        offset: 0,
        slice_bytes: 256 << 20,
        gb_per_s,
        control_gb_per_s: None,
        windows: 0,
        verdict,
        reason: None,
    };
    report.witness = Some(WitnessReport {
        device_gb_per_s: 3000.0,
        host_gb_per_s: 51.0,
        host_ceiling_gb_per_s: 102.0,
        smallest_judged_bytes: 1 << 20,
        too_small: 1,
        device_bytes: 64 << 20,
        full_pass_checks: 4,
        not_judging: None,
        readings: vec![
            reading("E1", WitnessVerdict::Resident, 2900.0),
            reading("E2", WitnessVerdict::HostBacked, 48.0),
            reading("E3", WitnessVerdict::NotJudged, 60.0),
        ],
    });
    report.not_judged.push(NotJudgedReport {
        description: "E3".into(),
        check: "witness".into(),
        reason: "gpu busy: device memory read at 60 GB/s".into(),
    });
    report
}
