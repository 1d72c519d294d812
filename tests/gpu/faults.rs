//! Faults provoked for real on the GPU, each in a child process (this test binary started again
//! in a child mode), because a faulted context stays faulted for the rest of its process:
//! - an out-of-bounds kernel corrupts the context: `/health/live` turns 503 and the error says
//!   `"recoverable": false` (VRAM-E018), so an orchestrator restarts the worker;
//! - a kernel that fills every SM for longer than the check deadline: the integrity checksum
//!   cannot run, the check fails past its deadline (VRAM-E019) and `/health/ready` turns 503,
//!   while `/health/live` still answers 200; the service still stops within its shutdown deadline
//!   (freeing device memory would wait for the kernel: the shutdown leaves it behind);
//! - an old healthy verdict goes stale when no check completes (in this process: nothing faults);
//! - a kernel that fills every SM while a slot loads weights with a short deadline: the load fails
//!   with VRAM-E019 on time, the slot leaves the table, and its memory, which the load's work left
//!   running may still write, is kept until that work is over, then freed (a child of its own,
//!   `LOAD_CHILD_MODE`: its GPU is held and it exits without waiting for it).
//!
//! The child starts a `Service`, prints `PORT <n>`, then obeys one line on stdin: `oob`,
//! `spin <ms>` or `stop`; `stop` shuts the service down within `SHUTDOWN_DEADLINE` and exits 0
//! when everything was freed in that time, 3 when the shutdown was left running.
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use vramguard::health::{HealthConfig, HealthMonitor, HealthSource, HealthStatus};
use vramguard::server::ServerConfig;
use vramguard::service::{Service, ServiceConfig};

use vramguard::loader::LoaderConfig;
use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig};
use vramguard::{AllocationKind, Device};

use crate::ensure;
use crate::gpu_gate::gpu;
use crate::http_client;
use crate::model_files::{bf16_layers, temp_dir, write_model};

/// The environment variable that makes this binary a fault child.
pub const CHILD_MODE: &str = "VRAMGUARD_FAULT_CHILD";
/// The environment variable that makes this binary the held-GPU load's child.
pub const LOAD_CHILD_MODE: &str = "VRAMGUARD_LOAD_DEADLINE_CHILD";
/// The load's deadline in that child, the time the GPU is held, and what a return may take
/// beyond the deadline (scheduling, one chunk read past it).
const LOAD_DEADLINE: Duration = Duration::from_millis(500);
const LOAD_HOLD: Duration = Duration::from_secs(8);
const LOAD_MARGIN: Duration = Duration::from_secs(1);
const INTERVAL: Duration = Duration::from_millis(200);
const CHECK_DEADLINE: Duration = Duration::from_millis(1000);
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);
/// Longer than the check deadline plus several intervals, and than the shutdown deadline.
const SPIN: Duration = Duration::from_secs(15);

#[link(name = "vramguard_faults", kind = "static")]
extern "C" {
    fn vg_test_fault_out_of_bounds(device: i32) -> i32;
    fn vg_test_spin_all_sms(device: i32, milliseconds: u32) -> i32;
}

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("faults::an_out_of_bounds_kernel_ends_liveness", an_out_of_bounds_kernel_ends_liveness),
        gpu(
            "faults::a_kernel_holding_every_sm_fails_readiness_not_liveness",
            a_kernel_holding_every_sm_fails_readiness_not_liveness,
        ),
        gpu("faults::a_healthy_verdict_goes_stale", a_healthy_verdict_goes_stale),
        gpu(
            "faults::a_held_gpu_fails_a_slot_load_on_time_and_its_memory_outlives_the_work",
            a_held_gpu_fails_a_slot_load_on_time_and_its_memory_outlives_the_work,
        ),
    ]
}

/// The child's side: runs the service until told what to do. Never returns.
pub fn child() -> ! {
    let config = ServiceConfig {
        health: HealthConfig {
            interval: INTERVAL,
            check_deadline: CHECK_DEADLINE,
            stale_after: 3,
            ..HealthConfig::default()
        },
        server: ServerConfig { port: 0, ..ServerConfig::default() },
        ..ServiceConfig::default()
    };
    let service = match Service::start(config) {
        Ok(service) => service,
        Err(e) => {
            eprintln!("fault child: {e}");
            std::process::exit(2);
        }
    };
    println!("PORT {}", service.local_addr().port());
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            // SAFETY: test-only fault kernels on this process's device 0; the context is expected
            // to be corrupted by the first and held by the second.
            ["oob"] => eprintln!("fault child: out-of-bounds kernel -> cuda error {}", unsafe {
                vg_test_fault_out_of_bounds(0)
            }),
            ["spin", ms] => {
                let ms: u32 = ms.parse().unwrap_or(1000);
                eprintln!("fault child: spin {ms} ms -> launch {}", unsafe { vg_test_spin_all_sms(0, ms) });
            }
            ["stop"] => {
                let clean = service.shutdown_within(SHUTDOWN_DEADLINE);
                eprintln!(
                    "fault child: shutdown {}",
                    if clean { "complete" } else { "left running past its deadline" }
                );
                // SAFETY: _exit skips atexit handlers: the CUDA runtime's own teardown would wait
                // for the kernel that holds the device.
                unsafe { libc::_exit(if clean { 0 } else { 3 }) };
            }
            _ => eprintln!("fault child: unknown command {line:?}"),
        }
    }
    std::process::exit(0);
}

struct FaultChild {
    child: Child,
    stdin: ChildStdin,
    addr: SocketAddr,
}

impl FaultChild {
    fn start() -> Result<FaultChild, Failed> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_MODE, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut first)?;
        let port: u16 = first.trim().strip_prefix("PORT ").ok_or_else(|| format!("child said {first:?}"))?.parse()?;
        Ok(FaultChild { child, stdin, addr: format!("127.0.0.1:{port}").parse()? })
    }

    fn tell(&mut self, line: &str) -> Result<(), Failed> {
        writeln!(self.stdin, "{line}")?;
        Ok(self.stdin.flush()?)
    }

    /// Polls `path` until its status is `want`, for at most `within`.
    fn wait_for(&self, path: &str, want: u16, within: Duration) -> Result<http_client::HttpResponse, Failed> {
        let deadline = Instant::now() + within;
        loop {
            let response = http_client::get(self.addr, path);
            if response.status == want {
                return Ok(response);
            }
            ensure!(
                Instant::now() < deadline,
                "{path}: {} instead of {want} after {within:?}: {}",
                response.status,
                response.text()
            );
            std::thread::sleep(INTERVAL / 4);
        }
    }
}

impl Drop for FaultChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn an_out_of_bounds_kernel_ends_liveness() -> Result<(), Failed> {
    let mut child = FaultChild::start()?;
    child.wait_for("/health", 200, Duration::from_secs(30))?;
    child.wait_for("/health/live", 200, Duration::from_secs(1))?;
    child.tell("oob")?;
    let live = child.wait_for("/health/live", 503, INTERVAL * 50)?.json();
    ensure!(live["status"] == "dead", "{live}");
    let health = child.wait_for("/health", 503, Duration::from_secs(1))?.json();
    let error = &health["last_error"];
    ensure!(
        error["code"] == "VRAM-E018" && error["kind"] == "cuda_sticky" && error["recoverable"] == false,
        "{health}"
    );
    ensure!(health["live"] == false, "{health}");
    child.wait_for("/health/ready", 503, Duration::from_secs(1))?;
    // Later checks cannot bring it back: still dead after several more intervals.
    std::thread::sleep(INTERVAL * 5);
    ensure!(http_client::get(child.addr, "/health/live").status == 503, "liveness came back on a corrupt context");
    println!("[ vramguard ] out-of-bounds kernel: /health/live 503, last_error {}", error["message"]);
    Ok(())
}

fn a_kernel_holding_every_sm_fails_readiness_not_liveness() -> Result<(), Failed> {
    let mut child = FaultChild::start()?;
    child.wait_for("/health", 200, Duration::from_secs(30))?;
    child.wait_for("/health/ready", 200, Duration::from_secs(1))?;
    let spun = Instant::now();
    child.tell(&format!("spin {}", SPIN.as_millis()))?;
    let ready = child.wait_for("/health/ready", 503, CHECK_DEADLINE + INTERVAL * 10)?.json();
    let health = http_client::get(child.addr, "/health").json();
    let status = health["status"].as_str().unwrap_or_default().to_string();
    let code = health["last_error"]["code"].clone();
    ensure!(
        status == "stale" || (status == "unhealthy" && code == "VRAM-E019"),
        "neither stale nor failed past its deadline: {health}"
    );
    ensure!(health["last_error"]["recoverable"] != false, "a busy device is recoverable: {health}");
    let live = http_client::get(child.addr, "/health/live");
    ensure!(live.status == 200, "liveness must survive a busy device: {}", live.text());
    println!("[ vramguard ] kernel holding every SM: /health/ready 503 ({ready}) after {:?}, /health {status} {code}, /health/live 200", spun.elapsed());

    let stopping = Instant::now();
    child.tell("stop")?;
    let status = child.child.wait()?;
    let took = stopping.elapsed();
    ensure!(took < SHUTDOWN_DEADLINE + Duration::from_secs(2), "shutdown took {took:?} with a kernel holding the GPU");
    ensure!(spun.elapsed() < SPIN, "the kernel ended before the shutdown was tried: the test proves nothing");
    ensure!(matches!(status.code(), Some(0) | Some(3)), "child exit {status:?}");
    println!("[ vramguard ] shutdown with the kernel still running: {took:?}, exit {status:?}");
    Ok(())
}

fn a_healthy_verdict_goes_stale() -> Result<(), Failed> {
    let tracker = vramguard::Device::new(0)?.tracker()?;
    let _weights = tracker.allocate(1 << 20, vramguard::Purpose::ModelWeights, "weights")?;
    let config = HealthConfig { interval: Duration::from_millis(50), stale_after: 3, ..HealthConfig::default() };
    let monitor = HealthMonitor::new(tracker, config)?;
    let checked = monitor.check_now();
    ensure!(checked.status == HealthStatus::Healthy && monitor.report().status == HealthStatus::Healthy, "{checked:?}");
    // No background checks: nothing replaces the verdict, as when the checker is stuck.
    std::thread::sleep(Duration::from_millis(200));
    let old = monitor.report();
    ensure!(old.status == HealthStatus::Stale && !old.ready() && old.live, "{old:?}");
    ensure!(monitor.check_now().status == HealthStatus::Healthy, "a new check is fresh again");
    Ok(())
}

fn a_held_gpu_fails_a_slot_load_on_time_and_its_memory_outlives_the_work() -> Result<(), Failed> {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?).env(LOAD_CHILD_MODE, "1").stderr(Stdio::piped()).spawn()?;
    let give_up = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > give_up {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the held-GPU load's child ran for 90 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().ok_or("no stderr")?, &mut stderr)?;
    ensure!(status.success(), "child exit {status:?}:\n{stderr}");
    println!("[ vramguard ] held-GPU slot load: {}, child done in {:?}", stderr.trim(), started.elapsed());
    Ok(())
}

/// The held-GPU load's child: runs the scenario, says how it went on stderr, exits 0 when every
/// expectation held. Never returns.
pub fn load_child() -> ! {
    let code = match held_gpu_load() {
        Ok(summary) => {
            eprintln!("{summary}");
            0
        }
        Err(failure) => {
            eprintln!("load deadline child: FAILED: {}", failure.message().unwrap_or("(no message)"));
            1
        }
    };
    // SAFETY: _exit skips atexit handlers: the CUDA runtime's own teardown would wait for work
    // the GPU may still hold; nothing of this process needs flushing but stderr (unbuffered).
    unsafe { libc::_exit(code) }
}

fn held_gpu_load() -> Result<String, Failed> {
    const MIB: u64 = 1 << 20;
    let dir = temp_dir("load-deadline");
    let path = dir.join("m.safetensors");
    write_model(&path, &bf16_layers(16, 1024, 1024), 21)?; // 32 MiB, 32 chunks of 1 MiB
    let tracker = Device::new(0)?.tracker()?;
    // Pool slots: their allocation never waits for the GPU (cudaMalloc may), so the load itself
    // meets the held GPU; the slot's memory is kept all the same, whatever its kind.
    let slots: ModelSlotManager<String> = ModelSlotManager::with_config(SlotConfig {
        budget_bytes: u64::MAX,
        backing: Some(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Pool }),
        loader: LoaderConfig { staging_bytes: 8 * MIB, readers: 4, load_timeout: Some(LOAD_DEADLINE) },
        unload_min_residency: Duration::ZERO,
        ..SlotConfig::default()
    });
    let key = "m".to_string();
    // Threads, staging, the pool and the checksum's module made before the GPU is held.
    slots.load_weights(key.clone(), &[&path])?;
    slots.deallocate_slot(&key);
    ensure!(tracker.total_bytes() == 0, "{} bytes tracked before the GPU is held", tracker.total_bytes());
    let loader = slots.weights_loader().ok_or("no loader after a load")?;

    // SAFETY: a test-only kernel that holds every SM of device 0 of this child for LOAD_HOLD.
    let launched = unsafe { vg_test_spin_all_sms(0, LOAD_HOLD.as_millis() as u32) };
    ensure!(launched == 0, "vg_test_spin_all_sms: cuda error {launched}");
    std::thread::sleep(Duration::from_millis(50)); // every block of the spin is resident by now
    let held_since = Instant::now();

    let start = Instant::now();
    let error = slots.load_weights(key.clone(), &[&path]).err().ok_or("a load on a held GPU succeeded")?;
    let took = start.elapsed();
    ensure!(error.code() == "VRAM-E019", "a load on a held GPU: {error}");
    ensure!(took >= LOAD_DEADLINE && took < LOAD_DEADLINE + LOAD_MARGIN, "returned after {took:?}");
    ensure!(!slots.has_slot(&key), "the failed slot stayed in the table");
    ensure!(!loader.is_idle()?, "the timed-out load's work is not reported as left running");
    let kept = tracker.total_bytes();
    ensure!(kept >= 32 * MIB, "the slot's memory was freed under the left work ({kept} bytes tracked)");
    ensure!(slots.allocated() == kept, "budget {} and tracker {kept} disagree", slots.allocated());
    ensure!(held_since.elapsed() < LOAD_HOLD / 2, "the spin ended too early to tell");

    // The spin ends, the left work with it; the loader says so and lets the memory go.
    let give_up = Instant::now() + Duration::from_secs(30);
    while !loader.is_idle()? {
        ensure!(Instant::now() < give_up, "the loader never became idle after the GPU was free");
        std::thread::sleep(Duration::from_millis(10));
    }
    ensure!(tracker.total_bytes() == 0, "{} bytes still tracked once the loader was idle", tracker.total_bytes());
    ensure!(slots.allocated() == 0, "{} bytes still charged to the budget", slots.allocated());
    slots.load_weights(key.clone(), &[&path])?;
    ensure!(slots.has_slot(&key), "no slot after the GPU was free");
    let _ = std::fs::remove_dir_all(dir);
    Ok(format!("VRAM-E019 after {took:?} (deadline {LOAD_DEADLINE:?}), {kept} bytes kept until the GPU was free"))
}
