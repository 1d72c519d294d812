//! The health service (S1–S4): periodic residency checks, the cached report, events.
mod report;

pub use report::{BudgetReport, DeviceReport, HealthCounters, HealthReport, HealthSource, HealthStatus, SlotReport, ViolationReport};
