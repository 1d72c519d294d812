//! S1: the health monitor. Each check verifies that every tracked allocation whose purpose must be
//! resident is in device memory, reads device and process VRAM, and replaces the cached report
//! that the HTTP layer serves. A violation or a check that cannot run makes the worker unhealthy;
//! the next passing check makes it healthy again.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::periodic::PeriodicTask;
use crate::purpose::Purpose;
use crate::residency::{ResidencyReport, SweepSample};
use crate::tracker::Tracker;
use crate::witness::{
    BandwidthWitness, UnreadableWeights, WitnessCalibration, WitnessOutcome, WitnessVerdict, SMALLEST_JUDGED_BYTES,
};

use super::config::HealthConfig;
use super::ledger::{self, LeakTrend};
use super::report::{
    DeviceReport, HealthCounters, HealthReport, HealthSource, HealthStatus, NotJudgedReport, ViolationReport,
    WitnessReport, INTEGRITY_CHECK, INTEGRITY_VIOLATION, RESIDENCY_VIOLATION, WITNESS_CHECK,
};
use super::slot_view::{IntegrityFindings, SlotView};

/// This process's VRAM on a device (None = unknown).
pub type ProcessVramProbe = Arc<dyn Fn(u32) -> Option<u64> + Send + Sync>;

#[derive(Default)]
struct Counters {
    passed: AtomicU64,
    violated: AtomicU64,
    failed: AtomicU64,
    witness_not_judged: AtomicU64,
    integrity_not_judged: AtomicU64,
}

struct Cached {
    report: HealthReport,
    checked_at: Option<Instant>,
    /// The number of the check that made `report`: only a later-started check replaces it.
    check: Option<u64>,
}

/// The health monitor's background checks ([`HealthMonitor::start`]): dropping it stops them.
pub type HealthHandle = PeriodicTask;

/// Checks residency and keeps the latest [`HealthReport`]. Share it in an `Arc`; run it in the
/// background with [`HealthMonitor::start`].
pub struct HealthMonitor {
    tracker: Tracker,
    config: HealthConfig,
    /// Times reads of the `ModelWeights` allocations (None when the config turns it off).
    witness: Option<BandwidthWitness>,
    slots: Option<Arc<dyn SlotView>>,
    process_vram: ProcessVramProbe,
    cached: RwLock<Cached>,
    /// Device facts that do not change, read at the first check that can.
    device_static: Mutex<Option<DeviceReport>>,
    counters: Counters,
    /// Checks running now, by id, with the time each began: the oldest decides whether a check
    /// is past its deadline. Several can run at once (background and `check_now`).
    in_flight: Mutex<BTreeMap<u64, Instant>>,
    next_check: AtomicU64,
    /// Since when a verdict is owed: creation, then `start`. Before the first check completes,
    /// the report goes stale measured from here.
    owed_since: Mutex<Instant>,
    /// The CUDA context's VRAM, measured when the device was opened ([`HealthMonitor::with_context_bytes`]).
    context_bytes: Option<u64>,
    /// Without that, the first check's untracked bytes stand for it.
    first_untracked: OnceLock<u64>,
    trend: Mutex<LeakTrend>,
    /// The first unrecoverable CUDA error this process met. Once set the context is corrupt for
    /// good: the report is unhealthy and not live for ever, whatever later checks say.
    fatal: OnceLock<serde_json::Value>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor").field("device", &self.tracker.device()).field("config", &self.config).finish()
    }
}

impl HealthMonitor {
    /// A monitor of `tracker`'s allocations. Needs no GPU to be built: without one, checks fail
    /// and the worker reports unhealthy with the error.
    pub fn new(tracker: Tracker, config: HealthConfig) -> Result<HealthMonitor> {
        config.validate()?;
        let device = DeviceReport { ordinal: tracker.device(), ..DeviceReport::default() };
        let witness = match config.witness {
            Some(witness) if config.purposes.contains(Purpose::ModelWeights) => Some(BandwidthWitness::new(witness)?),
            _ => None,
        };
        Ok(HealthMonitor {
            tracker,
            config,
            witness,
            slots: None,
            process_vram: Arc::new(crate::nvml::process_vram_bytes),
            cached: RwLock::new(Cached { report: HealthReport::starting(device), checked_at: None, check: None }),
            device_static: Mutex::new(None),
            counters: Counters::default(),
            in_flight: Mutex::new(BTreeMap::new()),
            next_check: AtomicU64::new(0),
            owed_since: Mutex::new(Instant::now()),
            fatal: OnceLock::new(),
            context_bytes: None,
            first_untracked: OnceLock::new(),
            trend: Mutex::new(LeakTrend::new(config.leak_window_checks, config.leak_min_growth_bytes)),
        })
    }

    /// Include a slot manager's budget, pressure and slots in the report.
    pub fn with_slots(mut self, slots: Arc<dyn SlotView>) -> HealthMonitor {
        self.slots = Some(slots);
        self
    }

    /// The process's VRAM measured when the device was opened, before any allocation: the CUDA
    /// context the untracked-memory ledger accounts for. Without it the first check's untracked
    /// bytes stand for the context.
    pub fn with_context_bytes(mut self, bytes: Option<u64>) -> HealthMonitor {
        self.context_bytes = bytes;
        self
    }

    /// Where process VRAM comes from (NVML by default).
    pub fn with_process_vram(mut self, probe: ProcessVramProbe) -> HealthMonitor {
        self.process_vram = probe;
        self
    }

    /// The configuration the monitor was built with.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// The tracker whose allocations it checks.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Runs one check now and returns its report. A check that ends past `check_deadline`
    /// counts as failed (VRAM-E019), whatever it found: a device that slow is not serving. An
    /// unrecoverable CUDA error (VRAM-E018) met by any part of the check ends the process's
    /// liveness. Violations found are kept in the report even when the check then fails. When
    /// checks overlap, the one that started last decides the cached report: an older check that
    /// finishes later does not replace a newer verdict.
    pub fn check_now(&self) -> HealthReport {
        let started = Instant::now();
        let check = self.next_check.fetch_add(1, Ordering::Relaxed);
        let _running = InFlight::enter(&self.in_flight, check, started);
        // Own Device/Pool memory is sampled, a different part each check.
        let sample = SweepSample { own_per_sweep: self.config.own_queries_per_check, rotation: check };
        let verification = self.tracker.verify_sampled(self.config.purposes, sample);
        let left = || self.config.check_deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        // I1: weights whose checksum changed since load make the worker unhealthy too.
        let integrity = self.slots.as_ref().map(|view| view.check_integrity(left())).unwrap_or_default();
        // The witness: weights read at host-memory speed are not resident, whatever their labels.
        let witnessed = match (&self.witness, &verification) {
            (Some(witness), Ok(_)) => Some(witness.check(&self.tracker, left())),
            _ => None,
        };
        let duration = started.elapsed();
        let findings = Findings::gather(verification, integrity, witnessed.as_ref());
        // A sticky error anywhere ends liveness, also when the check is late as well.
        if let Some(error) = findings.errors.iter().find(|e| matches!(e, Error::CudaSticky(_))) {
            if self.fatal.set(error.to_json()).is_ok() {
                crate::events::health_fatal(self.tracker.device(), error);
            }
        }
        let late = (duration > self.config.check_deadline).then(|| {
            Error::Timeout(format!(
                "the residency check took {:.3} s, past its deadline of {:?}",
                duration.as_secs_f64(),
                self.config.check_deadline
            ))
        });
        let check_error = late.or_else(|| findings.errors.first().cloned());
        let mut report = self.build_report(&findings, check_error, duration.as_secs_f64(), SystemTime::now());
        if let (Some(witness), Some(witnessed)) = (&self.witness, witnessed) {
            report.witness = Some(witness_report(witness, witnessed));
        }
        let previous = {
            let mut cached = self.cached.write().unwrap_or_else(|p| p.into_inner());
            if cached.check.is_some_and(|newest| newest > check) {
                return report;
            }
            let previous = cached.report.status;
            *cached = Cached { report: report.clone(), checked_at: Some(Instant::now()), check: Some(check) };
            previous
        };
        if previous != report.status {
            crate::events::health_status(report.status == HealthStatus::Healthy, &status_reason(&report));
        }
        report
    }

    /// Starts periodic checks on a background thread, the first at once. A verdict is owed from
    /// now on (a monitor built long before is not stale at once). Dropping the handle stops the
    /// checks and joins the thread — but never waits on a check stuck in a hung device longer than
    /// the check's deadline and a grace second: then the thread is left to finish on its own, and
    /// the drop returns.
    pub fn start(self: &Arc<Self>) -> Result<HealthHandle> {
        *lock(&self.owed_since) = Instant::now();
        let monitor = Arc::clone(self);
        let join_within = self.config.check_deadline + Duration::from_secs(1);
        PeriodicTask::start("vramguard-health", self.config.interval, join_within, move || {
            // A panic in a check is contained by the task: it must not kill the health thread.
            monitor.check_now();
        })
    }

    fn build_report(
        &self,
        findings: &Findings,
        check_error: Option<Error>,
        duration_secs: f64,
        at: SystemTime,
    ) -> HealthReport {
        let usage = self.tracker.usage();
        let by_purpose: BTreeMap<String, u64> = Purpose::ALL.iter().map(|p| (p.to_string(), usage.bytes(*p))).collect();
        let mut device = self.device_static();
        if let Some(residency) = &findings.residency {
            device.total_bytes = residency.device_total_bytes;
            device.used_bytes = residency.device_used_bytes;
        }
        let changed: Vec<&ViolationReport> =
            findings.violations.iter().filter(|v| v.error_kind == INTEGRITY_VIOLATION).collect();
        if let Some(first) = changed.first() {
            crate::events::integrity_failed(self.tracker.device(), changed.len(), &first.description);
        }
        if let Some(first) = findings.host_backed.first() {
            crate::events::bandwidth_violation(self.tracker.device(), findings.host_backed.len(), first);
        }
        let counter = match (&check_error, findings.violations.is_empty()) {
            (Some(_), _) => &self.counters.failed,
            (None, false) => &self.counters.violated,
            (None, true) => &self.counters.passed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let count = |check: &str| findings.not_judged.iter().filter(|n| n.check == check).count() as u64;
        self.counters.witness_not_judged.fetch_add(count(WITNESS_CHECK), Ordering::Relaxed);
        self.counters.integrity_not_judged.fetch_add(count(INTEGRITY_CHECK), Ordering::Relaxed);
        let resident = check_error.is_none() && findings.violations.is_empty();
        let status = if resident { HealthStatus::Healthy } else { HealthStatus::Unhealthy };
        let last_error = check_error.as_ref().map(Error::to_json);
        let (mut ledger, mut leak_suspected) = (None, Vec::new());
        if findings.residency.is_some() {
            device.process_bytes = (self.process_vram)(self.tracker.device());
            // Tracked memory that lives outside the device (a violation) is not in NVML's figure.
            device.untracked_bytes = device.process_bytes.map(|process| process.saturating_sub(usage.total_bytes));
            let pool_cache = self.tracker.pool_usage().map_or(0, |(reserved, used)| reserved.saturating_sub(used));
            let witness_bytes = self.witness.as_ref().map_or(0, BandwidthWitness::device_bytes);
            ledger = device.process_bytes.map(|process| {
                let own = ledger::OwnMemory { pool_cache_bytes: pool_cache, witness_bytes };
                ledger::ledger(process, usage.total_bytes, own, self.context_bytes, &self.first_untracked)
            });
            let mut figures: BTreeMap<String, u64> = by_purpose.clone();
            if let Some(ledger) = &ledger {
                figures.insert(ledger::UNTRACKED.to_string(), ledger.remainder_bytes);
            }
            let (now, newly) = lock(&self.trend).observe(&figures);
            for suspicion in &newly {
                crate::events::leak_suspected(self.tracker.device(), suspicion);
            }
            leak_suspected = now;
        }
        let (budget, slots, expected_slots, evictions, ooms, receipts) = match &self.slots {
            Some(view) => (
                Some(view.budget_report()),
                view.slot_reports(),
                view.expected_slots(),
                view.evictions(),
                view.ooms(),
                view.receipts(),
            ),
            None => (None, Vec::new(), 0, 0, 0, Default::default()),
        };
        // A corrupt context stays corrupt: later checks cannot make the process live again.
        let (status, last_error) = match self.fatal.get() {
            Some(fatal) => (HealthStatus::Unhealthy, Some(fatal.clone())),
            None => (status, last_error),
        };
        HealthReport {
            status,
            live: self.fatal.get().is_none(),
            resident,
            vram_bytes_used: usage.total_bytes,
            last_check_secs: Some(0.0),
            last_check_unix_secs: at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64()),
            last_check_duration_secs: Some(duration_secs),
            last_error,
            violations: findings.violations.clone(),
            not_judged: findings.not_judged.clone(),
            by_purpose,
            tracked_allocations: usage.allocation_count,
            device,
            budget,
            slots,
            expected_slots,
            witness: None,
            ledger,
            leak_suspected,
            counters: HealthCounters {
                checks_passed: self.counters.passed.load(Ordering::Relaxed),
                checks_violated: self.counters.violated.load(Ordering::Relaxed),
                checks_failed: self.counters.failed.load(Ordering::Relaxed),
                witness_not_judged: self.counters.witness_not_judged.load(Ordering::Relaxed),
                integrity_not_judged: self.counters.integrity_not_judged.load(Ordering::Relaxed),
                evictions,
                ooms,
                eviction_reclaimed_bytes: receipts.reclaimed_bytes,
                eviction_unreclaimed_bytes: receipts.unreclaimed_bytes,
            },
        }
    }

    /// Name, bus id, integration and unified-memory flags: read once, when the device answers.
    fn device_static(&self) -> DeviceReport {
        let mut known = self.device_static.lock().unwrap_or_else(|p| p.into_inner());
        if known.is_none() {
            if let Ok(info) = Device::new(self.tracker.device()).and_then(|d| d.info()) {
                *known = Some(DeviceReport {
                    ordinal: info.ordinal,
                    name: info.name.clone(),
                    pci_bus_id: info.pci_bus_id.clone(),
                    total_bytes: info.memory.total_bytes,
                    integrated: info.integrated,
                    unified_memory: info.unified_memory(),
                    ..DeviceReport::default()
                });
            }
        }
        known.clone().unwrap_or(DeviceReport { ordinal: self.tracker.device(), ..DeviceReport::default() })
    }

    /// Whether the current report, aged as `/health` sees it, says Healthy.
    pub fn is_healthy(&self) -> bool {
        self.report().status == HealthStatus::Healthy
    }

    /// The last check's error, when it could not run.
    pub fn last_error(&self) -> Option<serde_json::Value> {
        self.report().last_error
    }
}

impl HealthSource for HealthMonitor {
    /// The cached report with its age brought up to date, judged against the clock: not live
    /// after an unrecoverable CUDA error; unhealthy while a check runs past its deadline; stale
    /// when the last completed check is older than `stale_after` intervals. Never calls CUDA.
    fn report(&self) -> HealthReport {
        let now = Instant::now();
        let (mut report, checked_at) = {
            let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
            (cached.report.clone(), cached.checked_at)
        };
        report.last_check_secs = checked_at.map(|at| now.saturating_duration_since(at).as_secs_f64());
        if let Some(fatal) = self.fatal.get() {
            report.live = false;
            report.status = HealthStatus::Unhealthy;
            report.last_error = Some(fatal.clone());
            return report;
        }
        let oldest_running = lock(&self.in_flight).values().next().copied();
        if let Some(running) = oldest_running.map(|since| now.saturating_duration_since(since)) {
            if running > self.config.check_deadline {
                report.status = HealthStatus::Unhealthy;
                report.last_error = Some(overdue(running, self.config.check_deadline).to_json());
                // It will count as failed when it ends; say so now.
                report.counters.checks_failed += 1;
                return report;
            }
        }
        let verdict_from = checked_at.unwrap_or_else(|| *lock(&self.owed_since));
        if now.saturating_duration_since(verdict_from) > self.config.stale_after_duration() {
            report.status = HealthStatus::Stale;
        }
        report
    }
}

/// One check's entry in `in_flight`, removed when the check ends — also if it panics, so that a
/// check that died is not read as one still running past its deadline for ever.
struct InFlight<'a> {
    checks: &'a Mutex<BTreeMap<u64, Instant>>,
    id: u64,
}

impl<'a> InFlight<'a> {
    fn enter(checks: &'a Mutex<BTreeMap<u64, Instant>>, id: u64, started: Instant) -> InFlight<'a> {
        lock(checks).insert(id, started);
        InFlight { checks, id }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.checks).remove(&self.id);
    }
}

fn overdue(running: Duration, deadline: Duration) -> Error {
    Error::Timeout(format!(
        "a residency check has been running for {:.3} s, past its deadline of {deadline:?}",
        running.as_secs_f64()
    ))
}

/// A panic never happens while these locks are held; should one, the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn violation_report(v: &crate::residency::Violation) -> ViolationReport {
    ViolationReport {
        description: v.description.clone(),
        purpose: v.purpose.to_string(),
        kind: v.kind.to_string(),
        bytes: v.bytes,
        reason: format!("{} (memory type {})", v.reason, v.memory_type),
        error_kind: RESIDENCY_VIOLATION.into(),
    }
}

/// What one check found, from its three parts, and the errors that stopped any of them. An error
/// of one part never drops what the others found.
struct Findings {
    /// The residency sweep's report, when it could run.
    residency: Option<ResidencyReport>,
    violations: Vec<ViolationReport>,
    not_judged: Vec<NotJudgedReport>,
    /// The descriptions of the weights the witness confirmed host-backed (within `violations`).
    host_backed: Vec<String>,
    /// Errors of the check itself, in the order the parts ran.
    errors: Vec<Error>,
}

impl Findings {
    fn gather(
        verification: Result<ResidencyReport>,
        integrity: IntegrityFindings,
        witnessed: Option<&WitnessOutcome>,
    ) -> Findings {
        let mut findings = Findings {
            residency: None,
            violations: Vec::new(),
            not_judged: Vec::new(),
            host_backed: Vec::new(),
            errors: Vec::new(),
        };
        let mut flagged = Vec::new();
        match verification {
            Ok(residency) => {
                findings.violations.extend(residency.violations.iter().map(violation_report));
                flagged.extend(residency.violations.iter().map(|v| v.id));
                findings.residency = Some(residency);
            }
            Err(error) => findings.errors.push(error),
        }
        findings.violations.extend(integrity.violations);
        findings.not_judged.extend(integrity.not_judged);
        findings.errors.extend(integrity.check_error);
        if let Some(witnessed) = witnessed {
            findings.violations.extend(bandwidth_violations(witnessed));
            findings
                .host_backed
                .extend(witnessed.readings.iter().filter(|r| r.host_backed()).map(|r| r.description.clone()));
            // Weights the GPU cannot read: a violation, once (the sweep may have flagged them).
            findings.violations.extend(
                witnessed.unreadable.iter().filter(|u| !flagged.contains(&u.allocation.id)).map(unreadable_violation),
            );
            findings.not_judged.extend(
                witnessed.readings.iter().filter(|r| r.verdict == WitnessVerdict::NotJudged).map(|r| NotJudgedReport {
                    description: r.description.clone(),
                    check: WITNESS_CHECK.into(),
                    reason: r.reason.clone().unwrap_or_default(),
                }),
            );
            findings.errors.extend(witnessed.check_error.clone());
        }
        // The most serious first: a sticky error, then a deadline.
        findings.errors.sort_by_key(|e| match e {
            Error::CudaSticky(_) => 0,
            Error::Timeout(_) => 1,
            _ => 2,
        });
        findings
    }
}

/// The witness's host-backed readings as residency violations of reason `bandwidth`.
fn bandwidth_violations(witnessed: &WitnessOutcome) -> Vec<ViolationReport> {
    witnessed
        .readings
        .iter()
        .filter(|r| r.host_backed())
        .map(|r| ViolationReport {
            description: r.description.clone(),
            purpose: Purpose::ModelWeights.to_string(),
            kind: r.kind.clone(),
            bytes: r.bytes,
            reason: r.reason.clone().unwrap_or_else(|| "bandwidth".into()),
            error_kind: RESIDENCY_VIOLATION.into(),
        })
        .collect()
}

fn unreadable_violation(unreadable: &UnreadableWeights) -> ViolationReport {
    let allocation = &unreadable.allocation;
    ViolationReport {
        description: allocation.description.clone(),
        purpose: allocation.purpose.to_string(),
        kind: allocation.kind.to_string(),
        bytes: allocation.bytes,
        reason: format!("not readable by the GPU: {}", unreadable.reason),
        error_kind: RESIDENCY_VIOLATION.into(),
    }
}

fn witness_report(witness: &BandwidthWitness, witnessed: WitnessOutcome) -> WitnessReport {
    let calibration = witnessed.calibration;
    let figure = |read: fn(&WitnessCalibration) -> f64| calibration.as_ref().map_or(0.0, read);
    WitnessReport {
        device_gb_per_s: figure(|c| c.device_memory.gb_per_second()),
        host_gb_per_s: figure(|c| c.host_memory.gb_per_second()),
        host_ceiling_gb_per_s: figure(WitnessCalibration::host_ceiling_gb_per_second),
        smallest_judged_bytes: SMALLEST_JUDGED_BYTES,
        too_small: witnessed.too_small,
        device_bytes: witness.device_bytes(),
        full_pass_checks: witness.config().full_pass_checks,
        not_judging: witnessed.not_judging,
        readings: witnessed.readings,
    }
}

fn status_reason(report: &HealthReport) -> String {
    if let Some(error) = &report.last_error {
        return format!("a failed residency check: {}", error["message"].as_str().unwrap_or("unknown error"));
    }
    match report.violations.first() {
        Some(v) => format!("VRAM residency violation: {} ({} {}) {}", v.description, v.purpose, v.kind, v.reason),
        None => format!("all {} checked allocations resident", report.tracked_allocations),
    }
}
