//! `vramguard serve`: the health service as one value that starts and stops cleanly.
mod service;
mod workload;

pub use service::{Service, ServiceConfig};
pub use workload::{Workload, WorkloadSlot};
