//! O1: the monitor. Each check reads every device, keeps the reading in that device's history,
//! tells listeners when a level changes, and at Critical asks the unloader for memory.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::alert::Alert;
use super::callbacks::{contain, Callbacks};
use super::config::MonitorConfig;
use super::history::History;
use super::level::{AlertLevel, AlertThresholds};
use super::lock;
use super::snapshot::GpuMemoryInfo;
use super::source::{CudaMemorySource, MemorySource};
use super::unloader::{UnloadEvent, Unloader};
use crate::error::{Error, Result};
use crate::tracker::Tracker;

/// Watches the memory of every device a [`MemorySource`] lists. Share it in an `Arc`: every
/// method takes `&self`, and [`GpuMonitor::start`] runs checks on a background thread.
pub struct GpuMonitor {
    pub(super) config: MonitorConfig,
    pub(super) thresholds: AlertThresholds,
    source: Arc<dyn MemorySource>,
    pub(super) trackers: Mutex<BTreeMap<u32, Tracker>>,
    unloader: Mutex<Option<Arc<dyn Unloader>>>,
    pub(super) devices: Mutex<BTreeMap<u32, DeviceState>>,
    pub(super) unloads: Mutex<History<UnloadEvent>>,
    alert_callbacks: Callbacks<Alert>,
    unload_callbacks: Callbacks<UnloadEvent>,
    pub(super) counters: Counters,
    pub(super) last_error: Mutex<Option<Error>>,
    pub(super) last_dump: Mutex<Option<PathBuf>>,
}

/// Totals since the monitor was made; they never wrap in practice and are read without locks.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) checks_run: AtomicU64,
    pub(super) checks_failed: AtomicU64,
    pub(super) callback_panics: AtomicU64,
    pub(super) models_unloaded: AtomicU64,
    pub(super) ooms_seen: AtomicU64,
}

/// What the monitor remembers of one device.
pub(super) struct DeviceState {
    pub(super) history: History<GpuMemoryInfo>,
    level: AlertLevel,
}

impl std::fmt::Debug for GpuMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuMonitor")
            .field("config", &self.config)
            .field("checks_run", &self.checks_run())
            .finish_non_exhaustive()
    }
}

impl GpuMonitor {
    /// A monitor of every visible GPU, reading the driver. Making one needs no GPU; without one
    /// each check fails with VRAM-E001. A bad `config` is VRAM-E007.
    pub fn new(config: MonitorConfig) -> Result<GpuMonitor> {
        GpuMonitor::with_source(config, Arc::new(CudaMemorySource))
    }

    /// A monitor that reads `source` (scripted figures in tests, another backend elsewhere).
    pub fn with_source(config: MonitorConfig, source: Arc<dyn MemorySource>) -> Result<GpuMonitor> {
        let thresholds = config.validate()?;
        Ok(GpuMonitor {
            thresholds,
            source,
            trackers: Mutex::new(BTreeMap::new()),
            unloader: Mutex::new(None),
            devices: Mutex::new(BTreeMap::new()),
            unloads: Mutex::new(History::new(config.history_len)),
            alert_callbacks: Callbacks::new(),
            unload_callbacks: Callbacks::new(),
            counters: Counters::default(),
            last_error: Mutex::new(None),
            last_dump: Mutex::new(None),
            config,
        })
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    pub fn thresholds(&self) -> AlertThresholds {
        self.thresholds
    }

    /// Reports `tracker`'s bytes as its device's `tracked_bytes` and lists its allocations in
    /// dumps. Replaces (and returns) a tracker attached earlier for the same device.
    pub fn attach_tracker(&self, tracker: Tracker) -> Option<Tracker> {
        lock(&self.trackers).insert(tracker.device(), tracker)
    }

    pub fn tracker(&self, device: u32) -> Option<Tracker> {
        lock(&self.trackers).get(&device).cloned()
    }

    /// Who frees memory when a device is Critical. Replaces an earlier one.
    pub fn set_unloader(&self, unloader: Arc<dyn Unloader>) {
        *lock(&self.unloader) = Some(unloader);
    }

    /// Called on every level change. A panic in `callback` is caught and counted in
    /// [`GpuMonitor::callback_panics`]; the other callbacks still run. Callbacks run on the
    /// checking thread, so a slow one delays the next check.
    pub fn on_alert(&self, callback: impl Fn(&Alert) + Send + Sync + 'static) {
        self.alert_callbacks.add(callback);
    }

    /// Called after every request to the unloader, also when it freed nothing. (A check at
    /// Critical whose unloader could not free enough makes no request.)
    pub fn on_unload(&self, callback: impl Fn(&UnloadEvent) + Send + Sync + 'static) {
        self.unload_callbacks.add(callback);
    }

    /// Reads every device once. A failure (of the source, or a panic in it) is recorded in
    /// [`GpuMonitor::last_error`] and returned; then no reading of that check is kept, so that
    /// history never holds half a check.
    pub fn check_now(&self) -> Result<Vec<GpuMemoryInfo>> {
        let result = contain(|| self.check())
            .unwrap_or_else(|| Err(Error::Internal("a monitor check panicked (in its memory source?)".to_string())));
        self.counters.checks_run.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = &result {
            self.counters.checks_failed.fetch_add(1, Ordering::Relaxed);
            self.record_error(error.clone());
        }
        result
    }

    fn check(&self) -> Result<Vec<GpuMemoryInfo>> {
        let devices = self.source.devices()?;
        let snapshots = devices.iter().map(|&d| self.read(d)).collect::<Result<Vec<_>>>()?;
        let previous_levels = self.record(&snapshots);
        for (snapshot, previous) in snapshots.iter().zip(previous_levels) {
            let unloaded = if snapshot.level == AlertLevel::Critical { self.unload(snapshot) } else { Vec::new() };
            if snapshot.level != previous {
                let (device, level) = (snapshot.device, snapshot.level);
                let alert = Alert { device, level, previous, snapshot: snapshot.clone(), unloaded };
                self.alert_callbacks.fire(&alert, &self.counters.callback_panics);
            }
        }
        Ok(snapshots)
    }

    fn read(&self, device: u32) -> Result<GpuMemoryInfo> {
        let memory = self.source.read(device)?;
        let tracked_bytes = lock(&self.trackers).get(&device).map_or(0, Tracker::total_bytes);
        Ok(GpuMemoryInfo::new(device, memory, tracked_bytes, &self.thresholds, SystemTime::now()))
    }

    /// Keeps each reading and returns each device's level before it (Normal for a new device),
    /// all under one lock so that concurrent checks report each change once.
    fn record(&self, snapshots: &[GpuMemoryInfo]) -> Vec<AlertLevel> {
        let mut devices = lock(&self.devices);
        let history_len = self.config.history_len;
        snapshots
            .iter()
            .map(|snapshot| {
                let state = devices
                    .entry(snapshot.device)
                    .or_insert_with(|| DeviceState { history: History::new(history_len), level: AlertLevel::Normal });
                state.history.push(snapshot.clone());
                std::mem::replace(&mut state.level, snapshot.level)
            })
            .collect()
    }

    /// Asks the unloader for the bytes that bring the device just below Critical — unless it
    /// says it cannot free that much: then nothing is unloaded (see the `unloader` module for
    /// what the monitor judges by).
    fn unload(&self, snapshot: &GpuMemoryInfo) -> Vec<String> {
        let Some(unloader) = lock(&self.unloader).clone() else { return Vec::new() };
        let requested_bytes =
            snapshot.used_bytes.saturating_sub(self.thresholds.below_critical_bytes(snapshot.total_bytes));
        if requested_bytes == 0 {
            return Vec::new(); // a device reporting zero total memory: nothing to free
        }
        let Some(reclaimable) = contain(|| unloader.reclaimable_bytes(snapshot.device)) else {
            self.counters.callback_panics.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        };
        if reclaimable.is_some_and(|bytes| bytes < requested_bytes) {
            return Vec::new(); // even unloading every candidate would leave the device Critical
        }
        let unloaded = contain(|| unloader.unload_lru(snapshot.device, requested_bytes)).unwrap_or_else(|| {
            self.counters.callback_panics.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        });
        self.counters.models_unloaded.fetch_add(unloaded.len() as u64, Ordering::Relaxed);
        let event = UnloadEvent { device: snapshot.device, requested_bytes, unloaded, timestamp: SystemTime::now() };
        lock(&self.unloads).push(event.clone());
        self.unload_callbacks.fire(&event, &self.counters.callback_panics);
        event.unloaded
    }

    /// True when loading `bytes` more onto `device` keeps it below the critical threshold, from a
    /// fresh reading, decided in integers.
    pub fn can_load_model(&self, device: u32, bytes: u64) -> Result<bool> {
        let memory = self.source.read(device)?;
        if memory.total_bytes == 0 {
            return Ok(false);
        }
        let used = memory.total_bytes.saturating_sub(memory.free_bytes);
        let after = u128::from(used) + u128::from(bytes);
        Ok(after <= u128::from(self.thresholds.below_critical_bytes(memory.total_bytes)))
    }

    pub(super) fn record_error(&self, error: Error) {
        *lock(&self.last_error) = Some(error);
    }
}
