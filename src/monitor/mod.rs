//! O1, O2: the GPU monitor. Each check reads every device, keeps the reading in that device's
//! history, tells listeners when a level changes, and at Critical asks the unloader for memory;
//! checks run on demand or in the background. What it saw is read back as copies, or as a JSON
//! dump — on demand, and through the out-of-memory hook while the state that led to an OOM is
//! still there to be seen.
//!
//! Files by concept: this one is the monitor and every method of it; `config` its settings;
//! `snapshot` readings, where they come from, their history and how they read in a dump; `alerts`
//! what it tells and asks at level changes (the slot manager's unloader adapter with them);
//! `dump_file` how a dump reaches the disk. Levels are the crate's one level type
//! ([`AlertThresholds`]), listeners a contained callback list, the background thread the crate's
//! periodic task.
mod alerts;
mod config;
mod dump_file;
mod memory_viz;
mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::callbacks::{contain, Callbacks};
use crate::error::{Error, Result};
use crate::periodic::{PeriodicTask, JOIN_WHATEVER_IT_TAKES};
use crate::tracker::Tracker;

pub use crate::pressure::{AlertLevel, AlertThresholds};
pub use alerts::{Alert, UnloadEvent, Unloader};
pub use config::MonitorConfig;
pub use snapshot::{CudaMemorySource, GpuMemoryInfo, MemorySource};

use snapshot::{to_value, tracker_json, unix_seconds, History};

/// The GPU monitor's background checks ([`GpuMonitor::start`]): dropping it stops and joins them.
pub type MonitorHandle = PeriodicTask;

/// Watches the memory of every device a [`MemorySource`] lists. Share it in an `Arc`: every
/// method takes `&self`, and [`GpuMonitor::start`] runs checks on a background thread.
pub struct GpuMonitor {
    config: MonitorConfig,
    thresholds: AlertThresholds,
    source: Arc<dyn MemorySource>,
    trackers: Mutex<BTreeMap<u32, Tracker>>,
    unloader: Mutex<Option<Arc<dyn Unloader>>>,
    devices: Mutex<BTreeMap<u32, DeviceState>>,
    unloads: Mutex<History<UnloadEvent>>,
    alert_callbacks: Callbacks<Alert>,
    unload_callbacks: Callbacks<UnloadEvent>,
    counters: Counters,
    last_error: Mutex<Option<Error>>,
    last_dump: Mutex<Option<PathBuf>>,
}

/// Totals since the monitor was made; they never wrap in practice and are read without locks.
#[derive(Default)]
struct Counters {
    checks_run: AtomicU64,
    checks_failed: AtomicU64,
    /// Panics of the unloader (the callbacks count their own).
    unloader_panics: AtomicU64,
    models_unloaded: AtomicU64,
    ooms_seen: AtomicU64,
}

/// What the monitor remembers of one device.
struct DeviceState {
    history: History<GpuMemoryInfo>,
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

    /// The configuration the monitor was made with.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The Warning and Critical thresholds from the configuration.
    pub fn thresholds(&self) -> AlertThresholds {
        self.thresholds
    }

    /// Reports `tracker`'s bytes as its device's `tracked_bytes` and lists its allocations in
    /// dumps. Replaces (and returns) a tracker attached earlier for the same device.
    pub fn attach_tracker(&self, tracker: Tracker) -> Option<Tracker> {
        lock(&self.trackers).insert(tracker.device(), tracker)
    }

    /// The tracker attached for `device`, if any.
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
                self.alert_callbacks.fire(&alert);
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
    /// says it cannot free that much: then nothing is unloaded (see the `alerts` module for
    /// what the monitor judges by).
    fn unload(&self, snapshot: &GpuMemoryInfo) -> Vec<String> {
        let Some(unloader) = lock(&self.unloader).clone() else { return Vec::new() };
        let requested_bytes =
            snapshot.used_bytes.saturating_sub(self.thresholds.below_critical_bytes(snapshot.total_bytes));
        if requested_bytes == 0 {
            return Vec::new(); // a device reporting zero total memory: nothing to free
        }
        let Some(reclaimable) = contain(|| unloader.reclaimable_bytes(snapshot.device)) else {
            self.counters.unloader_panics.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        };
        if reclaimable.is_some_and(|bytes| bytes < requested_bytes) {
            return Vec::new(); // even unloading every candidate would leave the device Critical
        }
        let unloaded = contain(|| unloader.unload_lru(snapshot.device, requested_bytes)).unwrap_or_else(|| {
            self.counters.unloader_panics.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        });
        self.counters.models_unloaded.fetch_add(unloaded.len() as u64, Ordering::Relaxed);
        let event = UnloadEvent { device: snapshot.device, requested_bytes, unloaded, timestamp: SystemTime::now() };
        lock(&self.unloads).push(event.clone());
        self.unload_callbacks.fire(&event);
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

    /// Runs [`GpuMonitor::check_now`] in the background every interval, the first check at once.
    /// Dropping the handle stops and joins the thread (waiting for a check in progress: a monitor
    /// check has no deadline of its own). Failed checks are kept in [`GpuMonitor::last_error`].
    /// Fails only when the OS cannot start a thread.
    pub fn start(self: &Arc<Self>) -> Result<MonitorHandle> {
        let monitor = Arc::clone(self);
        PeriodicTask::start("vramguard-monitor", self.config.interval, JOIN_WHATEVER_IT_TAKES, move || {
            // check_now contains panics and records failures itself.
            let _ = monitor.check_now();
        })
    }

    fn record_error(&self, error: Error) {
        *lock(&self.last_error) = Some(error);
    }

    /// The device's kept readings, oldest first (at most `history_len`).
    pub fn history(&self, device: u32) -> Vec<GpuMemoryInfo> {
        lock(&self.devices).get(&device).map(|state| state.history.to_vec()).unwrap_or_default()
    }

    /// The device's last reading; `None` for a device not checked yet.
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

    /// Checks that failed; the last error is kept in [`GpuMonitor::last_error`].
    pub fn checks_failed(&self) -> u64 {
        self.counters.checks_failed.load(Ordering::Relaxed)
    }

    /// Panics caught in alert and unload callbacks and in the unloader.
    pub fn callback_panics(&self) -> u64 {
        self.counters.unloader_panics.load(Ordering::Relaxed)
            + self.alert_callbacks.panics()
            + self.unload_callbacks.panics()
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

    /// A hook to call with allocation errors. It acts on [`Error::OutOfMemory`] only (other
    /// errors are ignored, so it can be called with any error): counts it in
    /// [`GpuMonitor::ooms_seen`] and writes a dump to `dump_dir` (the path is kept in
    /// [`GpuMonitor::last_dump`], a write failure in [`GpuMonitor::last_error`]). It holds the
    /// monitor weakly, so it neither keeps the monitor alive nor fails once it is gone.
    pub fn oom_hook(self: &Arc<Self>) -> impl Fn(&Error) + Send + Sync + 'static {
        let monitor: Weak<GpuMonitor> = Arc::downgrade(self);
        move |error: &Error| {
            if let Some(monitor) = monitor.upgrade() {
                monitor.on_out_of_memory(error);
            }
        }
    }

    fn on_out_of_memory(&self, error: &Error) {
        if !matches!(error, Error::OutOfMemory(_)) {
            return;
        }
        self.counters.ooms_seen.fetch_add(1, Ordering::Relaxed);
        let Some(dir) = &self.config.dump_dir else { return };
        let mut dump = self.dump_json();
        dump["trigger"] = "out_of_memory".into();
        dump["error"] = error.to_json();
        let path = match dump_file::write_json(dir, &dump) {
            Ok(path) => path,
            Err(failure) => return self.record_error(failure),
        };
        // The same allocations for PyTorch's memory visualiser, beside the JSON, same name.
        let snapshot = memory_viz::snapshot(&self.attached_trackers())
            .and_then(|bytes| dump_file::write_beside(&path, &bytes, "pickle"));
        if let Err(failure) = snapshot {
            self.record_error(failure);
        }
        *lock(&self.last_dump) = Some(path);
    }

    fn attached_trackers(&self) -> Vec<Tracker> {
        lock(&self.trackers).values().cloned().collect()
    }

    /// Everything the monitor knows, for every device it has checked or has a tracker for: per
    /// device the latest reading, the history and the tracker's allocations and usage.
    pub fn dump_json(&self) -> Value {
        let mut ids: Vec<u32> = self.devices();
        ids.extend(lock(&self.trackers).keys().copied());
        ids.sort_unstable();
        ids.dedup();
        let devices: Vec<Value> = ids
            .into_iter()
            .map(|device| {
                json!({
                    "device": device,
                    "latest": to_value(&self.latest(device)),
                    "history": to_value(&self.history(device)),
                    "tracker": self.tracker(device).map(|tracker| tracker_json(&tracker)),
                })
            })
            .collect();
        json!({
            "generated_at": unix_seconds(SystemTime::now()),
            "pid": std::process::id(),
            "thresholds": self.thresholds,
            "checks_run": self.checks_run(),
            "checks_failed": self.checks_failed(),
            "callback_panics": self.callback_panics(),
            "ooms_seen": self.ooms_seen(),
            "models_unloaded": self.models_unloaded(),
            "last_error": self.last_error().map(|e| e.to_json()),
            "unloads": to_value(&self.unloads()),
            "devices": devices,
        })
    }

    /// Writes [`GpuMonitor::dump_json`] to `dir/vramguard-dump-<unix_ms>-<pid>.json` (mode 0600)
    /// and returns the path. An I/O failure is [`Error::Io`] (VRAM-E017) naming the directory.
    pub fn write_dump(&self, dir: &Path) -> Result<PathBuf> {
        dump_file::write_json(dir, &self.dump_json())
    }

    /// Writes the attached trackers' live allocations as an allocation snapshot that PyTorch's
    /// memory visualiser opens (`python -m torch.cuda._memory_viz stats FILE`, `trace_plot`, or
    /// pytorch.org/memory_viz), each block annotated with its description, purpose and kind, to
    /// `dir/vramguard-dump-<unix_ms>-<pid>.pickle` (mode 0600, published as the JSON dump is), and
    /// returns the path. Written beside the JSON dump on every out-of-memory dump too, under the
    /// JSON's name with `.pickle`.
    /// VRAM-E017 for an I/O failure.
    pub fn write_memory_viz(&self, dir: &Path) -> Result<PathBuf> {
        dump_file::write_file(dir, &memory_viz::snapshot(&self.attached_trackers())?, "pickle")
    }
}

/// Locks, ignoring poison: every guarded value stays consistent between statements, and the
/// monitor must keep working after a panic elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
