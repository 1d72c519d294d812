//! O1, O2 without a GPU: the monitor's policy (levels, history, alerts, unloading, the background
//! thread, dumps) driven by a scripted memory source whose figures each test sets.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use vramguard::monitor::{AlertLevel, AlertThresholds, GpuMonitor, MemorySource, MonitorConfig, UnloadEvent, Unloader};
use vramguard::{AllocationKind, Error, MemoryInfo, OutOfMemory, Purpose, Tracker, Usage};

use AlertLevel::{Critical, Normal, Warning};

/// Figures per device, set by the test; a device can be made to fail.
#[derive(Default)]
struct Scripted {
    devices: Mutex<BTreeMap<u32, Result<MemoryInfo, Error>>>,
}

impl Scripted {
    fn set(&self, device: u32, used: u64, total: u64) {
        let info = MemoryInfo { free_bytes: total - used, total_bytes: total };
        self.devices.lock().unwrap().insert(device, Ok(info));
    }

    fn fail(&self, device: u32, error: Error) {
        self.devices.lock().unwrap().insert(device, Err(error));
    }
}

impl MemorySource for Scripted {
    fn read(&self, device: u32) -> vramguard::Result<MemoryInfo> {
        let devices = self.devices.lock().unwrap();
        devices.get(&device).cloned().unwrap_or_else(|| Err(Error::InvalidDevice(format!("no device {device}"))))
    }

    fn devices(&self) -> vramguard::Result<Vec<u32>> {
        Ok(self.devices.lock().unwrap().keys().copied().collect())
    }
}

fn monitor_with(config: MonitorConfig) -> (Arc<GpuMonitor>, Arc<Scripted>) {
    let source = Arc::new(Scripted::default());
    let monitor = GpuMonitor::with_source(config, Arc::clone(&source) as Arc<dyn MemorySource>).unwrap();
    (Arc::new(monitor), source)
}

fn monitor() -> (Arc<GpuMonitor>, Arc<Scripted>) {
    monitor_with(MonitorConfig::default())
}

type Seen = Arc<Mutex<Vec<(u32, AlertLevel, AlertLevel)>>>;

/// Records (device, previous, level) of every alert.
fn record_alerts(monitor: &GpuMonitor) -> Seen {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    monitor.on_alert(move |alert| sink.lock().unwrap().push((alert.device, alert.previous, alert.level)));
    seen
}

fn taken(seen: &Seen) -> Vec<(u32, AlertLevel, AlertLevel)> {
    std::mem::take(&mut *seen.lock().unwrap())
}

/// Polls until `done` or 5 s have passed (a generous bound: the wait, not a timing, is tested).
fn wait_until(done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("vramguard-monitor-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn history_keeps_exactly_the_last_100_entries() {
    let (monitor, source) = monitor();
    for used in 0..150u64 {
        source.set(0, used, 1000);
        monitor.check_now().unwrap();
    }
    let history = monitor.history(0);
    let used: Vec<u64> = history.iter().map(|s| s.used_bytes).collect();
    assert_eq!(used, (50..150).collect::<Vec<u64>>());
    assert_eq!(monitor.latest(0).unwrap().used_bytes, 149);
    assert_eq!(monitor.checks_run(), 150);
    assert!(monitor.history(1).is_empty() && monitor.latest(1).is_none());
}

#[test]
fn history_length_is_configurable() {
    let (monitor, source) = monitor_with(MonitorConfig { history_len: 3, ..MonitorConfig::default() });
    for used in 1..=5u64 {
        source.set(0, used, 1000);
        monitor.check_now().unwrap();
    }
    assert_eq!(monitor.history(0).iter().map(|s| s.used_bytes).collect::<Vec<_>>(), vec![3, 4, 5]);
}

#[test]
fn snapshot_figures_come_from_the_source_and_tracker() {
    let (monitor, source) = monitor();
    source.set(0, 250, 1000);
    source.set(1, 0, 4000);
    let tracker = Tracker::new(0).unwrap();
    tracker.record(0x1000 as *const _, 4096, Purpose::KVCache, AllocationKind::Device, "kv").unwrap();
    assert!(monitor.attach_tracker(tracker).is_none());
    let snapshots = monitor.check_now().unwrap();
    assert_eq!(snapshots.len(), 2);
    let s = &snapshots[0];
    assert_eq!((s.device, s.free_bytes, s.total_bytes, s.used_bytes, s.tracked_bytes), (0, 750, 1000, 250, 4096));
    assert_eq!(s.utilization_percent, 25.0);
    assert_eq!(s.level, Normal);
    assert_eq!(snapshots[1].tracked_bytes, 0, "no tracker attached to device 1");
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["level"], "Normal");
    let seconds = json["timestamp"].as_f64().unwrap();
    assert!(seconds > 1.6e9, "timestamp {seconds} is not Unix seconds");
}

#[test]
fn alerts_fire_only_on_level_change_at_the_exact_boundaries() {
    let (monitor, source) = monitor();
    let seen = record_alerts(&monitor);
    type Alerts = &'static [(u32, AlertLevel, AlertLevel)];
    let steps: [(u64, AlertLevel, Alerts); 9] = [
        (799, Normal, &[]),
        (800, Warning, &[(0, Normal, Warning)]),
        (850, Warning, &[]),
        (899, Warning, &[]),
        (900, Critical, &[(0, Warning, Critical)]),
        (1000, Critical, &[]),
        (899, Warning, &[(0, Critical, Warning)]),
        (799, Normal, &[(0, Warning, Normal)]),
        (0, Normal, &[]),
    ];
    for (used, level, alerts) in steps {
        source.set(0, used, 1000);
        let snapshot = &monitor.check_now().unwrap()[0];
        assert_eq!(snapshot.level, level, "used {used} of 1000");
        assert_eq!(monitor.level(0), level);
        assert_eq!(taken(&seen), alerts, "used {used} of 1000");
    }
}

#[test]
fn levels_on_an_odd_total_are_exact() {
    // 80 % of 1001 is 800.8 and 90 % is 900.9: a float slip either way would move a level.
    let (monitor, source) = monitor();
    for (used, level) in [(800, Normal), (801, Warning), (900, Warning), (901, Critical)] {
        source.set(0, used, 1001);
        assert_eq!(monitor.check_now().unwrap()[0].level, level, "used {used} of 1001");
    }
    let t = AlertThresholds::default();
    let total = 85_017_493_504u64; // an H100's total
    let warning_start = (total * 4).div_ceil(5);
    assert_eq!(t.level_of(warning_start - 1, total), Normal);
    assert_eq!(t.level_of(warning_start, total), Warning);
    assert_eq!(t.level_of(0, 0), Critical, "an unknown capacity must not look safe");
}

#[test]
fn first_check_alerts_only_when_not_normal_and_devices_are_independent() {
    let (monitor, source) = monitor();
    let seen = record_alerts(&monitor);
    source.set(0, 100, 1000);
    source.set(1, 950, 1000);
    monitor.check_now().unwrap();
    assert_eq!(taken(&seen), vec![(1, Normal, Critical)]);
    source.set(0, 850, 1000);
    monitor.check_now().unwrap();
    assert_eq!(taken(&seen), vec![(0, Normal, Warning)]);
    assert_eq!((monitor.level(0), monitor.level(1)), (Warning, Critical));
}

#[test]
fn alert_carries_snapshot_and_recovery_flag() {
    let (monitor, source) = monitor();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&alerts);
    monitor.on_alert(move |alert| sink.lock().unwrap().push(alert.clone()));
    source.set(0, 900, 1000);
    monitor.check_now().unwrap();
    source.set(0, 10, 1000);
    monitor.check_now().unwrap();
    let alerts = alerts.lock().unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(!alerts[0].is_recovery() && alerts[0].snapshot.used_bytes == 900);
    assert!(alerts[1].is_recovery() && alerts[1].snapshot.used_bytes == 10 && alerts[1].level == Normal);
}

#[test]
fn panicking_callback_is_contained_and_counted() {
    let (monitor, source) = monitor();
    monitor.on_alert(|_| panic!("a faulty listener"));
    let seen = record_alerts(&monitor);
    source.set(0, 850, 1000);
    assert!(monitor.check_now().is_ok());
    source.set(0, 950, 1000);
    assert!(monitor.check_now().is_ok());
    assert_eq!(monitor.callback_panics(), 2);
    assert_eq!(taken(&seen), vec![(0, Normal, Warning), (0, Warning, Critical)], "the next listener still ran");
    assert_eq!(monitor.history(0).len(), 2);
    assert!(monitor.last_error().is_none());
}

/// Holds named models of given sizes on devices; unloads the oldest until enough is freed.
#[derive(Default)]
struct FakeUnloader {
    models: Mutex<Vec<(String, u64)>>,
    calls: Mutex<Vec<(u32, u64)>>,
}

impl Unloader for FakeUnloader {
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String> {
        self.calls.lock().unwrap().push((device, bytes));
        let mut models = self.models.lock().unwrap();
        let (mut freed, mut names) = (0, Vec::new());
        while freed < bytes && !models.is_empty() {
            let (name, size) = models.remove(0);
            freed += size;
            names.push(name);
        }
        names
    }
}

#[test]
fn unloader_asked_at_critical_for_the_bytes_to_just_below_critical() {
    let (monitor, source) = monitor();
    let unloader = Arc::new(FakeUnloader::default());
    *unloader.models.lock().unwrap() = vec![("a".into(), 30), ("b".into(), 30), ("c".into(), 30)];
    monitor.set_unloader(Arc::clone(&unloader) as Arc<dyn Unloader>);
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&alerts);
    monitor.on_alert(move |alert| sink.lock().unwrap().push(alert.unloaded.clone()));
    let events: Arc<Mutex<Vec<UnloadEvent>>> = Arc::default();
    let event_sink = Arc::clone(&events);
    monitor.on_unload(move |event| event_sink.lock().unwrap().push(event.clone()));

    source.set(0, 850, 1000);
    monitor.check_now().unwrap();
    assert!(unloader.calls.lock().unwrap().is_empty(), "not asked at Warning");

    source.set(0, 950, 1000); // below Critical means at most 899 bytes: 51 to free
    monitor.check_now().unwrap();
    assert_eq!(*unloader.calls.lock().unwrap(), vec![(0, 51)]);
    assert_eq!(*alerts.lock().unwrap(), vec![Vec::<String>::new(), vec!["a".to_string(), "b".to_string()]]);
    assert_eq!(monitor.unloaded(), vec!["a", "b"]);
    assert_eq!(monitor.models_unloaded(), 2);

    source.set(0, 900, 1000); // still Critical: asked again (1 byte), no new alert
    monitor.check_now().unwrap();
    assert_eq!(unloader.calls.lock().unwrap().last(), Some(&(0, 1)));
    assert_eq!(alerts.lock().unwrap().len(), 2);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!((events[1].requested_bytes, events[1].unloaded.clone()), (1, vec!["c".to_string()]));
    assert_eq!(monitor.unloads().len(), 2);
    assert_eq!(monitor.models_unloaded(), 3);
}

/// Holds named models of given sizes; says how much it could free, and unloads the oldest set
/// that frees enough — or nothing.
#[derive(Default)]
struct CountingUnloader {
    models: Mutex<Vec<(String, u64)>>,
    calls: Mutex<Vec<(u32, u64)>>,
    asked_reclaimable: Mutex<u32>,
}

impl Unloader for CountingUnloader {
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String> {
        self.calls.lock().unwrap().push((device, bytes));
        let mut models = self.models.lock().unwrap();
        if models.iter().map(|(_, size)| size).sum::<u64>() < bytes {
            return Vec::new();
        }
        let (mut freed, mut names) = (0, Vec::new());
        while freed < bytes {
            let (name, size) = models.remove(0);
            freed += size;
            names.push(name);
        }
        names
    }

    fn reclaimable_bytes(&self, _device: u32) -> Option<u64> {
        *self.asked_reclaimable.lock().unwrap() += 1;
        Some(self.models.lock().unwrap().iter().map(|(_, size)| size).sum())
    }
}

/// Defect: at Critical the monitor asked for the device-wide excess whatever its unloader could
/// do, and the slot manager then evicted every idle slot at every check. Now the monitor judges
/// by device use minus what eviction can free: when even unloading every candidate leaves the
/// device Critical (the rest is other processes' memory), nothing is unloaded, at any check.
#[test]
fn nothing_is_unloaded_when_even_every_candidate_would_leave_the_device_critical() {
    let (monitor, source) = monitor();
    let unloader = Arc::new(CountingUnloader::default());
    *unloader.models.lock().unwrap() = vec![("a".into(), 30), ("b".into(), 30)];
    monitor.set_unloader(Arc::clone(&unloader) as Arc<dyn Unloader>);
    let seen = record_alerts(&monitor);
    source.set(0, 990, 1000); // below Critical needs 91 freed; the unloader holds 60
    for _ in 0..5 {
        let snapshot = monitor.check_now().unwrap().remove(0);
        assert_eq!(snapshot.level, Critical);
    }
    assert!(unloader.calls.lock().unwrap().is_empty(), "asked to unload: {:?}", unloader.calls.lock().unwrap());
    assert_eq!(*unloader.asked_reclaimable.lock().unwrap(), 5);
    assert_eq!(unloader.models.lock().unwrap().len(), 2, "models were unloaded for nothing");
    assert!(monitor.unloads().is_empty() && monitor.unloaded().is_empty());
    assert_eq!(monitor.models_unloaded(), 0);
    assert_eq!(taken(&seen), vec![(0, Normal, Critical)], "the level is still the device's");

    // Other processes let go of 31 bytes: now 60 can bring it below (959 - 899 = 60): it unloads.
    source.set(0, 959, 1000);
    monitor.check_now().unwrap();
    assert_eq!(*unloader.calls.lock().unwrap(), vec![(0, 60)]);
    assert_eq!(monitor.unloaded(), vec!["a", "b"]);
    // Still Critical by one byte more than anything left can free: nothing more is asked.
    source.set(0, 900, 1000);
    monitor.check_now().unwrap();
    assert_eq!(unloader.calls.lock().unwrap().len(), 1);
    assert_eq!(monitor.unloads().len(), 1);
}

/// An unloader that cannot tell what it could free (`reclaimable_bytes` is `None` by default)
/// is asked as before, and a panic while asking is contained and counted.
#[test]
fn an_unloader_that_cannot_tell_is_asked_and_a_panic_asking_is_contained() {
    struct Unknown;
    impl Unloader for Unknown {
        fn unload_lru(&self, _: u32, _: u64) -> Vec<String> {
            vec!["x".into()]
        }
    }
    struct Panics;
    impl Unloader for Panics {
        fn unload_lru(&self, _: u32, _: u64) -> Vec<String> {
            unreachable!("asked to unload after reclaimable_bytes panicked")
        }
        fn reclaimable_bytes(&self, _: u32) -> Option<u64> {
            panic!("a faulty unloader")
        }
    }
    let (monitor, source) = monitor();
    monitor.set_unloader(Arc::new(Unknown));
    source.set(0, 950, 1000);
    monitor.check_now().unwrap();
    assert_eq!(monitor.unloaded(), ["x"]);
    monitor.set_unloader(Arc::new(Panics));
    assert!(monitor.check_now().is_ok());
    assert_eq!((monitor.callback_panics(), monitor.unloads().len()), (1, 1));
}

struct PanickingUnloader;

impl Unloader for PanickingUnloader {
    fn unload_lru(&self, _: u32, _: u64) -> Vec<String> {
        panic!("a faulty unloader")
    }
}

#[test]
fn panicking_unloader_is_contained() {
    let (monitor, source) = monitor();
    monitor.set_unloader(Arc::new(PanickingUnloader));
    let seen = record_alerts(&monitor);
    source.set(0, 990, 1000);
    assert!(monitor.check_now().is_ok());
    assert_eq!(monitor.callback_panics(), 1);
    assert_eq!(taken(&seen), vec![(0, Normal, Critical)]);
    assert!(monitor.unloaded().is_empty() && monitor.unloads().len() == 1);
}

#[test]
fn can_load_model_at_the_boundary() {
    let (monitor, source) = monitor();
    source.set(0, 800, 1000); // Critical from 900: 899 is the most that stays below
    assert!(monitor.can_load_model(0, 99).unwrap());
    assert!(!monitor.can_load_model(0, 100).unwrap());
    source.set(0, 0, 1001); // 90 % of 1001 is 900.9: 900 stays below
    assert!(monitor.can_load_model(0, 900).unwrap());
    assert!(!monitor.can_load_model(0, 901).unwrap());
    assert!(!monitor.can_load_model(0, u64::MAX).unwrap(), "no overflow");
    source.set(0, 950, 1000);
    assert!(!monitor.can_load_model(0, 0).unwrap(), "already Critical");
    let err = monitor.can_load_model(7, 1).unwrap_err();
    assert_eq!(err.code(), "VRAM-E010");
}

#[test]
fn failed_check_is_recorded_and_keeps_no_half_check() {
    let (monitor, source) = monitor();
    source.set(0, 100, 1000);
    source.fail(1, Error::Cuda("scripted failure".into()));
    let err = monitor.check_now().unwrap_err();
    assert_eq!(err.code(), "VRAM-E011");
    assert!(monitor.history(0).is_empty(), "device 0's reading of a failed check was kept");
    assert_eq!(monitor.last_error().map(|e| e.code()), Some("VRAM-E011"));
    assert_eq!((monitor.checks_run(), monitor.checks_failed()), (1, 1));
    source.set(1, 100, 1000);
    monitor.check_now().unwrap();
    assert_eq!(monitor.history(0).len(), 1);
    assert_eq!(monitor.checks_failed(), 1);
}

#[test]
fn invalid_config_rejected_with_e007() {
    let base = MonitorConfig::default;
    let bad = [
        MonitorConfig { interval: Duration::ZERO, ..base() },
        MonitorConfig { history_len: 0, ..base() },
        MonitorConfig { warning_percent: 0.0, ..base() },
        MonitorConfig { warning_percent: -5.0, ..base() },
        MonitorConfig { warning_percent: 90.0, critical_percent: 90.0, ..base() },
        MonitorConfig { warning_percent: 95.0, critical_percent: 90.0, ..base() },
        MonitorConfig { critical_percent: 100.5, ..base() },
        MonitorConfig { warning_percent: f64::NAN, ..base() },
        MonitorConfig { critical_percent: f64::NAN, ..base() },
    ];
    for config in bad {
        let err = GpuMonitor::with_source(config.clone(), Arc::new(Scripted::default())).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)) && err.code() == "VRAM-E007", "{config:?}: {err}");
        assert_eq!(GpuMonitor::new(config).unwrap_err().code(), "VRAM-E007");
    }
    let edge = MonitorConfig { warning_percent: 99.5, critical_percent: 100.0, ..base() };
    assert!(GpuMonitor::with_source(edge, Arc::new(Scripted::default())).is_ok());
    assert_eq!(AlertThresholds::new(80.0, 80.0).unwrap_err().code(), "VRAM-E007");
}

#[test]
fn background_thread_checks_and_sees_a_change() {
    let (monitor, source) =
        monitor_with(MonitorConfig { interval: Duration::from_millis(20), ..MonitorConfig::default() });
    source.set(0, 100, 1000);
    let (tx, rx) = mpsc::channel();
    monitor.on_alert(move |alert| {
        let _ = tx.send(alert.level);
    });
    let handle = monitor.start().unwrap();
    assert!(wait_until(|| monitor.checks_run() >= 2), "checks_run {}", monitor.checks_run());
    source.set(0, 920, 1000);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(Critical));
    assert!(handle.is_running());
    drop(handle);
    assert_eq!(Arc::strong_count(&monitor), 1, "the thread still runs after its handle was dropped");
}

#[test]
fn background_thread_stops_promptly_on_drop() {
    let (monitor, source) =
        monitor_with(MonitorConfig { interval: Duration::from_secs(10), ..MonitorConfig::default() });
    source.set(0, 100, 1000);
    let handle = monitor.start().unwrap();
    assert!(wait_until(|| monitor.checks_run() == 1), "the first check runs at once");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(handle); // waits for the thread, which is inside a 10 s wait
        let _ = tx.send(());
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(()), "drop did not return: the thread kept waiting");
    assert_eq!(monitor.checks_run(), 1);
    assert_eq!(Arc::strong_count(&monitor), 1, "the thread let go of the monitor");
}

#[test]
fn background_thread_records_failures_and_keeps_going() {
    let (monitor, source) =
        monitor_with(MonitorConfig { interval: Duration::from_millis(10), ..MonitorConfig::default() });
    source.fail(0, Error::Cuda("driver hiccup".into()));
    let handle = monitor.start().unwrap();
    assert!(wait_until(|| monitor.checks_failed() >= 2), "failed checks {}", monitor.checks_failed());
    assert_eq!(monitor.last_error().map(|e| e.code()), Some("VRAM-E011"));
    source.set(0, 100, 1000);
    assert!(wait_until(|| !monitor.history(0).is_empty()), "no check after the failures");
    assert!(handle.is_running());
}

struct PanickingSource;

impl MemorySource for PanickingSource {
    fn read(&self, _: u32) -> vramguard::Result<MemoryInfo> {
        panic!("a faulty source")
    }
    fn devices(&self) -> vramguard::Result<Vec<u32>> {
        Ok(vec![0])
    }
}

#[test]
fn panicking_source_is_an_error_not_a_dead_thread() {
    let monitor = Arc::new(GpuMonitor::with_source(MonitorConfig::default(), Arc::new(PanickingSource)).unwrap());
    let err = monitor.check_now().unwrap_err();
    assert_eq!(err.code(), "VRAM-E012");
    let handle = monitor.start().unwrap();
    assert!(wait_until(|| monitor.checks_failed() >= 2), "failed checks {}", monitor.checks_failed());
    assert!(handle.is_running());
}

fn tracker_with_allocations() -> Tracker {
    let tracker = Tracker::new(0).unwrap();
    tracker.record(0x7000_0000 as *const _, 1 << 20, Purpose::ModelWeights, AllocationKind::Device, "encoder").unwrap();
    tracker.record(0x7100_0000 as *const _, 4096, Purpose::KVCache, AllocationKind::Device, "kv").unwrap();
    tracker
}

#[test]
fn dump_lists_latest_history_and_tracker_allocations() {
    let (monitor, source) = monitor();
    source.set(0, 850, 1000);
    monitor.attach_tracker(tracker_with_allocations());
    monitor.check_now().unwrap();
    monitor.check_now().unwrap();
    let dump = monitor.dump_json();
    let device = &dump["devices"][0];
    assert_eq!(device["device"], 0);
    assert_eq!(device["latest"]["used_bytes"], 850);
    assert_eq!(device["latest"]["level"], "Warning");
    assert_eq!(device["history"].as_array().unwrap().len(), 2);
    let allocations = device["tracker"]["allocations"].as_array().unwrap();
    let described: Vec<(&str, &str, u64)> = allocations
        .iter()
        .map(|a| (a["description"].as_str().unwrap(), a["purpose"].as_str().unwrap(), a["bytes"].as_u64().unwrap()))
        .collect();
    assert_eq!(described, vec![("encoder", "ModelWeights", 1 << 20), ("kv", "KVCache", 4096)]);
    assert_eq!(allocations[0]["address"], "0x70000000");
    let usage = &device["tracker"]["usage"];
    assert_eq!(usage["total_bytes"], (1 << 20) + 4096);
    assert_eq!(usage["by_purpose"]["ModelWeights"]["bytes"], 1 << 20);
    assert_eq!(usage["by_purpose"]["KVCache"]["count"], 1);
    assert_eq!(usage["by_purpose"]["Unknown"]["bytes"], 0);
    assert_eq!(dump["checks_run"], 2);
    assert_eq!(dump["thresholds"]["critical_percent"], 90.0);
}

#[test]
fn dump_file_written_atomically_and_parses() {
    let dir = TempDir::new("dump");
    let (monitor, source) = monitor();
    source.set(0, 100, 1000);
    monitor.check_now().unwrap();
    let first = monitor.write_dump(&dir.0).unwrap();
    let second = monitor.write_dump(&dir.0).unwrap();
    assert_ne!(first, second, "a second dump replaced the first");
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    let pid = format!("-{}.json", std::process::id());
    assert!(name.starts_with("vramguard-dump-") && name.ends_with(&pid), "{name}");
    let millis: u128 = name["vramguard-dump-".len()..name.len() - pid.len()].parse().unwrap();
    assert!(millis > 1_600_000_000_000, "{name}");
    assert_eq!(read_json(&first)["devices"][0]["latest"]["used_bytes"], 100);
    assert_eq!(dir.files().len(), 2, "a temporary file was left: {:?}", dir.files());
    let missing = dir.0.join("no such directory");
    assert_eq!(monitor.write_dump(&missing).unwrap_err().code(), "VRAM-E017");
}

/// R5, defect: the temporary file had a predictable name (`.vramguard-dump-<ms>-<pid>-<n>.json.tmp`)
/// and was opened with `File::create`, which follows a symbolic link planted there (truncating
/// and writing its target) and writes into a file planted there (which its planter can read).
/// Every such name for a second is planted (wide enough that a loaded machine still writes the
/// dump inside it) — links to a file that must not change, then regular files — and the dump is
/// written inside that window: each time it must still land, owner-only, beside them.
#[test]
fn a_dump_never_writes_through_a_planted_link_or_into_a_planted_file() {
    use std::os::unix::fs::PermissionsExt;
    let victim_dir = TempDir::new("planted-victim");
    let victim = victim_dir.0.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let (monitor, source) = monitor();
    source.set(0, 100, 1000);
    monitor.check_now().unwrap();
    for links in [true, false] {
        let (dir, window) = plant_old_dump_names(&victim, links);
        let path = monitor.write_dump(&dir.0).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let millis: u128 = name["vramguard-dump-".len()..].split('-').next().unwrap().parse().unwrap();
        assert!(
            window.contains(&millis),
            "the dump at {millis} ms is outside the planted {window:?}: the test proved nothing"
        );
        assert!(std::fs::read(&victim).unwrap() == b"precious", "the dump wrote through a planted link");
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink(), "published onto a link: {path:?}");
        assert_eq!(read_json(&path)["devices"][0]["latest"]["used_bytes"], 100);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "dump mode {mode:o}");
        let mut planted_left = 0;
        for entry in std::fs::read_dir(&dir.0).unwrap() {
            let entry = entry.unwrap();
            if entry.path() == path {
                continue;
            }
            planted_left += 1;
            if !links {
                assert!(std::fs::read(entry.path()).unwrap() == b"someone else's", "{:?} was written", entry.path());
            }
        }
        let expected = (window.end - window.start) as usize * (OLD_SEQUENCES + 1);
        assert_eq!(planted_left, expected, "a planted name was taken over, or a temporary file left");
    }
}

/// Sequence numbers planted per millisecond: more dumps than this test binary writes before the
/// last one of this test (about seven).
const OLD_SEQUENCES: usize = 10;
const PLANTED_MILLIS: u128 = 1_000;

/// In a new directory, plants the old temporary names of sequence 0..10, and the final name, for
/// each millisecond of a window a little ahead — symbolic links to `victim`, or regular files —
/// and waits for the window to begin. A file system too slow to plant before the window begins
/// gets a later window (the planting is the slow part here, not what is tested).
fn plant_old_dump_names(victim: &Path, links: bool) -> (TempDir, std::ops::Range<u128>) {
    let pid = std::process::id();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    for (attempt, lead) in [1_000u128, 3_000, 9_000, 27_000].into_iter().enumerate() {
        let dir = TempDir::new(&format!("planted-{links}-{attempt}"));
        let start = now() + lead;
        let window = start..start + PLANTED_MILLIS;
        let plant = |name: String| {
            if links {
                std::os::unix::fs::symlink(victim, dir.0.join(name)).unwrap();
            } else {
                std::fs::write(dir.0.join(name), b"someone else's").unwrap();
            }
        };
        for millis in window.clone() {
            for n in 0..OLD_SEQUENCES {
                plant(format!(".vramguard-dump-{millis}-{pid}-{n}.json.tmp"));
            }
            plant(format!("vramguard-dump-{millis}-{pid}.json"));
        }
        let planted_at = now();
        if planted_at < window.start {
            std::thread::sleep(Duration::from_millis((window.start - planted_at) as u64));
            return (dir, window);
        }
    }
    panic!("could not plant {PLANTED_MILLIS} ms of names within 27 s");
}

#[test]
fn the_oom_dump_is_owner_only_too() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("oom-mode");
    let (monitor, _source) = monitor_with(MonitorConfig { dump_dir: Some(dir.0.clone()), ..MonitorConfig::default() });
    monitor.oom_hook()(&out_of_memory());
    let path = monitor.last_dump().expect("no dump written");
    // The JSON dump and, beside it, the memory_viz snapshot: both owner-only.
    assert_eq!(dir.files().len(), 2, "{:?}", dir.files());
    for name in dir.files() {
        assert_eq!(std::fs::metadata(dir.0.join(&name)).unwrap().permissions().mode() & 0o777, 0o600, "{name}");
    }
    assert!(path.extension().is_some_and(|e| e == "json"), "{path:?}");
}

fn out_of_memory() -> Error {
    let oom = OutOfMemory::device(0, 1 << 30, Some(1 << 20), Usage::default(), "cudaErrorMemoryAllocation".into());
    Error::OutOfMemory(Box::new(oom))
}

#[test]
fn oom_hook_writes_a_dump_with_the_error_json() {
    let dir = TempDir::new("oom");
    let (monitor, source) = monitor_with(MonitorConfig { dump_dir: Some(dir.0.clone()), ..MonitorConfig::default() });
    source.set(0, 990, 1000);
    monitor.attach_tracker(tracker_with_allocations());
    monitor.check_now().unwrap();
    let hook = monitor.oom_hook();
    hook(&Error::InvalidArgument("not an OOM".into()));
    assert_eq!(monitor.ooms_seen(), 0);
    assert!(dir.files().is_empty());
    hook(&out_of_memory());
    assert_eq!(monitor.ooms_seen(), 1);
    let path = monitor.last_dump().expect("no dump written");
    let json_name = path.file_name().unwrap().to_string_lossy().into_owned();
    let pickle_name = json_name.replace(".json", ".pickle");
    assert_eq!(dir.files(), vec![json_name, pickle_name], "the JSON dump and the memory_viz snapshot beside it");
    let dump = read_json(&path);
    assert_eq!(dump["trigger"], "out_of_memory");
    assert_eq!(dump["error"], out_of_memory().to_json());
    assert_eq!(dump["error"]["code"], "VRAM-E002");
    assert_eq!(dump["ooms_seen"], 1);
    assert_eq!(dump["devices"][0]["latest"]["level"], "Critical");
    assert_eq!(dump["devices"][0]["tracker"]["allocations"].as_array().unwrap().len(), 2);
}

#[test]
fn oom_hook_without_dump_dir_counts_and_outlives_the_monitor() {
    let (monitor, _source) = monitor();
    let hook = monitor.oom_hook();
    hook(&out_of_memory());
    hook(&out_of_memory());
    assert_eq!(monitor.ooms_seen(), 2);
    assert!(monitor.last_dump().is_none());
    assert_eq!(Arc::strong_count(&monitor), 1, "the hook holds the monitor strongly");
    drop(monitor);
    hook(&out_of_memory()); // the monitor is gone: nothing to do, no panic
}

#[test]
fn oom_hook_records_a_failed_dump() {
    let dir = TempDir::new("oom-missing");
    let missing = dir.0.join("gone");
    let (monitor, _source) = monitor_with(MonitorConfig { dump_dir: Some(missing), ..MonitorConfig::default() });
    monitor.oom_hook()(&out_of_memory());
    assert_eq!(monitor.ooms_seen(), 1);
    assert!(monitor.last_dump().is_none());
    assert_eq!(monitor.last_error().map(|e| e.code()), Some("VRAM-E017"));
}

proptest! {
    /// below_critical_bytes is the largest non-Critical figure, for any thresholds and total.
    #[test]
    fn below_critical_is_the_last_byte_before_critical(
        warning in 1u32..9_000, gap in 1u32..1_000, total in 1u64..=(1u64 << 48),
    ) {
        let warning = f64::from(warning) / 100.0;
        let critical = (warning + f64::from(gap) / 100.0).min(100.0);
        prop_assume!(warning < critical);
        let t = AlertThresholds::new(warning, critical).unwrap();
        let below = t.below_critical_bytes(total);
        prop_assert!(t.level_of(below, total) != Critical);
        prop_assert_eq!(t.level_of(below + 1, total), Critical);
        prop_assert!(below < total);
    }
}

/// O2: the allocation snapshot for PyTorch's memory visualiser, decoded here with serde-pickle
/// (tests/gpu/monitor.rs opens one with the visualiser's own reader on the GPU host).
#[test]
fn memory_viz_snapshot_lists_each_allocation_with_its_annotation() {
    let (monitor, _source) = monitor();
    let dir = TempDir::new("memory-viz");
    let tracker = Tracker::new(0).unwrap();
    tracker.record(0x10000 as *const _, 4096, Purpose::KVCache, AllocationKind::Device, "kv cache").unwrap();
    tracker.record(0x20000 as *const _, 1 << 20, Purpose::ModelWeights, AllocationKind::Pool, "E1 Semantic").unwrap();
    monitor.attach_tracker(tracker);
    let path = monitor.write_memory_viz(&dir.0).unwrap();
    assert!(path.file_name().unwrap().to_string_lossy().ends_with(".pickle"), "{path:?}");
    let bytes = std::fs::read(&path).unwrap();
    let value: serde_pickle::Value = serde_pickle::from_slice(&bytes, serde_pickle::DeOptions::new()).unwrap();
    let json = format!("{value}"); // the Python-like repr, for messages
    let serde_pickle::Value::Dict(top) = value else { panic!("not a dict: {json}") };
    let key = |k: &str| serde_pickle::HashableValue::String(k.to_string());
    let serde_pickle::Value::List(segments) = &top[&key("segments")] else { panic!("{json}") };
    assert_eq!(segments.len(), 2, "{json}");
    let repr = format!("{}", serde_pickle::Value::List(segments.clone()));
    for expected in [
        r#""name": "kv cache""#,
        r#""filename": "KVCache Device""#,
        r#""name": "E1 Semantic""#,
        r#""filename": "ModelWeights Pool""#,
        r#""state": "active_allocated""#,
        r#""address": 65536"#,
        r#""total_size": 1048576"#,
    ] {
        assert!(repr.contains(expected), "{expected} missing from {repr}");
    }
    let serde_pickle::Value::List(traces) = &top[&key("device_traces")] else { panic!("{json}") };
    let serde_pickle::Value::List(device0) = &traces[0] else { panic!("{json}") };
    assert_eq!(device0.len(), 2, "one alloc event per live allocation");
}
