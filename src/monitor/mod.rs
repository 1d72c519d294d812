//! O1, O2: the GPU monitor. It watches each device's memory against warning and critical
//! thresholds, keeps a bounded history, alerts on level changes, unloads idle models at
//! Critical, and writes JSON dumps when memory runs out.
//!
//! One concept per file: `level` decides levels, `snapshot` is one reading, `source` is where
//! readings come from, `gpu_monitor` checks, `readings` reports what it saw, `handle` runs checks
//! in the background, `unloader` frees memory at Critical, `dump`, `dump_file` and `oom` write
//! what was seen.
mod alert;
mod callbacks;
mod config;
mod dump;
mod dump_file;
mod gpu_monitor;
mod handle;
mod history;
mod level;
mod oom;
mod readings;
mod snapshot;
mod source;
mod unloader;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use alert::Alert;
pub use config::MonitorConfig;
pub use gpu_monitor::GpuMonitor;
pub use handle::MonitorHandle;
pub use level::{AlertLevel, AlertThresholds};
pub use snapshot::GpuMemoryInfo;
pub use source::{CudaMemorySource, MemorySource};
pub use unloader::{UnloadEvent, Unloader};

/// Locks, ignoring poison: every guarded value stays consistent between statements, and the
/// monitor must keep working after a panic elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
