//! What the health report shows of the model slots, without the health service knowing their key
//! type: [`SlotView`]. The slot manager's adapter is here too, beside the trait, so that the slots
//! depend on no health service: the manager as the report sees it — budget, pressure, loaded
//! slots, counters, and the slots whose weights changed since they were loaded (I1).
use std::time::Duration;

use crate::slots::{ModelSlotManager, SlotKey};

use super::report::{BudgetReport, NotJudgedReport, SlotReport, SlotWeightsReport, ViolationReport};
use crate::error::Error;

/// One check's integrity pass over the slots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntegrityFindings {
    /// Slots whose checksum differs from the one taken at load.
    pub violations: Vec<ViolationReport>,
    /// Slots whose checksum could not be computed for a reason of their own.
    pub not_judged: Vec<NotJudgedReport>,
    /// An error of the GPU itself ([`Error::is_device_wide`]): the check fails with it.
    pub check_error: Option<Error>,
}

/// The model slots as the health report shows them, whatever their key type: the budget, the loaded
/// slots, the counters and the integrity check. [`ModelSlotManager`] implements it.
pub trait SlotView: Send + Sync {
    /// The slots' budget, allocation and pressure now.
    fn budget_report(&self) -> BudgetReport;
    /// Loaded slots, least recently used first.
    fn slot_reports(&self) -> Vec<SlotReport>;
    /// How many slots the workload has (0 when none was announced).
    fn expected_slots(&self) -> usize;
    /// Slots evicted since the manager was made.
    fn evictions(&self) -> u64;
    /// Out-of-memory failures since the manager was made.
    fn ooms(&self) -> u64;
    /// Eviction receipts since the manager was made.
    fn receipts(&self) -> crate::slots::receipts::ReceiptCounts {
        crate::slots::receipts::ReceiptCounts::default()
    }
    /// I1: slots whose memory changed since it was loaded, checked within `deadline` (the time
    /// the health check has left).
    fn check_integrity(&self, _deadline: Duration) -> IntegrityFindings {
        IntegrityFindings::default()
    }
}

impl<K: SlotKey> SlotView for ModelSlotManager<K> {
    fn budget_report(&self) -> BudgetReport {
        let pressure = self.pressure_level();
        BudgetReport {
            limit_bytes: self.budget(),
            allocated_bytes: self.allocated(),
            available_bytes: self.available(),
            pressure: pressure.to_string(),
            pressure_level: pressure.as_index(),
            below_critical_bytes: self.config().thresholds.below_critical_bytes(self.budget()),
        }
    }

    fn slot_reports(&self) -> Vec<SlotReport> {
        let now = self.config().clock.now();
        let idle: std::collections::HashSet<K> = self.idle_keys().into_iter().collect();
        self.slots()
            .into_iter()
            .map(|s| SlotReport {
                evictable: idle.contains(&s.key),
                name: s.key.to_string(),
                size_bytes: s.size_bytes,
                pinned: s.pinned,
                users: s.users,
                idle_secs: now.saturating_sub(s.last_accessed).as_secs_f64(),
                weights: s.weights.as_deref().map(|w| SlotWeightsReport {
                    files: w.files.iter().map(|f| f.display().to_string()).collect(),
                    tensors: w.tensors.len(),
                    bytes: w.report.bytes,
                    load_seconds: w.report.duration.as_secs_f64(),
                    load_gb_per_s: w.report.gb_per_second(),
                    verified: w.report.verified,
                    checksum: w.report.checksum.to_string(),
                }),
            })
            .collect()
    }

    fn expected_slots(&self) -> usize {
        self.config().expected_slots
    }

    fn evictions(&self) -> u64 {
        self.stats().evictions
    }

    fn ooms(&self) -> u64 {
        self.stats().ooms
    }

    fn receipts(&self) -> crate::slots::receipts::ReceiptCounts {
        self.stats().receipts
    }

    fn check_integrity(&self, deadline: Duration) -> IntegrityFindings {
        let mut findings = IntegrityFindings::default();
        for v in self.verify_integrity_within(deadline) {
            match v.actual {
                Ok(actual) => findings.violations.push(ViolationReport {
                    description: v.key.to_string(),
                    purpose: "ModelWeights".into(),
                    kind: self.backing().map_or("Device".into(), |b| b.kind.to_string()),
                    bytes: v.size_bytes,
                    reason: format!("checksum {actual}, expected {} since load", v.expected),
                    error_kind: super::report::INTEGRITY_VIOLATION.into(),
                }),
                Err(error) if error.is_device_wide() => {
                    findings.check_error.get_or_insert(error);
                }
                Err(error) => findings.not_judged.push(NotJudgedReport {
                    description: v.key.to_string(),
                    check: super::report::INTEGRITY_CHECK.into(),
                    reason: format!("checksum could not be computed: {error}"),
                }),
            }
        }
        findings
    }
}
