//! What the health report shows of the model slots, without the health service knowing their key
//! type: [`SlotView`]. The slot manager's adapter is here too, beside the trait, so that the slots
//! depend on no health service: the manager as the report sees it — budget, pressure, loaded
//! slots, counters, and the slots whose weights changed since they were loaded (I1).
use std::time::Duration;

use crate::slots::{ModelSlotManager, SlotKey};

use super::report::{BudgetReport, SlotReport, SlotWeightsReport, ViolationReport};

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
    fn integrity_violations(&self, _deadline: Duration) -> Vec<ViolationReport> {
        Vec::new()
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

    fn integrity_violations(&self, deadline: Duration) -> Vec<ViolationReport> {
        self.verify_integrity_within(deadline)
            .into_iter()
            .map(|v| ViolationReport {
                description: v.key.to_string(),
                purpose: "ModelWeights".into(),
                kind: self.backing().map_or("Device".into(), |b| b.kind.to_string()),
                bytes: v.size_bytes,
                reason: match &v.actual {
                    Ok(actual) => format!("checksum {actual}, expected {} since load", v.expected),
                    Err(error) => format!("checksum could not be computed: {error}"),
                },
                error_kind: super::report::INTEGRITY_VIOLATION.into(),
            })
            .collect()
    }
}
