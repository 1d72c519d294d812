//! What the health report shows of the model slots, without the health module knowing their key
//! type: a slot manager implements this.
use super::report::{BudgetReport, SlotReport, ViolationReport};

pub trait SlotView: Send + Sync {
    fn budget_report(&self) -> BudgetReport;
    /// Loaded slots, least recently used first.
    fn slot_reports(&self) -> Vec<SlotReport>;
    fn expected_slots(&self) -> usize;
    fn evictions(&self) -> u64;
    fn ooms(&self) -> u64;
    /// I1: slots whose memory changed since it was loaded, checked within `deadline` (the time
    /// the health check has left).
    fn integrity_violations(&self, _deadline: std::time::Duration) -> Vec<ViolationReport> {
        Vec::new()
    }
}
