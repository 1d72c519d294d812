//! O1, O2 on a real GPU: the monitor reads the driver (`cudaMemGetInfo`) while the test allocates
//! real device memory through vramguard, with thresholds placed relative to what the device
//! already uses so that the trials work on any GPU with more than 20 GiB free.
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use vramguard::monitor::{AlertLevel, GpuMonitor, MonitorConfig, Unloader};
use vramguard::{AllocationKind, Device, DeviceBuffer, Error, Purpose, Tracker};

use crate::ensure;
use crate::gpu_gate::{gpu, without_gpu};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("monitor::alerts_follow_real_allocations", alerts_follow_real_allocations),
        gpu("monitor::background_thread_sees_real_allocation", background_thread_sees_real_allocation),
        gpu("monitor::unloader_frees_real_memory_at_critical", unloader_frees_real_memory_at_critical),
        gpu("monitor::can_load_model_agrees_with_free_memory", can_load_model_agrees_with_free_memory),
        gpu("monitor::dump_lists_real_tracker_allocations", dump_lists_real_tracker_allocations),
        gpu(
            "monitor::memory_viz_snapshot_opens_in_pytorchs_visualiser",
            memory_viz_snapshot_opens_in_pytorchs_visualiser,
        ),
        without_gpu("no_device::monitor_check_is_no_device", no_gpu_check_is_no_device),
        without_gpu("no_device::monitor_background_records_no_device", no_gpu_background_records_no_device),
    ]
}

/// Device 0's used and total bytes now.
fn used_and_total() -> Result<(u64, u64), Failed> {
    let memory = Device::new(0)?.memory_info()?;
    Ok((memory.total_bytes - memory.free_bytes, memory.total_bytes))
}

/// Fails (rather than passing vacuously) on a device without room for the trial.
fn need_free(bytes: u64) -> Result<(u64, u64), Failed> {
    let (used, total) = used_and_total()?;
    ensure!(
        total - used > bytes,
        "this trial needs more than {} GiB free on GPU0; it has {} bytes",
        bytes / GIB,
        total - used
    );
    Ok((used, total))
}

fn percent(bytes: u64, total: u64) -> f64 {
    bytes as f64 * 100.0 / total as f64
}

/// A real-source monitor whose Warning and Critical start at used0 + `warning_at` and used0 +
/// `critical_at` bytes.
fn monitor(
    used0: u64,
    total: u64,
    warning_at: u64,
    critical_at: u64,
    interval: Duration,
) -> Result<Arc<GpuMonitor>, Failed> {
    let config = MonitorConfig {
        interval,
        warning_percent: percent(used0 + warning_at, total),
        critical_percent: percent(used0 + critical_at, total),
        ..MonitorConfig::default()
    };
    Ok(Arc::new(GpuMonitor::new(config)?))
}

type Levels = Arc<Mutex<Vec<(AlertLevel, AlertLevel)>>>;

/// Records (previous, level) of device 0's alerts.
fn record_levels(monitor: &GpuMonitor) -> Levels {
    let levels: Levels = Arc::default();
    let sink = Arc::clone(&levels);
    monitor.on_alert(move |alert| {
        if alert.device == 0 {
            sink.lock().unwrap().push((alert.previous, alert.level));
        }
    });
    levels
}

fn taken(levels: &Levels) -> Vec<(AlertLevel, AlertLevel)> {
    std::mem::take(&mut *levels.lock().unwrap())
}

fn allocate_gibs(tracker: &Tracker, count: u64, name: &str) -> Result<Vec<DeviceBuffer>, Failed> {
    let mut buffers = Vec::new();
    for i in 0..count {
        buffers.push(tracker.allocate(GIB, Purpose::ModelWeights, &format!("{name} {i}"))?);
    }
    Ok(buffers)
}

/// Polls for up to 5 s: a generous bound on a wait, not a timing assertion.
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

fn alerts_follow_real_allocations() -> Result<(), Failed> {
    let (used0, total) = need_free(20 * GIB)?;
    let monitor = monitor(used0, total, 8 * GIB, 16 * GIB, Duration::from_secs(5))?;
    let tracker = Device::new(0)?.tracker()?;
    monitor.attach_tracker(tracker.clone());
    let levels = record_levels(&monitor);

    monitor.check_now()?;
    ensure!(monitor.level(0) == AlertLevel::Normal, "{:?}", monitor.latest(0));
    ensure!(taken(&levels).is_empty(), "alert without a change");

    let mut buffers = allocate_gibs(&tracker, 10, "weights")?;
    let snapshot = monitor.check_now()?.into_iter().find(|s| s.device == 0).ok_or("no reading of GPU0")?;
    ensure!(snapshot.used_bytes >= used0 + 10 * GIB, "driver shows {} used, {used0} before", snapshot.used_bytes);
    ensure!(snapshot.tracked_bytes == 10 * GIB, "tracked {}", snapshot.tracked_bytes);
    ensure!(taken(&levels) == [(AlertLevel::Normal, AlertLevel::Warning)], "{snapshot:?}");
    monitor.check_now()?;
    ensure!(taken(&levels).is_empty(), "a second check at Warning alerted again");

    buffers.extend(allocate_gibs(&tracker, 8, "more weights")?);
    monitor.check_now()?;
    ensure!(taken(&levels) == [(AlertLevel::Warning, AlertLevel::Critical)], "{:?}", monitor.latest(0));

    drop(buffers);
    monitor.check_now()?;
    ensure!(taken(&levels) == [(AlertLevel::Critical, AlertLevel::Normal)], "{:?}", monitor.latest(0));
    ensure!(monitor.latest(0).is_some_and(|s| s.tracked_bytes == 0), "{:?}", monitor.latest(0));
    ensure!(monitor.history(0).len() == 5 && monitor.callback_panics() == 0, "{monitor:?}");
    Ok(())
}

fn background_thread_sees_real_allocation() -> Result<(), Failed> {
    let (used0, total) = need_free(4 * GIB)?;
    let monitor = monitor(used0, total, GIB, 3 * GIB, Duration::from_millis(50))?;
    let (tx, rx) = mpsc::channel();
    monitor.on_alert(move |alert| {
        if alert.device == 0 {
            let _ = tx.send(alert.level);
        }
    });
    let tracker = Device::new(0)?.tracker()?;
    let handle = monitor.start()?;
    ensure!(wait_until(|| monitor.checks_run() >= 2), "checks_run {}", monitor.checks_run());
    let buffers = allocate_gibs(&tracker, 2, "weights")?;
    let seen = rx.recv_timeout(Duration::from_secs(5));
    ensure!(seen == Ok(AlertLevel::Warning), "background thread saw {seen:?}; last error {:?}", monitor.last_error());
    ensure!(handle.is_running(), "thread ended");
    drop(handle);
    ensure!(Arc::strong_count(&monitor) == 1, "the thread did not end when its handle was dropped");
    ensure!(monitor.last_error().is_none(), "{:?}", monitor.last_error());
    drop(buffers);
    Ok(())
}

/// Holds real buffers as "models"; unloading drops the oldest until enough is freed.
#[derive(Default)]
struct BufferUnloader {
    models: Mutex<Vec<(String, DeviceBuffer)>>,
    requests: Mutex<Vec<(u32, u64)>>,
}

impl Unloader for BufferUnloader {
    fn unload_lru(&self, device: u32, bytes: u64) -> Vec<String> {
        self.requests.lock().unwrap().push((device, bytes));
        let mut models = self.models.lock().unwrap();
        let (mut freed, mut names) = (0, Vec::new());
        while freed < bytes && !models.is_empty() {
            let (name, buffer) = models.remove(0);
            freed += buffer.len();
            names.push(name); // the buffer drops here: cudaFree
        }
        names
    }
}

fn unloader_frees_real_memory_at_critical() -> Result<(), Failed> {
    let (used0, total) = need_free(8 * GIB)?;
    let monitor = monitor(used0, total, 2 * GIB, 4 * GIB, Duration::from_secs(5))?;
    let tracker = Device::new(0)?.tracker()?;
    let unloader = Arc::new(BufferUnloader::default());
    for (i, buffer) in allocate_gibs(&tracker, 5, "model")?.into_iter().enumerate() {
        unloader.models.lock().unwrap().push((format!("model-{i}"), buffer));
    }
    monitor.set_unloader(Arc::clone(&unloader) as Arc<dyn Unloader>);
    let levels = record_levels(&monitor);

    let snapshot = monitor.check_now()?.into_iter().find(|s| s.device == 0).ok_or("no reading of GPU0")?;
    ensure!(snapshot.level == AlertLevel::Critical, "{snapshot:?}");
    let expected = snapshot.used_bytes - monitor.thresholds().below_critical_bytes(snapshot.total_bytes);
    let requests = unloader.requests.lock().unwrap().clone();
    ensure!(requests == [(0, expected)], "requests {requests:?}, expected (0, {expected})");
    let unloaded = monitor.unloaded();
    let freed = unloaded.len() as u64 * GIB;
    ensure!(freed >= expected && freed < expected + GIB, "unloaded {unloaded:?} for {expected} bytes");
    ensure!(unloaded.iter().enumerate().all(|(i, name)| *name == format!("model-{i}")), "not LRU: {unloaded:?}");
    ensure!(tracker.total_bytes() == (5 - unloaded.len() as u64) * GIB, "tracker holds {}", tracker.total_bytes());

    let after = monitor.check_now()?.into_iter().find(|s| s.device == 0).ok_or("no reading of GPU0")?;
    let (before, now) = (snapshot.used_bytes, after.used_bytes);
    ensure!(now + freed <= before, "driver: {before} used before unloading, {now} after");
    ensure!(after.level < AlertLevel::Critical, "{after:?}");
    let seen = taken(&levels);
    ensure!(seen.first() == Some(&(AlertLevel::Normal, AlertLevel::Critical)) && seen.len() == 2, "{seen:?}");
    ensure!(unloader.requests.lock().unwrap().len() == 1, "asked again below Critical");
    unloader.models.lock().unwrap().clear();
    Ok(())
}

fn can_load_model_agrees_with_free_memory() -> Result<(), Failed> {
    let (used0, total) = need_free(6 * GIB)?;
    let monitor = monitor(used0, total, 2 * GIB, 4 * GIB, Duration::from_secs(5))?;
    ensure!(monitor.can_load_model(0, 3 * GIB)?, "3 GiB of 4 refused");
    ensure!(!monitor.can_load_model(0, 5 * GIB)?, "5 GiB over a 4 GiB room accepted");
    let tracker = Device::new(0)?.tracker()?;
    let held = allocate_gibs(&tracker, 3, "weights")?;
    ensure!(monitor.can_load_model(0, 512 * MIB)?, "512 MiB refused with about 1 GiB left");
    ensure!(!monitor.can_load_model(0, GIB + 64 * MIB)?, "the monitor did not see the 3 GiB allocated");
    drop(held);

    // With Critical at 100 %, the room is exactly the driver's free memory less one byte.
    let full =
        GpuMonitor::new(MonitorConfig { warning_percent: 99.0, critical_percent: 100.0, ..MonitorConfig::default() })?;
    let free = Device::new(0)?.memory_info()?.free_bytes;
    ensure!(full.can_load_model(0, free - 1)?, "free - 1 = {} refused", free - 1);
    ensure!(!full.can_load_model(0, free)?, "all {free} free bytes accepted");
    Ok(())
}

/// Runs `trial` in a fresh temporary directory, removed afterwards whatever the outcome.
fn in_temp_dir(label: &str, trial: impl FnOnce(&std::path::Path) -> Result<(), Failed>) -> Result<(), Failed> {
    let dir = crate::model_files::temp_dir(label);
    let result = trial(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn dump_lists_real_tracker_allocations() -> Result<(), Failed> {
    in_temp_dir("gpu-monitor-dump", dump_in)
}

fn dump_in(dir: &std::path::Path) -> Result<(), Failed> {
    let config = MonitorConfig { dump_dir: Some(dir.to_path_buf()), ..MonitorConfig::default() };
    let monitor = Arc::new(GpuMonitor::new(config)?);
    let tracker = Device::new(0)?.tracker()?;
    monitor.attach_tracker(tracker.clone());
    let weights = tracker.allocate(64 * MIB, Purpose::ModelWeights, "encoder weights")?;
    let kv = tracker.allocate(32 * MIB, Purpose::KVCache, "kv cache")?;
    monitor.check_now()?;

    let dump = monitor.dump_json();
    let device =
        dump["devices"].as_array().and_then(|d| d.iter().find(|d| d["device"] == 0)).ok_or("no GPU0 in dump")?;
    ensure!(device["latest"]["tracked_bytes"] == 96 * MIB, "{}", device["latest"]);
    let allocations = device["tracker"]["allocations"].as_array().ok_or("no allocations")?;
    let listed: Vec<(String, u64, String)> = allocations
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap_or("").to_string(),
                a["bytes"].as_u64().unwrap_or(0),
                a["purpose"].to_string(),
            )
        })
        .collect();
    let expected = vec![
        (format!("{:#x}", weights.as_ptr() as usize), 64 * MIB, "\"ModelWeights\"".to_string()),
        (format!("{:#x}", kv.as_ptr() as usize), 32 * MIB, "\"KVCache\"".to_string()),
    ];
    ensure!(listed == expected, "{listed:?} != {expected:?}");
    ensure!(device["tracker"]["usage"]["by_purpose"]["KVCache"]["bytes"] == 32 * MIB, "{}", device["tracker"]);

    let err = tracker.allocate(1 << 40, Purpose::KVCache, "1 TiB").unwrap_err();
    ensure!(matches!(err, Error::OutOfMemory(_)), "{err}");
    monitor.oom_hook()(&err);
    ensure!(monitor.ooms_seen() == 1, "ooms {}", monitor.ooms_seen());
    let path = monitor.last_dump().ok_or_else(|| format!("no dump; last error {:?}", monitor.last_error()))?;
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    ensure!(written["error"]["code"] == "VRAM-E002", "{}", written["error"]);
    ensure!(written["error"]["details"]["requested_bytes"] == 1u64 << 40, "{}", written["error"]);
    let count = written["devices"][0]["tracker"]["allocations"].as_array().map_or(0, Vec::len);
    ensure!(count == 2, "{count} allocations in the dump");
    drop((weights, kv));
    Ok(())
}

fn no_gpu_check_is_no_device() -> Result<(), Failed> {
    let monitor = GpuMonitor::new(MonitorConfig::default())?;
    let err = monitor.check_now().unwrap_err();
    ensure!(matches!(err, Error::NoDevice(_)) && err.code() == "VRAM-E001", "{err}");
    ensure!(monitor.last_error().is_some_and(|e| e.code() == "VRAM-E001"), "{:?}", monitor.last_error());
    ensure!(monitor.devices().is_empty() && monitor.history(0).is_empty(), "a fake device was recorded");
    let err = monitor.can_load_model(0, 1).unwrap_err();
    ensure!(err.code() == "VRAM-E001", "{err}");
    Ok(())
}

fn no_gpu_background_records_no_device() -> Result<(), Failed> {
    let config = MonitorConfig { interval: Duration::from_millis(20), ..MonitorConfig::default() };
    let monitor = Arc::new(GpuMonitor::new(config)?);
    let handle = monitor.start()?;
    ensure!(wait_until(|| monitor.checks_failed() >= 2), "failed checks {}", monitor.checks_failed());
    ensure!(monitor.last_error().is_some_and(|e| e.code() == "VRAM-E001"), "{:?}", monitor.last_error());
    ensure!(handle.is_running(), "the thread died on a failed check");
    drop(handle);
    ensure!(Arc::strong_count(&monitor) == 1, "the thread did not end");
    ensure!(monitor.checks_run() == monitor.checks_failed(), "a check succeeded without a GPU");
    Ok(())
}

/// O2: the allocation snapshot opened by PyTorch's own memory visualiser (`torch.cuda._memory_viz`,
/// python3 with torch on the GPU host): `stats` accounts every byte, `trace` lists the allocations,
/// `trace_plot` renders the timeline, and each block's annotation names its description.
fn memory_viz_snapshot_opens_in_pytorchs_visualiser() -> Result<(), Failed> {
    in_temp_dir("gpu-memory-viz", memory_viz_in)
}

fn memory_viz_in(dir: &std::path::Path) -> Result<(), Failed> {
    let monitor = Arc::new(GpuMonitor::new(MonitorConfig::default())?);
    let tracker = Device::new(0)?.tracker()?;
    monitor.attach_tracker(tracker.clone());
    let _weights = tracker.allocate(64 * MIB, Purpose::ModelWeights, "encoder weights")?;
    let _kv = tracker.allocate_kind(32 * MIB, Purpose::KVCache, AllocationKind::Pool, "kv cache")?;
    let path = monitor.write_memory_viz(dir)?;
    let viz = |args: &[&str]| -> Result<String, Failed> {
        let output =
            std::process::Command::new("python3").args(["-m", "torch.cuda._memory_viz"]).args(args).output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        ensure!(output.status.success(), "{args:?}: {}{text}", String::from_utf8_lossy(&output.stderr));
        Ok(text)
    };
    let file = path.to_string_lossy().into_owned();
    let stats = viz(&["stats", &file])?;
    ensure!(stats.contains("segments: 2") && stats.contains("total_reserved: 96.0MiB"), "{stats}");
    ensure!(stats.contains("total_allocated: 96.0MiB"), "{stats}");
    let trace = viz(&["trace", &file])?;
    ensure!(trace.contains("2 entries"), "{trace}");
    let html = dir.join("timeline.html");
    viz(&["trace_plot", &file, "-o", &html.to_string_lossy()])?;
    ensure!(std::fs::metadata(&html)?.len() > 1000, "no timeline written");
    // The annotations, as the visualiser's own code formats a block's frames.
    let script = "import pickle, sys; from torch.cuda._memory_viz import _frames_fmt\n\
                  d = pickle.load(open(sys.argv[1], 'rb'))\n\
                  print([_frames_fmt(b['frames']) for s in d['segments'] for b in s['blocks']])";
    let output = std::process::Command::new("python3").args(["-c", script, &file]).output()?;
    let frames = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    ensure!(frames.contains("ModelWeights Device:") && frames.contains(":encoder weights"), "{frames}");
    ensure!(frames.contains("KVCache Pool:") && frames.contains(":kv cache"), "{frames}");
    Ok(())
}
