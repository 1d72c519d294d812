//! The bandwidth witness while the GPU is busy. A worker's own kernels and copies, and other
//! processes, hold SMs, HBM and PCIe for milliseconds at a time; the witness must then say "not
//! judged", never accuse resident weights, keep the verdict ready and fresh, and still catch host
//! memory adopted as weights. For each load: a health monitor checks every 250 ms for
//! `VRAM_WITNESS_LOAD_SECS` (60 by default) over 1 GiB and 256 MiB of device weights while the
//! report is polled; then, the load still running, 64 MiB of mapped host memory adopted as weights
//! must be found host-backed by the witness within 3 checks. Each condition prints its figures on
//! `[ witness-load ]` lines. These take minutes and time kernels: the GPU runner runs them
//! plainly, in a stage of their own.
use std::ffi::c_void;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use vramguard::health::{HealthConfig, HealthMonitor, HealthReport, HealthSource, HealthStatus};
use vramguard::{Device, Purpose, Tracker};

use crate::ensure;
use crate::gpu_gate::gpu;
use crate::witness::MappedHost;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The health check interval under test.
const INTERVAL: Duration = Duration::from_millis(250);
/// Polls of the cached report: several per check, so that every check's report is seen.
const POLL: Duration = Duration::from_millis(25);
/// A verdict older than this many intervals is not fresh (the monitor's default `stale_after`).
const FRESH_INTERVALS: u32 = 3;
/// How long each load runs under the monitor, in whole seconds.
const DURATION_VAR: &str = "VRAM_WITNESS_LOAD_SECS";
const DEFAULT_SECONDS: u64 = 60;
/// Host-backed weights must be found within this many checks, the load still running.
const DETECT_WITHIN_CHECKS: u32 = 3;
const MAPPED_WEIGHTS_BYTES: u64 = 64 * MIB;
const MAPPED_WEIGHTS: &str = "mapped host weights";
/// Items a load keeps in flight: the GPU never runs dry, and a stopped load drains quickly.
const QUEUE_DEPTH: usize = 3;
/// How long a load's set-up (buffers, a stream, PyTorch's start) may take.
const LOAD_SETUP_WITHIN: Duration = Duration::from_secs(180);
/// Checks of the quick trials.
const QUICK_CHECKS: u32 = 4;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("witness_load::idle_baseline", idle_baseline),
        gpu("witness_load::full_occupancy_kernels_of_2ms", full_occupancy_kernels_of_2ms),
        gpu("witness_load::full_occupancy_kernels_of_20ms", full_occupancy_kernels_of_20ms),
        gpu("witness_load::device_to_device_copies_of_1gib", device_to_device_copies_of_1gib),
        gpu("witness_load::bf16_matmuls_in_another_process", bf16_matmuls_in_another_process),
        gpu("witness_load::host_to_device_copies_saturating_the_link", host_to_device_copies_saturating_the_link),
        gpu("witness_load::tiny_weights_leave_the_worker_healthy", tiny_weights_leave_the_worker_healthy),
        gpu(
            "witness_load::pageable_weights_are_one_violation_not_a_failed_check",
            pageable_weights_are_one_violation_not_a_failed_check,
        ),
    ]
}

#[link(name = "vramguard_faults", kind = "static")]
extern "C" {
    fn vg_test_spin_all_sms(device: i32, milliseconds: u32) -> i32;
}

extern "C" {
    fn cudaSetDevice(device: i32) -> i32;
    fn cudaDeviceSynchronize() -> i32;
    fn cudaMalloc(ptr: *mut *mut c_void, bytes: usize) -> i32;
    fn cudaFree(ptr: *mut c_void) -> i32;
    fn cudaHostAlloc(ptr: *mut *mut c_void, bytes: usize, flags: u32) -> i32;
    fn cudaFreeHost(ptr: *mut c_void) -> i32;
    fn cudaStreamCreateWithFlags(stream: *mut *mut c_void, flags: u32) -> i32;
    fn cudaStreamSynchronize(stream: *mut c_void) -> i32;
    fn cudaStreamDestroy(stream: *mut c_void) -> i32;
    fn cudaEventCreateWithFlags(event: *mut *mut c_void, flags: u32) -> i32;
    fn cudaEventRecord(event: *mut c_void, stream: *mut c_void) -> i32;
    fn cudaEventSynchronize(event: *mut c_void) -> i32;
    fn cudaEventDestroy(event: *mut c_void) -> i32;
    fn cudaMemcpyAsync(dst: *mut c_void, src: *const c_void, bytes: usize, kind: u32, stream: *mut c_void) -> i32;
}
const HOST_ALLOC_DEFAULT: u32 = 0;
const STREAM_NON_BLOCKING: u32 = 1;
const EVENT_DISABLE_TIMING: u32 = 2;
const MEMCPY_HOST_TO_DEVICE: u32 = 1;
const MEMCPY_DEVICE_TO_DEVICE: u32 = 3;

/// A CUDA runtime status as a result.
fn cuda(status: i32, what: &str) -> Result<(), String> {
    if status == 0 {
        Ok(())
    } else {
        Err(format!("{what} failed with CUDA error {status}"))
    }
}

fn idle_baseline() -> Result<(), Failed> {
    under_load("idle (no load)", || Ok(Box::new(NoLoad)))
}

fn full_occupancy_kernels_of_2ms() -> Result<(), Failed> {
    under_load("(a) full-occupancy kernels 2 ms", || spin_kernels(2))
}

fn full_occupancy_kernels_of_20ms() -> Result<(), Failed> {
    under_load("(a) full-occupancy kernels 20 ms", || spin_kernels(20))
}

fn device_to_device_copies_of_1gib() -> Result<(), Failed> {
    under_load("(b) device-to-device copies 1 GiB", device_to_device_copies)
}

fn bf16_matmuls_in_another_process() -> Result<(), Failed> {
    under_load("(c) bf16 matmuls 8192x8192 in another process", || Ok(Box::new(TorchMatmuls::start()?)))
}

fn host_to_device_copies_saturating_the_link() -> Result<(), Failed> {
    under_load("(d) host-to-device copies 256 MiB", host_to_device_copies)
}

/// What keeps the GPU busy during a condition. Dropping it stops it on every path.
trait Load {
    /// Why it is no longer running, when it stopped on its own (then the figures prove nothing).
    fn ended(&mut self) -> Option<String>;
    /// Stops it and waits until it is gone: what it did.
    fn stop(&mut self) -> Result<String, Failed>;
}

/// The idle baseline.
struct NoLoad;

impl Load for NoLoad {
    fn ended(&mut self) -> Option<String> {
        None
    }
    fn stop(&mut self) -> Result<String, Failed> {
        Ok("none".into())
    }
}

/// A load driven by a thread of its own, stopped and joined on drop.
struct LoadThread {
    /// What one item of the load is, for the summary.
    item: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64, String>>>,
}

impl LoadThread {
    /// Runs `drive` on a thread until told to stop, and waits until it says (through its sender)
    /// that its set-up is done. `drive` returns the items it enqueued.
    fn start<F>(item: impl Into<String>, drive: F) -> Result<LoadThread, Failed>
    where
        F: FnOnce(&AtomicBool, mpsc::Sender<()>) -> Result<u64, String> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = mpsc::channel();
        let stop_seen = Arc::clone(&stop);
        let thread =
            std::thread::Builder::new().name("witness-load".into()).spawn(move || drive(&stop_seen, ready_tx))?;
        let mut load = LoadThread { item: item.into(), stop, thread: Some(thread) };
        match ready.recv_timeout(LOAD_SETUP_WITHIN) {
            Ok(()) => Ok(load),
            Err(RecvTimeoutError::Disconnected) => {
                Err(load.join().err().unwrap_or_else(|| "the load ended before it started".into()))
            }
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("the load was not set up within {LOAD_SETUP_WITHIN:?}").into())
            }
        }
    }

    /// Tells the thread to stop and joins it: the items it enqueued, or what ended it.
    fn join(&mut self) -> Result<u64, Failed> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().ok_or("the load was already stopped")?;
        match thread.join() {
            Ok(Ok(items)) => Ok(items),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err("the load thread panicked".into()),
        }
    }
}

impl Load for LoadThread {
    fn ended(&mut self) -> Option<String> {
        if !self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            return None;
        }
        Some(match self.join() {
            Ok(items) => format!("the load thread ended after {items} {}", self.item),
            Err(error) => format!("the load thread ended: {}", error.message().unwrap_or("no reason given")),
        })
    }

    fn stop(&mut self) -> Result<String, Failed> {
        Ok(format!("{} {}", self.join()?, self.item))
    }
}

impl Drop for LoadThread {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// A stream: the legacy default stream, or a non-blocking one of its own, destroyed on drop.
struct Stream {
    raw: *mut c_void,
    owned: bool,
}

impl Stream {
    /// The legacy default stream, where `vg_test_spin_all_sms` launches.
    fn legacy() -> Stream {
        Stream { raw: std::ptr::null_mut(), owned: false }
    }

    /// A stream that never waits for the legacy default stream, like a serving engine's.
    fn non_blocking() -> Result<Stream, String> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the stream is destroyed by Drop.
        cuda(unsafe { cudaStreamCreateWithFlags(&mut raw, STREAM_NON_BLOCKING) }, "cudaStreamCreateWithFlags")?;
        Ok(Stream { raw, owned: true })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: a stream made by non_blocking, destroyed once; its work completes first.
            unsafe { cudaStreamDestroy(self.raw) };
        }
    }
}

/// Work enqueued on one stream, at most QUEUE_DEPTH items in flight: each item's end is marked by
/// an event, and the next item waits for the event QUEUE_DEPTH items back.
struct BoundedQueue {
    stream: Stream,
    events: Vec<*mut c_void>,
    enqueued: u64,
}

impl BoundedQueue {
    fn new(stream: Stream) -> Result<BoundedQueue, String> {
        let mut queue = BoundedQueue { stream, events: Vec::with_capacity(QUEUE_DEPTH), enqueued: 0 };
        for _ in 0..QUEUE_DEPTH {
            let mut event = std::ptr::null_mut();
            // SAFETY: a valid out-pointer; the event is destroyed by Drop.
            cuda(unsafe { cudaEventCreateWithFlags(&mut event, EVENT_DISABLE_TIMING) }, "cudaEventCreateWithFlags")?;
            queue.events.push(event);
        }
        Ok(queue)
    }

    fn stream(&self) -> *mut c_void {
        self.stream.raw
    }

    /// The event of the next item, which marked the item QUEUE_DEPTH back.
    fn next_event(&self) -> *mut c_void {
        self.events[(self.enqueued % QUEUE_DEPTH as u64) as usize]
    }

    /// Waits, when the queue is full, until its oldest item is done.
    fn make_room(&self) -> Result<(), String> {
        if self.enqueued >= QUEUE_DEPTH as u64 {
            // SAFETY: a live event, recorded after the item QUEUE_DEPTH back.
            cuda(unsafe { cudaEventSynchronize(self.next_event()) }, "cudaEventSynchronize")?;
        }
        Ok(())
    }

    /// Marks the end of the item just enqueued.
    fn enqueued(&mut self) -> Result<(), String> {
        // SAFETY: a live event and a live stream of the current device.
        cuda(unsafe { cudaEventRecord(self.next_event(), self.stream.raw) }, "cudaEventRecord")?;
        self.enqueued += 1;
        Ok(())
    }

    /// Waits for everything enqueued: the items' count.
    fn drain(&self) -> Result<u64, String> {
        // SAFETY: a live stream.
        cuda(unsafe { cudaStreamSynchronize(self.stream.raw) }, "cudaStreamSynchronize")?;
        Ok(self.enqueued)
    }
}

impl Drop for BoundedQueue {
    fn drop(&mut self) {
        // SAFETY: a live stream, and events made by new, each destroyed once, after the work they
        // mark.
        unsafe {
            cudaStreamSynchronize(self.stream.raw);
            for event in &self.events {
                cudaEventDestroy(*event);
            }
        }
    }
}

/// Device memory of the test's own (`cudaMalloc`), untracked, freed on drop.
struct RawDeviceMemory(*mut c_void);

impl RawDeviceMemory {
    fn new(bytes: u64) -> Result<RawDeviceMemory, String> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the memory is freed by Drop.
        cuda(unsafe { cudaMalloc(&mut ptr, bytes as usize) }, "cudaMalloc")?;
        Ok(RawDeviceMemory(ptr))
    }
}

impl Drop for RawDeviceMemory {
    fn drop(&mut self) {
        // SAFETY: allocated by cudaMalloc and freed once (cudaFree waits for work using it).
        unsafe { cudaFree(self.0) };
    }
}

/// Pinned host memory (`cudaHostAlloc`), freed on drop.
struct PinnedHost(*mut c_void);

impl PinnedHost {
    fn new(bytes: u64) -> Result<PinnedHost, String> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the memory is freed by Drop.
        cuda(unsafe { cudaHostAlloc(&mut ptr, bytes as usize, HOST_ALLOC_DEFAULT) }, "cudaHostAlloc")?;
        // SAFETY: `bytes` bytes of host memory were just allocated at ptr.
        unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0x5A, bytes as usize) };
        Ok(PinnedHost(ptr))
    }
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        // SAFETY: allocated by cudaHostAlloc and freed once (cudaFreeHost waits for copies from it).
        unsafe { cudaFreeHost(self.0) };
    }
}

/// (a) Kernels holding every SM at full occupancy, back to back on the legacy default stream of
/// this process, the worker's own.
fn spin_kernels(milliseconds: u32) -> Result<Box<dyn Load>, Failed> {
    let item = format!("kernels of {milliseconds} ms on every SM");
    let load = LoadThread::start(item, move |stop, ready| {
        // SAFETY: selects device 0 for this thread.
        cuda(unsafe { cudaSetDevice(0) }, "cudaSetDevice")?;
        let mut queue = BoundedQueue::new(Stream::legacy())?;
        let _ = ready.send(());
        while !stop.load(Ordering::Relaxed) {
            queue.make_room()?;
            // SAFETY: a test kernel that only spins, on device 0; it reads and writes no memory of ours.
            cuda(unsafe { vg_test_spin_all_sms(0, milliseconds) }, "vg_test_spin_all_sms")?;
            queue.enqueued()?;
        }
        queue.drain()
    })?;
    Ok(Box::new(load))
}

/// (b) 1 GiB device-to-device copies back to back on a non-blocking stream: HBM saturated.
fn device_to_device_copies() -> Result<Box<dyn Load>, Failed> {
    let load = LoadThread::start("device-to-device copies of 1 GiB", |stop, ready| {
        // SAFETY: selects device 0 for this thread.
        cuda(unsafe { cudaSetDevice(0) }, "cudaSetDevice")?;
        let source = RawDeviceMemory::new(GIB)?;
        let target = RawDeviceMemory::new(GIB)?;
        let mut queue = BoundedQueue::new(Stream::non_blocking()?)?;
        let _ = ready.send(());
        while !stop.load(Ordering::Relaxed) {
            queue.make_room()?;
            // SAFETY: two live device buffers of GIB bytes each (dropped after the queue, which
            // drains first), on the queue's live stream.
            cuda(
                unsafe { cudaMemcpyAsync(target.0, source.0, GIB as usize, MEMCPY_DEVICE_TO_DEVICE, queue.stream()) },
                "cudaMemcpyAsync device to device",
            )?;
            queue.enqueued()?;
        }
        queue.drain()
    })?;
    Ok(Box::new(load))
}

/// (d) 256 MiB host-to-device copies from pinned memory back to back on a non-blocking stream:
/// the PCIe link saturated in the direction the witness reads host memory.
fn host_to_device_copies() -> Result<Box<dyn Load>, Failed> {
    const BYTES: u64 = 256 * MIB;
    let load = LoadThread::start("host-to-device copies of 256 MiB", |stop, ready| {
        // SAFETY: selects device 0 for this thread.
        cuda(unsafe { cudaSetDevice(0) }, "cudaSetDevice")?;
        let source = PinnedHost::new(BYTES)?;
        let target = RawDeviceMemory::new(BYTES)?;
        let mut queue = BoundedQueue::new(Stream::non_blocking()?)?;
        let _ = ready.send(());
        while !stop.load(Ordering::Relaxed) {
            queue.make_room()?;
            // SAFETY: a live pinned host buffer and a live device buffer of BYTES bytes each
            // (dropped after the queue, which drains first), on the queue's live stream.
            cuda(
                unsafe { cudaMemcpyAsync(target.0, source.0, BYTES as usize, MEMCPY_HOST_TO_DEVICE, queue.stream()) },
                "cudaMemcpyAsync host to device",
            )?;
            queue.enqueued()?;
        }
        queue.drain()
    })?;
    Ok(Box::new(load))
}

/// (c)'s other process: bf16 matrix multiplications on cuda:0 until killed, "ready" once the
/// first is done. Exit 3: no PyTorch; 4: PyTorch without CUDA.
const TORCH_MATMULS: &str = r#"
import sys
try:
    import torch
except Exception as error:
    print(f"python3 cannot import torch: {error}", file=sys.stderr)
    sys.exit(3)
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} sees no CUDA device", file=sys.stderr)
    sys.exit(4)
a = torch.randn(8192, 8192, device="cuda:0", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda:0", dtype=torch.bfloat16)
c = torch.empty_like(a)
torch.matmul(a, b, out=c)
torch.cuda.synchronize()
print("ready", torch.__version__, "on", torch.cuda.get_device_name(0), flush=True)
n = 0
while True:
    torch.matmul(a, b, out=c)
    n += 1
    if n % 8 == 0:
        torch.cuda.synchronize()  # a short queue: killed, it leaves the GPU at once
"#;

/// (c) Another process on the same GPU, running PyTorch matmuls; killed on drop.
struct TorchMatmuls {
    child: Child,
    /// The end of what it wrote to stderr, for failure messages.
    stderr: Arc<Mutex<String>>,
    /// Which PyTorch on which GPU, for the summary.
    what: String,
    /// Device 0's free memory before it started: its memory must come back when it is killed.
    free_before: u64,
}

impl TorchMatmuls {
    fn start() -> Result<TorchMatmuls, Failed> {
        const REQUIRED: &str = "condition (c) is required and needs python3 with PyTorch (CUDA) on the GPU host";
        let free_before = Device::new(0)?.memory_info()?.free_bytes;
        let child = Command::new("python3")
            .args(["-c", TORCH_MATMULS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("{REQUIRED}: cannot start python3: {error}"))?;
        let mut process = TorchMatmuls { child, stderr: Arc::default(), what: String::new(), free_before };
        // The readers end at their pipe's end, when the process dies.
        let mut stderr = process.child.stderr.take().ok_or("no stderr")?;
        let kept = Arc::clone(&process.stderr);
        let (stderr_read_tx, stderr_read) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _read_to_the_end = stderr_read_tx;
            let mut chunk = [0u8; 4096];
            while let Ok(read @ 1..) = stderr.read(&mut chunk) {
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.push_str(&String::from_utf8_lossy(&chunk[..read]));
                let excess = kept.len().saturating_sub(8192);
                let cut = (excess..kept.len()).find(|i| kept.is_char_boundary(*i)).unwrap_or(0);
                kept.drain(..cut);
            }
        });
        let stdout = process.child.stdout.take().ok_or("no stdout")?;
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        match lines.recv_timeout(LOAD_SETUP_WITHIN) {
            Ok(line) if line.starts_with("ready ") => {
                process.what = format!("bf16 matmuls of PyTorch {} until killed", &line["ready ".len()..]);
                Ok(process)
            }
            Ok(line) => Err(format!("{REQUIRED}: the PyTorch process said {line:?}").into()),
            Err(_) => {
                let status = wait_or_kill(&mut process.child, Duration::from_secs(2));
                // Its stderr, read to the end once it has exited.
                let _ = stderr_read.recv_timeout(Duration::from_secs(2));
                Err(format!(
                    "{REQUIRED}: the PyTorch process did not start its matmuls ({status}): {}",
                    process.stderr()
                )
                .into())
            }
        }
    }

    fn stderr(&self) -> String {
        let text = self.stderr.lock().unwrap_or_else(|p| p.into_inner()).trim().to_string();
        if text.is_empty() {
            "nothing on stderr".into()
        } else {
            text
        }
    }
}

/// Waits `within` for a child to exit, then kills it: how it ended.
fn wait_or_kill(child: &mut Child, within: Duration) -> String {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    match child.wait() {
        Ok(status) => format!("still running after {within:?}, killed: {status}"),
        Err(error) => format!("still running after {within:?}, killed: {error}"),
    }
}

impl Load for TorchMatmuls {
    fn ended(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(format!("the PyTorch process exited ({status}): {}", self.stderr())),
            Err(error) => Some(format!("cannot wait for the PyTorch process: {error}")),
        }
    }

    fn stop(&mut self) -> Result<String, Failed> {
        if let Some(why) = self.ended() {
            return Err(why.into());
        }
        self.child.kill()?;
        self.child.wait()?;
        // Its memory comes back when its context goes: waited for, so that the suite's check of
        // the driver's free memory at the end does not count it.
        let device = Device::new(0)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let free = device.memory_info()?.free_bytes;
            if free + 64 * MIB >= self.free_before {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the killed PyTorch process's memory did not come back within 10 s: {} MiB free, {} MiB before it",
                free / MIB,
                self.free_before / MIB
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(self.what.clone())
    }
}

impl Drop for TorchMatmuls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pointer adopted by a tracker, forgotten on drop: declared after the memory, so that the
/// record goes before the memory does on every path.
struct Adopted<'a> {
    tracker: &'a Tracker,
    ptr: *const c_void,
    forgotten: bool,
}

impl<'a> Adopted<'a> {
    fn new(tracker: &'a Tracker, ptr: *const c_void, bytes: u64, description: &str) -> Result<Adopted<'a>, Failed> {
        tracker.adopt(ptr, bytes, Purpose::ModelWeights, description)?;
        Ok(Adopted { tracker, ptr, forgotten: false })
    }

    fn forget(mut self) -> Result<(), Failed> {
        self.forgotten = true;
        Ok(self.tracker.forget(self.ptr)?)
    }
}

impl Drop for Adopted<'_> {
    fn drop(&mut self) {
        if !self.forgotten {
            let _ = self.tracker.forget(self.ptr);
        }
    }
}

fn health_config() -> HealthConfig {
    HealthConfig { interval: INTERVAL, stale_after: FRESH_INTERVALS, ..HealthConfig::default() }
}

/// How long each load runs: VRAM_WITNESS_LOAD_SECS whole seconds, 60 by default.
fn load_duration() -> Result<Duration, Failed> {
    match std::env::var(DURATION_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(Duration::from_secs(DEFAULT_SECONDS)),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
            _ => Err(format!("{DURATION_VAR}={text:?}: expected a whole number of seconds, at least 1").into()),
        },
        Err(error) => Err(format!("{DURATION_VAR}: {error}").into()),
    }
}

/// Checks completed, whatever their outcome.
fn checks_done(report: &HealthReport) -> u64 {
    let counters = &report.counters;
    counters.checks_passed + counters.checks_violated + counters.checks_failed
}

/// A report in one line, for failure messages.
fn describe(report: &HealthReport) -> String {
    let violations: Vec<String> =
        report.violations.iter().map(|v| format!("{}: {}", v.description, v.reason)).collect();
    let not_judged: Vec<String> =
        report.not_judged.iter().map(|n| format!("{}: {}", n.description, n.reason)).collect();
    format!(
        "status {:?}, resident {}, last check {:?} s ago, last_error {}, violations [{}], not judged [{}]",
        report.status,
        report.resident,
        report.last_check_secs,
        report.last_error.as_ref().map_or_else(|| "none".to_string(), |e| e.to_string()),
        violations.join("; "),
        not_judged.join("; ")
    )
}

/// What the polls saw while a load ran.
#[derive(Default)]
struct Watched {
    /// Checks completed under the load (from the counters).
    checks: u64,
    /// Of those, checks whose report a poll saw.
    seen_checks: u64,
    /// Witness readings in the seen checks.
    readings: u64,
    /// Readings not judged (the counter `witness_not_judged`).
    not_judged: u64,
    /// Violations in the seen checks: every one is false, the weights are device memory.
    false_violations: u64,
    violated_checks: u64,
    failed_checks: u64,
    polls: u64,
    unready_polls: u64,
    /// The oldest verdict a poll was served, in seconds.
    max_age: f64,
    first_problem: Option<String>,
}

impl Watched {
    fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(problem());
        }
    }

    /// Counts a report's check when no poll has seen it before.
    fn observe_check(&mut self, report: &HealthReport, newest: &mut u64) {
        let done = checks_done(report);
        if done <= *newest {
            return;
        }
        *newest = done;
        self.seen_checks += 1;
        self.readings += report.witness.as_ref().map_or(0, |w| w.readings.len() as u64);
        self.false_violations += report.violations.len() as u64;
        if !report.violations.is_empty() {
            self.note(|| format!("a check with violations: {}", describe(report)));
        }
    }
}

/// Runs the monitor's periodic checks for `duration` while polling its report.
fn watch(monitor: &Arc<HealthMonitor>, duration: Duration, load: &mut dyn Load) -> Result<Watched, Failed> {
    let fresh_within = (INTERVAL * FRESH_INTERVALS).as_secs_f64();
    let before = monitor.report();
    let mut newest = checks_done(&before);
    let mut watched = Watched::default();
    let checks = monitor.start()?;
    let started = Instant::now();
    while started.elapsed() < duration {
        std::thread::sleep(POLL);
        let report = monitor.report();
        watched.polls += 1;
        let age = report.last_check_secs.unwrap_or(f64::INFINITY);
        watched.max_age = watched.max_age.max(age);
        if !report.ready() || age >= fresh_within {
            watched.unready_polls += 1;
            let at = started.elapsed().as_secs_f64();
            watched.note(|| format!("a poll at {at:.2} s: {}", describe(&report)));
        }
        watched.observe_check(&report, &mut newest);
        if let Some(why) = load.ended() {
            return Err(format!("the load stopped {:.1} s into the run: {why}", started.elapsed().as_secs_f64()).into());
        }
    }
    // Stops the checks, waiting for one in progress, which then counts too.
    drop(checks);
    let after = monitor.report();
    watched.observe_check(&after, &mut newest);
    watched.checks = checks_done(&after) - checks_done(&before);
    watched.not_judged = after.counters.witness_not_judged - before.counters.witness_not_judged;
    watched.violated_checks = after.counters.checks_violated - before.counters.checks_violated;
    watched.failed_checks = after.counters.checks_failed - before.counters.checks_failed;
    Ok(watched)
}

/// Adopts 64 MiB of mapped host memory as weights and checks on the interval's cadence until the
/// witness finds it host-backed: the checks and the time that took. Forgets it before it returns.
fn detect_host_backed(monitor: &HealthMonitor, tracker: &Tracker) -> Result<(u32, Duration), Failed> {
    let host = MappedHost::new(MAPPED_WEIGHTS_BYTES)?;
    let adopted = Adopted::new(tracker, host.0, MAPPED_WEIGHTS_BYTES, MAPPED_WEIGHTS)?;
    let adopted_at = Instant::now();
    let mut seen = Vec::new();
    for check in 1..=DETECT_WITHIN_CHECKS {
        if check > 1 {
            std::thread::sleep(INTERVAL);
        }
        let report = monitor.check_now();
        // The attribute sweep flags it too (memory type Host): only the witness's finding counts.
        let found =
            report.violations.iter().any(|v| v.description == MAPPED_WEIGHTS && v.reason.starts_with("bandwidth"));
        let others: Vec<_> = report.violations.iter().filter(|v| v.description != MAPPED_WEIGHTS).collect();
        ensure!(others.is_empty(), "false violations while detecting host-backed weights: {}", describe(&report));
        if found {
            let took = adopted_at.elapsed();
            adopted.forget()?;
            return Ok((check, took));
        }
        let reading = report.witness.as_ref().and_then(|w| w.readings.iter().find(|r| r.description == MAPPED_WEIGHTS));
        seen.push(match reading {
            Some(r) => format!(
                "check {check}: {:?} at {:.1} GB/s, control {:?} GB/s, {} windows, {}",
                r.verdict,
                r.gb_per_s,
                r.control_gb_per_s,
                r.windows,
                r.reason.as_deref().unwrap_or("no reason")
            ),
            None => format!("check {check}: no witness reading of it ({})", describe(&report)),
        });
    }
    Err(format!(
        "64 MiB of mapped host memory adopted as weights was not judged host-backed within {DETECT_WITHIN_CHECKS} checks: {}",
        seen.join("; ")
    )
    .into())
}

/// One condition: a monitor over real device weights while `start_load`'s load runs, then the
/// detection of host-backed weights under the same load.
fn under_load(label: &str, start_load: impl FnOnce() -> Result<Box<dyn Load>, Failed>) -> Result<(), Failed> {
    let duration = load_duration()?;
    let tracker = Device::new(0)?.tracker()?;
    let _weights = (
        tracker.allocate(GIB, Purpose::ModelWeights, "weights 1 GiB")?,
        tracker.allocate(256 * MIB, Purpose::ModelWeights, "weights 256 MiB")?,
    );
    let monitor = Arc::new(HealthMonitor::new(tracker.clone(), health_config())?);
    // The first check calibrates the witness on an idle GPU, as at a worker's start before it serves.
    let first = monitor.check_now();
    ensure!(first.ready(), "the check before the load is not ready: {}", describe(&first));
    let witness = first.witness.as_ref().ok_or("no witness in the first report")?;
    ensure!(witness.not_judging.is_none(), "the witness cannot judge on this GPU: {:?}", witness.not_judging);

    let mut load = start_load()?;
    let watched = watch(&monitor, duration, load.as_mut())?;
    let mut line = format!(
        "[ witness-load ] {label}: {} checks, {} readings, {} not judged ({:.1} %), {} false violations, {} unready polls, verdict age max {:.2} s",
        watched.checks,
        watched.readings,
        watched.not_judged,
        watched.not_judged as f64 * 100.0 / watched.readings.max(1) as f64,
        watched.false_violations,
        watched.unready_polls,
        watched.max_age
    );
    if watched.seen_checks < watched.checks {
        line += &format!(" ({} checks between polls unseen)", watched.checks - watched.seen_checks);
    }
    println!("{line}");

    let mut problems = Vec::new();
    match detect_host_backed(&monitor, &tracker) {
        Ok((checks, took)) => println!(
            "[ witness-load ] {label}: 64 MiB of mapped host memory as weights judged host-backed in {checks} check{} ({:.2} s)",
            if checks == 1 { "" } else { "s" },
            took.as_secs_f64()
        ),
        Err(failed) => problems.push(failed.message().unwrap_or("host-backed weights not detected").to_string()),
    }
    // Forgotten, the host weights leave the device weights healthy, the load still running.
    let after = monitor.check_now();
    if !after.ready() {
        problems.push(format!("not ready once the host weights were forgotten: {}", describe(&after)));
    }
    if let Some(why) = load.ended() {
        problems.push(format!("the load stopped before the end: {why}"));
    }
    match load.stop() {
        Ok(work) => println!("[ witness-load ] {label}: load done: {work}"),
        Err(failed) => problems.push(format!("the load: {}", failed.message().unwrap_or("failed"))),
    }
    // SAFETY: waits for everything this process enqueued on device 0.
    if let Err(error) = cuda(unsafe { cudaDeviceSynchronize() }, "cudaDeviceSynchronize") {
        problems.push(error);
    }

    if watched.false_violations > 0 || watched.violated_checks > 0 {
        problems.push(format!("{} false violations in {} checks", watched.false_violations, watched.violated_checks));
    }
    if watched.unready_polls > 0 || watched.failed_checks > 0 {
        problems.push(format!(
            "{} of {} polls unready, {} checks failed",
            watched.unready_polls, watched.polls, watched.failed_checks
        ));
    }
    if watched.max_age >= (INTERVAL * FRESH_INTERVALS).as_secs_f64() {
        problems.push(format!(
            "a verdict {:.2} s old was served (fresh within {FRESH_INTERVALS} intervals)",
            watched.max_age
        ));
    }
    if watched.readings == 0 {
        problems.push("no witness reading under the load".into());
    }
    if let Some(first) = &watched.first_problem {
        if !problems.is_empty() {
            problems.push(format!("the first: {first}"));
        }
    }
    ensure!(problems.is_empty(), "{label}: {}", problems.join("; "));
    Ok(())
}

/// An 8-byte allocation and a 4-byte tensor, both below the smallest slice the witness judges:
/// never read, never a failed check or a violation.
fn tiny_weights_leave_the_worker_healthy() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let eight_bytes = tracker.allocate(8, Purpose::ModelWeights, "8-byte weights")?;
    let buffer = RawDeviceMemory::new(MIB)?;
    // At an offset of 4: no aligned 16-byte word of its own.
    // SAFETY: 4 bytes in, well inside the buffer's MIB bytes.
    let tensor = unsafe { buffer.0.cast::<u8>().add(4) }.cast::<c_void>();
    let adopted = Adopted::new(&tracker, tensor, 4, "4-byte adopted tensor")?;
    let monitor = HealthMonitor::new(tracker.clone(), health_config())?;
    for check in 1..=QUICK_CHECKS {
        let report = monitor.check_now();
        ensure!(
            report.last_error.is_none() && report.counters.checks_failed == 0,
            "check {check} failed: {}",
            describe(&report)
        );
        ensure!(
            report.violations.is_empty() && report.status == HealthStatus::Healthy,
            "check {check}: {}",
            describe(&report)
        );
        let witness = report.witness.as_ref().ok_or("no witness in the report")?;
        ensure!(witness.too_small == 2 && witness.readings.is_empty(), "check {check}: {witness:?}");
    }
    println!(
        "[ witness-load ] tiny weights (an 8-byte allocation, a 4-byte adopted tensor): {QUICK_CHECKS} checks healthy, neither read by the witness"
    );
    adopted.forget()?;
    drop(eight_bytes);
    Ok(())
}

/// Pageable memory adopted as weights: the sweep's one violation, and the witness, which cannot
/// read it, neither fails the check nor adds a second.
fn pageable_weights_are_one_violation_not_a_failed_check() -> Result<(), Failed> {
    const PAGEABLE_WEIGHTS: &str = "pageable weights";
    let tracker = Device::new(0)?.tracker()?;
    let pageable = vec![0x5Au8; 4 * MIB as usize];
    let adopted = Adopted::new(&tracker, pageable.as_ptr().cast(), 4 * MIB, PAGEABLE_WEIGHTS)?;
    let monitor = HealthMonitor::new(tracker.clone(), health_config())?;
    let failed_before = monitor.report().counters.checks_failed;
    let mut reason = String::new();
    for check in 1..=QUICK_CHECKS {
        let report = monitor.check_now();
        ensure!(report.last_error.is_none(), "check {check} failed: {}", describe(&report));
        ensure!(
            report.counters.checks_failed == failed_before,
            "check {check} counted as failed: {}",
            describe(&report)
        );
        ensure!(report.status == HealthStatus::Unhealthy, "check {check}: {}", describe(&report));
        let theirs: Vec<_> = report.violations.iter().filter(|v| v.description == PAGEABLE_WEIGHTS).collect();
        ensure!(theirs.len() == 1 && report.violations.len() == 1, "check {check}: {}", describe(&report));
        reason.clone_from(&theirs[0].reason);
    }
    println!(
        "[ witness-load ] pageable weights: one violation in each of {QUICK_CHECKS} checks, none failed ({reason})"
    );
    adopted.forget()?;
    let report = monitor.check_now();
    ensure!(report.ready(), "still not ready once the pageable weights were forgotten: {}", describe(&report));
    Ok(())
}
