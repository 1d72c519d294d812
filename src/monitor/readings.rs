//! What the monitor has seen: histories, counters, the last error. Reads return copies.
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::gpu_monitor::GpuMonitor;
use super::level::AlertLevel;
use super::lock;
use super::snapshot::GpuMemoryInfo;
use super::unloader::UnloadEvent;
use crate::error::Error;

impl GpuMonitor {
    /// The device's kept readings, oldest first (at most `history_len`).
    pub fn history(&self, device: u32) -> Vec<GpuMemoryInfo> {
        lock(&self.devices).get(&device).map(|state| state.history.to_vec()).unwrap_or_default()
    }

    pub fn latest(&self, device: u32) -> Option<GpuMemoryInfo> {
        lock(&self.devices).get(&device).and_then(|state| state.history.last().cloned())
    }

    /// The level at the last check; Normal for a device not checked yet.
    pub fn level(&self, device: u32) -> AlertLevel {
        self.latest(device).map_or(AlertLevel::Normal, |snapshot| snapshot.level)
    }

    /// The devices checked so far.
    pub fn devices(&self) -> Vec<u32> {
        lock(&self.devices).keys().copied().collect()
    }

    /// The kept requests to the unloader, oldest first (at most `history_len`).
    pub fn unloads(&self) -> Vec<UnloadEvent> {
        lock(&self.unloads).to_vec()
    }

    /// Names of the models unloaded in the kept requests, in order.
    pub fn unloaded(&self) -> Vec<String> {
        lock(&self.unloads).to_vec().into_iter().flat_map(|event| event.unloaded).collect()
    }

    /// Models unloaded since the monitor was made.
    pub fn models_unloaded(&self) -> u64 {
        self.counters.models_unloaded.load(Ordering::Relaxed)
    }

    /// Checks finished, failed ones included.
    pub fn checks_run(&self) -> u64 {
        self.counters.checks_run.load(Ordering::Relaxed)
    }

    pub fn checks_failed(&self) -> u64 {
        self.counters.checks_failed.load(Ordering::Relaxed)
    }

    /// Panics caught in alert and unload callbacks and in the unloader.
    pub fn callback_panics(&self) -> u64 {
        self.counters.callback_panics.load(Ordering::Relaxed)
    }

    /// Out-of-memory errors passed to the hook from [`GpuMonitor::oom_hook`].
    pub fn ooms_seen(&self) -> u64 {
        self.counters.ooms_seen.load(Ordering::Relaxed)
    }

    /// The last failure of a check or of a dump. It stays after later successes, so that a
    /// transient failure is still there to be read.
    pub fn last_error(&self) -> Option<Error> {
        lock(&self.last_error).clone()
    }

    /// The last dump the out-of-memory hook wrote.
    pub fn last_dump(&self) -> Option<PathBuf> {
        lock(&self.last_dump).clone()
    }
}
