//! Issue 19: two GPUs at once. Trackers of GPU 0 and GPU 1 used from the same threads, each
//! matching its own driver's free-memory drop; a GPU 1 buffer adopted by GPU 0's tracker is a
//! wrong-device violation; `vramguard serve --device 1` leaves GPU 0 untouched (no context: not in
//! NVML's process list of GPU 0, GPU 0's free memory unmoved); `vramguard check` and the monitor
//! cover every GPU; two `serve` processes, one per GPU, each answer for their own GPU only.
//! Every trial needs two visible GPUs (`gpu_gate::two_gpus`); the GPU runner runs them once with
//! every GPU visible, after the per-GPU passes.
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use vramguard::monitor::{GpuMonitor, MonitorConfig};
use vramguard::nvml::{find_process, Nvml, ProcessVram};
use vramguard::{Device, DeviceBuffer, MemoryType, Purpose, ViolationReason};

use crate::ensure;
use crate::gpu_gate::{gpu, two_gpus, vramguard_binary};
use crate::http_client;

const MIB: u64 = 1 << 20;
/// The driver hands out device memory in 2 MiB pages; every size below is a multiple of it, so a
/// device's free memory drops by exactly what is allocated, give or take one page of the driver's
/// own bookkeeping.
const DRIVER_PAGE: u64 = 2 * MIB;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("accounting::one_gpu_tracker_matches_the_driver_drop", one_gpu_tracker_matches_the_driver_drop),
        two_gpus("multi_gpu::trackers_of_two_gpus_from_the_same_threads", trackers_of_two_gpus_from_the_same_threads),
        two_gpus("multi_gpu::a_gpu1_buffer_adopted_by_gpu0_is_on_the_wrong_device", gpu1_buffer_adopted_by_gpu0),
        two_gpus("multi_gpu::serve_on_gpu1_makes_no_context_on_gpu0", serve_on_gpu1_makes_no_context_on_gpu0),
        two_gpus("multi_gpu::check_lists_every_gpu", check_lists_every_gpu),
        two_gpus("multi_gpu::monitor_snapshots_cover_every_gpu", monitor_snapshots_cover_every_gpu),
        two_gpus("multi_gpu::one_serve_per_gpu_answers_for_its_own_gpu", one_serve_per_gpu_answers_for_its_own_gpu),
    ]
}

fn free_bytes(device: u32) -> Result<u64, Failed> {
    Ok(Device::new(device)?.memory_info()?.free_bytes)
}

fn trackers_of_two_gpus_from_the_same_threads() -> Result<(), Failed> {
    threads_on_devices_match_driver_drops(&[0, 1])
}

/// The same accounting on one GPU, run on every GPU host (it is the premise the two-GPU trial
/// rests on: a tracker's total equals its driver's drop, within a page).
fn one_gpu_tracker_matches_the_driver_drop() -> Result<(), Failed> {
    threads_on_devices_match_driver_drops(&[0])
}

/// 8 threads each allocate on every device of `devices` in turn, through each device's tracker;
/// then each tracker's total equals what was allocated on it and its driver's free-memory drop,
/// each buffer is found on its tracker's device, and the frees give everything back.
fn threads_on_devices_match_driver_drops(devices: &[u32]) -> Result<(), Failed> {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 6;
    let trackers = devices.iter().map(|&d| Device::new(d)?.tracker()).collect::<vramguard::Result<Vec<_>>>()?;
    let free_before = devices.iter().map(|&d| free_bytes(d)).collect::<Result<Vec<_>, _>>()?;
    // Later devices get larger buffers, so that bytes counted on the wrong GPU would show in both
    // totals.
    let size = |device: u64, i: u64| (1 + device + i % 3) * DRIVER_PAGE;
    let held: Vec<Vec<DeviceBuffer>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let trackers = &trackers;
                scope.spawn(move || -> vramguard::Result<Vec<DeviceBuffer>> {
                    let mut mine = Vec::new();
                    for i in 0..PER_THREAD {
                        for tracker in trackers {
                            let device = tracker.device();
                            let description = format!("thread {t} buffer {i} GPU{device}");
                            mine.push(tracker.allocate(size(u64::from(device), i), Purpose::KVCache, &description)?);
                        }
                    }
                    Ok(mine)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("an allocating thread panicked")).collect::<vramguard::Result<_>>()
    })?;
    for (index, tracker) in trackers.iter().enumerate() {
        let device = tracker.device();
        let expected = THREADS * (0..PER_THREAD).map(|i| size(u64::from(device), i)).sum::<u64>();
        let drop = free_before[index].saturating_sub(free_bytes(device)?);
        println!(
            "[ vramguard ] GPU{device} of {devices:?}: tracker total {} bytes in {} allocations from {THREADS} threads, \
             driver free memory fell {drop} bytes",
            tracker.total_bytes(),
            tracker.allocation_count()
        );
        ensure!(
            tracker.total_bytes() == expected,
            "GPU{device}: {} tracked, {expected} allocated",
            tracker.total_bytes()
        );
        ensure!(
            drop.abs_diff(expected) <= DRIVER_PAGE,
            "GPU{device}: the driver's free memory fell {drop} bytes for {expected} tracked"
        );
        // Every buffer is on the GPU whose tracker holds it (a wrong device is a violation).
        let report = tracker.verify_all()?;
        ensure!(report.resident && report.checked == THREADS * PER_THREAD, "GPU{device}: {report:?}");
    }
    drop(held);
    for (index, tracker) in trackers.iter().enumerate() {
        let device = tracker.device();
        ensure!(tracker.total_bytes() == 0, "GPU{device}: bytes left after the frees");
        let free_after = free_bytes(device)?;
        ensure!(
            free_after.abs_diff(free_before[index]) <= DRIVER_PAGE,
            "GPU{device}: free memory {} before, {free_after} after the frees",
            free_before[index]
        );
    }
    Ok(())
}

fn gpu1_buffer_adopted_by_gpu0() -> Result<(), Failed> {
    let gpu1 = Device::new(1)?.tracker()?;
    let gpu0 = Device::new(0)?.tracker()?;
    let weights = gpu1.allocate(4 * MIB, Purpose::ModelWeights, "GPU1 weights")?;
    gpu0.adopt(weights.as_ptr(), weights.len(), Purpose::ModelWeights, "adopted from GPU1")?;
    let on_gpu0 = gpu0.verify_all();
    gpu0.forget(weights.as_ptr())?;
    let on_gpu0 = on_gpu0?;
    ensure!(!on_gpu0.resident && on_gpu0.violations.len() == 1, "{on_gpu0:?}");
    let violation = &on_gpu0.violations[0];
    ensure!(
        violation.reason == ViolationReason::WrongDevice
            && violation.memory_type == MemoryType::Device
            && violation.observed_device == 1
            && violation.description == "adopted from GPU1",
        "{violation:?}"
    );
    let on_gpu1 = gpu1.verify_all()?;
    ensure!(on_gpu1.resident && on_gpu1.checked == 1, "GPU1's own tracker: {on_gpu1:?}");
    println!(
        "[ vramguard ] a GPU1 buffer adopted by GPU0's tracker: {} (observed on GPU{})",
        violation.reason, violation.observed_device
    );
    Ok(())
}

/// A `vramguard serve` child on one GPU, on a free port, with its stderr kept. Dropped without
/// `stop` (a trial that failed half-way), it is killed: no server outlives its trial.
struct Served {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Served {
    fn start(device: u32) -> Result<Served, Failed> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(vramguard_binary())
            .args(["serve", "--device", &device.to_string(), "--port", &port.to_string(), "--interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(Served { child: Some(child), addr: format!("127.0.0.1:{port}").parse()? })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits (at most 60 s: the preset loads 13 slots) for `/health` to answer 200 and returns it.
    fn healthy(&self) -> Result<serde_json::Value, Failed> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if std::net::TcpStream::connect(self.addr).is_ok() {
                let response = http_client::get(self.addr, "/health");
                if response.status == 200 {
                    return Ok(response.json());
                }
            }
        }
        Err(format!("the server on {} never answered /health with 200", self.addr).into())
    }

    /// SIGTERM; the exit status must be 0.
    fn stop(mut self) -> Result<(), Failed> {
        let Some(child) = self.child.take() else { return Ok(()) };
        // SAFETY: signalling our own child process, not yet waited for.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let output = child.wait_with_output()?;
        let logs = String::from_utf8_lossy(&output.stderr);
        ensure!(output.status.success(), "serve exited {:?}:\n{logs}", output.status);
        Ok(())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn bus_id(device: u32) -> Result<String, Failed> {
    Ok(Device::new(device)?.info()?.pci_bus_id)
}

/// Whether NVML lists `pid` on the GPU at `bus` (never, where our PID namespace hides the host's
/// PIDs from NVML's lists: the callers say so).
fn listed(nvml: &Nvml, bus: &str, pid: u32) -> Result<bool, Failed> {
    let list = nvml.processes(bus)?;
    Ok(matches!(find_process(&list, pid), ProcessVram::Known(_)))
}

fn serve_on_gpu1_makes_no_context_on_gpu0() -> Result<(), Failed> {
    let nvml = Nvml::load()?;
    let (bus0, bus1) = (bus_id(0)?, bus_id(1)?);
    let gpu0_before = free_bytes(0)?;
    let served = Served::start(1)?;
    let pid = served.pid();
    let health = served.healthy()?;
    let gpu0_serving = free_bytes(0)?;
    let (on_gpu0, on_gpu1) = (listed(&nvml, &bus0, pid)?, listed(&nvml, &bus1, pid)?);
    served.stop()?;
    let gpu0_after = free_bytes(0)?;
    println!(
        "[ vramguard ] serve --device 1: GPU0 free {gpu0_before} bytes before, {gpu0_serving} while serving, \
         {gpu0_after} after; NVML lists pid {pid} on GPU0: {on_gpu0}, on GPU1: {on_gpu1}"
    );
    ensure!(health["device"]["ordinal"] == 1 && health["device"]["pci_bus_id"] == bus1.as_str(), "{health}");
    ensure!(!on_gpu0, "NVML lists the GPU1 server (pid {pid}) on GPU0: it made a context there");
    // Where NVML cannot see the child on the GPU it does use, its lists prove nothing here and
    // GPU 0's free memory is the evidence (a context costs hundreds of MiB).
    if !on_gpu1 {
        println!("[ vramguard ] NVML does not list pid {pid} on GPU1 either (a PID namespace?): free memory decides");
    }
    ensure!(
        gpu0_before.abs_diff(gpu0_serving) <= DRIVER_PAGE && gpu0_before.abs_diff(gpu0_after) <= DRIVER_PAGE,
        "GPU0's free memory moved while a server used GPU1: {gpu0_before} -> {gpu0_serving} -> {gpu0_after}"
    );
    Ok(())
}

fn check_lists_every_gpu() -> Result<(), Failed> {
    let output = Command::new(vramguard_binary()).arg("check").output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "vramguard check exited {:?}:\n{text}", output.status);
    let count = vramguard::device_count()?;
    for device in 0..count {
        let name = Device::new(device)?.info()?.name;
        ensure!(text.contains(&format!("GPU{device}: {name}")), "GPU{device} missing from:\n{text}");
    }
    ensure!(text.matches("residency self-test").count() == count as usize, "one self-test per GPU:\n{text}");
    ensure!(text.contains("self-test: passed"), "{text}");
    println!("[ vramguard ] vramguard check listed {count} GPUs");
    Ok(())
}

fn monitor_snapshots_cover_every_gpu() -> Result<(), Failed> {
    let monitor = GpuMonitor::new(MonitorConfig::default())?;
    let trackers = [Device::new(0)?.tracker()?, Device::new(1)?.tracker()?];
    for tracker in &trackers {
        monitor.attach_tracker(tracker.clone());
    }
    let _kv = trackers[1].allocate(64 * MIB, Purpose::KVCache, "GPU1 only")?;
    let snapshots = monitor.check_now()?;
    let count = vramguard::device_count()?;
    let devices: Vec<u32> = snapshots.iter().map(|s| s.device).collect();
    ensure!(devices == (0..count).collect::<Vec<_>>(), "snapshots of {devices:?}");
    for snapshot in &snapshots {
        let device = Device::new(snapshot.device)?;
        let memory = device.memory_info()?;
        let tracked = trackers.get(snapshot.device as usize).map_or(0, |t| t.total_bytes());
        ensure!(snapshot.tracked_bytes == tracked, "GPU{}: {snapshot:?}, tracker {tracked}", snapshot.device);
        ensure!(snapshot.total_bytes == memory.total_bytes, "GPU{}: {snapshot:?}", snapshot.device);
        ensure!(snapshot.free_bytes.abs_diff(memory.free_bytes) <= DRIVER_PAGE, "GPU{}: {snapshot:?}", snapshot.device);
        ensure!(monitor.history(snapshot.device).len() == 1, "GPU{}: no history", snapshot.device);
    }
    ensure!(snapshots[1].tracked_bytes == 64 * MIB && snapshots[0].tracked_bytes == 0, "{snapshots:?}");
    println!(
        "[ vramguard ] monitor: {} snapshots, tracked {:?}",
        snapshots.len(),
        snapshots.iter().map(|s| s.tracked_bytes).collect::<Vec<_>>()
    );
    Ok(())
}

/// The figure of an unlabelled series, or of one whose labels are given whole.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn one_serve_per_gpu_answers_for_its_own_gpu() -> Result<(), Failed> {
    // 2 GiB more in use on GPU 1 than on GPU 0, so that a server reporting the other GPU's
    // memory shows.
    let _marker = Device::new(1)?.tracker()?.allocate(2048 * MIB, Purpose::IntermediateBuffers, "GPU1 marker")?;
    let nvml = Nvml::load()?;
    let servers = [Served::start(0)?, Served::start(1)?];
    for served in &servers {
        served.healthy()?;
    }
    let mut answers = Vec::new();
    std::thread::sleep(Duration::from_millis(600)); // checks after both finished loading
    for (device, served) in servers.iter().enumerate() {
        let health = http_client::get(served.addr, "/health").json();
        let metrics = http_client::get(served.addr, "/metrics").text();
        let memory = Device::new(device as u32)?.memory_info()?;
        let pids = [listed(&nvml, &bus_id(0)?, served.pid())?, listed(&nvml, &bus_id(1)?, served.pid())?];
        answers.push((health, metrics, memory, pids));
    }
    let stopped: Vec<_> = servers.into_iter().map(Served::stop).collect();
    for (device, (health, metrics, memory, pids)) in answers.iter().enumerate() {
        let bus = bus_id(device as u32)?;
        println!(
            "[ vramguard ] serve --device {device}: /health {} on {bus}, device used {} (driver: {}), listed by NVML on GPU0/GPU1: {pids:?}",
            health["status"],
            health["device"]["used_bytes"],
            memory.used_bytes()
        );
        ensure!(health["status"] == "healthy", "GPU{device}: {health}");
        ensure!(health["device"]["ordinal"] == device && health["device"]["pci_bus_id"] == bus.as_str(), "{health}");
        ensure!(health["device"]["total_bytes"] == memory.total_bytes, "{health}");
        let used = health["device"]["used_bytes"].as_u64().unwrap_or(0);
        ensure!(
            used.abs_diff(memory.used_bytes()) < 1024 * MIB,
            "GPU{device}: /health says {used} used, the driver {}",
            memory.used_bytes()
        );
        let info = format!(
            "vramguard_device_info{{ordinal=\"{device}\",name=\"{}\",pci_bus_id=\"{bus}\"}}",
            health["device"]["name"].as_str().unwrap_or("")
        );
        ensure!(metric(metrics, &info) == Some(1.0), "GPU{device}: no {info} in\n{metrics}");
        ensure!(metrics.matches("vramguard_device_info{").count() == 1, "GPU{device}: several GPUs in\n{metrics}");
        let used_metric = metric(metrics, "vramguard_device_used_bytes").unwrap_or(0.0) as u64;
        ensure!(
            used_metric.abs_diff(memory.used_bytes()) < 1024 * MIB,
            "GPU{device}: /metrics says {used_metric} used, the driver {}",
            memory.used_bytes()
        );
        ensure!(!pids[1 - device], "NVML lists the GPU{device} server on GPU{}", 1 - device);
    }
    for stop in stopped {
        stop?;
    }
    Ok(())
}
