//! `vramguard serve`: the health service as one value that starts and stops cleanly.
mod running;
mod workload;

pub use running::{Service, ServiceConfig};
pub use workload::{Workload, WorkloadSlot};
