//! The health service (S1–S4): periodic residency checks and the cached report that the HTTP
//! layer serves.
mod config;
pub mod ledger;
mod monitor;
mod plan;
mod report;
mod slot_view;

pub use config::{HealthConfig, MAX_CHECK_INTERVAL, MIN_CHECK_INTERVAL};
pub use monitor::{HealthHandle, HealthMonitor, ProcessVramProbe};
pub use plan::FitPlan;
pub use report::{
    BudgetReport, DeviceReport, HealthCounters, HealthReport, HealthSource, HealthStatus, NotJudgedReport, SlotReport,
    SlotWeightsReport, ViolationReport, WitnessReport, INTEGRITY_CHECK, INTEGRITY_VIOLATION, RESIDENCY_VIOLATION,
    WITNESS_CHECK,
};
pub use slot_view::{IntegrityFindings, SlotView};
