//! The health service on a real device: the preset is healthy and resident, a Managed allocation
//! under ModelWeights turns /health and /health/ready to 503 within an interval and back to 200
//! once freed, /metrics agrees with the tracker, and `vramguard serve` stops cleanly on Ctrl-C.
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use vramguard::health::HealthConfig;
use vramguard::server::ServerConfig;
use vramguard::service::{Service, ServiceConfig};
use vramguard::slots::presets;
use vramguard::{AllocationKind, Purpose};

use crate::ensure;
use crate::gpu_gate::{gpu, vramguard_binary};
use crate::http_client;

const INTERVAL: Duration = Duration::from_millis(200);

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("service::preset_is_healthy_and_resident", preset_is_healthy_and_resident),
        gpu("service::fallback_memory_turns_health_503_and_back", fallback_memory_turns_health_503_and_back),
        gpu("service::metrics_agree_with_the_tracker", metrics_agree_with_the_tracker),
        gpu("service::serve_binary_stops_cleanly_on_ctrl_c", serve_binary_stops_cleanly_on_ctrl_c),
        gpu("service::serve_binary_stops_cleanly_on_sigterm", serve_binary_stops_cleanly_on_sigterm),
        gpu(
            "service::a_corrupted_weight_byte_is_an_integrity_violation",
            a_corrupted_weight_byte_is_an_integrity_violation,
        ),
    ]
}

fn start() -> Result<Service, Failed> {
    let config = ServiceConfig {
        health: HealthConfig { interval: INTERVAL, ..HealthConfig::default() },
        server: ServerConfig { port: 0, ..ServerConfig::default() },
        ..ServiceConfig::default()
    };
    Ok(Service::start(config)?)
}

/// Polls `path` until its status is `want` (at most 50 intervals).
fn wait_for(service: &Service, path: &str, want: u16) -> Result<http_client::HttpResponse, Failed> {
    let deadline = Instant::now() + INTERVAL * 50;
    loop {
        let response = http_client::get(service.local_addr(), path);
        if response.status == want || Instant::now() > deadline {
            ensure!(response.status == want, "{path}: {} instead of {want}: {}", response.status, response.text());
            return Ok(response);
        }
        std::thread::sleep(INTERVAL / 4);
    }
}

fn preset_is_healthy_and_resident() -> Result<(), Failed> {
    let service = start()?;
    let health = wait_for(&service, "/health", 200)?.json();
    ensure!(health["status"] == "healthy" && health["resident"] == true, "{health}");
    ensure!(health["vram_bytes_used"].as_u64().unwrap_or(0) >= presets::seed000().model_bytes(), "{health}");
    ensure!(health["slots"].as_array().map(Vec::len) == Some(13), "{health}");
    ensure!(health["device"]["used_bytes"].as_u64().unwrap_or(0) >= presets::seed000().model_bytes(), "{health}");
    ensure!(wait_for(&service, "/health/ready", 200)?.json()["ready"] == true, "not ready");
    ensure!(http_client::get(service.local_addr(), "/health/live").status == 200, "not live");
    Ok(())
}

fn fallback_memory_turns_health_503_and_back() -> Result<(), Failed> {
    let service = start()?;
    wait_for(&service, "/health", 200)?;
    let fallback = service.tracker().allocate_kind(
        1 << 20,
        Purpose::ModelWeights,
        AllocationKind::Managed,
        "weights fell back to unified memory",
    )?;
    let health = wait_for(&service, "/health", 503)?.json();
    let violation = &health["violations"][0];
    ensure!(
        violation["description"] == "weights fell back to unified memory" && violation["kind"] == "Managed",
        "{health}"
    );
    ensure!(health["resident"] == false, "{health}");
    wait_for(&service, "/health/ready", 503)?;
    drop(fallback);
    wait_for(&service, "/health", 200)?;
    wait_for(&service, "/health/ready", 200)?;
    let pinned = service.tracker().allocate_kind(
        1 << 20,
        Purpose::ModelWeights,
        AllocationKind::PinnedHost,
        "pinned host weights",
    )?;
    let health = wait_for(&service, "/health", 503)?.json();
    ensure!(health["violations"][0]["kind"] == "PinnedHost", "{health}");
    drop(pinned);
    wait_for(&service, "/health", 200)?;
    Ok(())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn metrics_agree_with_the_tracker() -> Result<(), Failed> {
    let service = start()?;
    let _kv = service.tracker().allocate(64 << 20, Purpose::KVCache, "kv")?;
    // Wait for a check that saw the KV buffer.
    let deadline = Instant::now() + INTERVAL * 50;
    let text = loop {
        let text = http_client::get(service.local_addr(), "/metrics").text();
        if metric(&text, "vramguard_vram_used_bytes{purpose=\"kv_cache\"}") == Some((64u64 << 20) as f64)
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(INTERVAL / 4);
    };
    let usage = service.tracker().usage();
    let expect = [
        ("vramguard_vram_used_bytes{purpose=\"model_weights\"}", usage.bytes(Purpose::ModelWeights)),
        ("vramguard_vram_used_bytes{purpose=\"kv_cache\"}", usage.bytes(Purpose::KVCache)),
        ("vramguard_vram_tracked_bytes", usage.total_bytes),
        ("vramguard_tracked_allocations", usage.allocation_count),
        ("vramguard_budget_allocated_bytes", service.slots().allocated()),
        ("vramguard_loaded_slots", 13),
        ("vramguard_resident", 1),
        ("vramguard_healthy", 1),
    ];
    for (name, value) in expect {
        ensure!(metric(&text, name) == Some(value as f64), "{name}: {:?} vs {value}\n{text}", metric(&text, name));
    }
    ensure!(metric(&text, "vramguard_device_total_bytes").unwrap_or(0.0) > 0.0, "{text}");
    // Which GPU: /health and /metrics name the one the tracker is on, by CUDA's PCI bus id.
    let info = vramguard::Device::new(0)?.info()?;
    let health = http_client::get(service.local_addr(), "/health").json();
    ensure!(
        health["device"]["pci_bus_id"] == info.pci_bus_id.as_str() && health["device"]["name"] == info.name.as_str(),
        "{health}"
    );
    let series =
        format!("vramguard_device_info{{ordinal=\"0\",name=\"{}\",pci_bus_id=\"{}\"}}", info.name, info.pci_bus_id);
    ensure!(metric(&text, &series) == Some(1.0), "no {series} in\n{text}");
    Ok(())
}

fn serve_binary_stops_cleanly_on_ctrl_c() -> Result<(), Failed> {
    serve_binary_stops_cleanly_on(libc::SIGINT)
}

/// What Kubernetes sends: exit 0 after a clean stop, and the driver's free memory back where it
/// was before the process started.
fn serve_binary_stops_cleanly_on_sigterm() -> Result<(), Failed> {
    serve_binary_stops_cleanly_on(libc::SIGTERM)
}

fn serve_binary_stops_cleanly_on(signal: i32) -> Result<(), Failed> {
    let device = vramguard::Device::new(0)?;
    let free_before = device.memory_info()?.free_bytes;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let child = std::process::Command::new(vramguard_binary())
        .args(["serve", "--port", &port.to_string(), "--interval", "200ms", "--json-logs"])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut healthy = false;
    while Instant::now() < deadline && !healthy {
        std::thread::sleep(Duration::from_millis(100));
        healthy = std::net::TcpStream::connect(addr).is_ok() && http_client::get(addr, "/health").status == 200;
    }
    let free_serving = device.memory_info()?.free_bytes;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let output = child.wait_with_output()?;
    let free_after = device.memory_info()?.free_bytes;
    let logs = String::from_utf8_lossy(&output.stderr);
    ensure!(healthy, "the served /health never reached 200:\n{logs}");
    ensure!(output.status.success(), "exit {:?}:\n{logs}", output.status);
    ensure!(
        logs.contains("\"action\":\"shutdown\"") && logs.contains("0 bytes still tracked"),
        "no clean shutdown in:\n{logs}"
    );
    ensure!(logs.lines().all(|l| l.starts_with('{')), "not JSON lines:\n{logs}");
    ensure!(
        free_serving + presets::seed000().model_bytes() <= free_before,
        "the child held less than its slots: {free_before} -> {free_serving}"
    );
    ensure!(
        free_before.abs_diff(free_after) <= 4 << 20,
        "driver free memory {free_before} before, {free_after} after signal {signal}"
    );
    println!("[ vramguard ] serve stopped by signal {signal}: exit 0, driver free {free_before} before, {free_serving} serving, {free_after} after");
    Ok(())
}

// A raw write, past the product's API, as a stray kernel or a bad copy would make.
extern "C" {
    fn cudaMemcpy(dst: *mut std::ffi::c_void, src: *const std::ffi::c_void, bytes: usize, kind: i32) -> i32;
}
const HOST_TO_DEVICE: i32 = 1;
const DEVICE_TO_HOST: i32 = 2;

fn a_corrupted_weight_byte_is_an_integrity_violation() -> Result<(), Failed> {
    let service = start()?;
    wait_for(&service, "/health", 200)?;
    let slot = "E7 Code".to_string();
    let target = {
        let in_use = service.slots().use_slot(&slot)?;
        in_use.device_ptr().ok_or("the slot has no device memory")? as usize + 12_345_678
    };
    let mut original = 0u8;
    // SAFETY: one byte inside the 300 MB slot, which stays allocated while the service runs.
    unsafe { cudaMemcpy(&mut original as *mut u8 as *mut _, target as *const _, 1, DEVICE_TO_HOST) };
    let corrupt = original ^ 0x01;
    unsafe { cudaMemcpy(target as *mut _, &corrupt as *const u8 as *const _, 1, HOST_TO_DEVICE) };
    let health = wait_for(&service, "/health", 503)?.json();
    let violation = &health["violations"][0];
    ensure!(violation["error_kind"] == "integrity_violation" && violation["description"] == "E7 Code", "{health}");
    ensure!(health["resident"] == true, "the memory is still on the device: {health}");
    wait_for(&service, "/health/ready", 503)?;
    unsafe { cudaMemcpy(target as *mut _, &original as *const u8 as *const _, 1, HOST_TO_DEVICE) };
    wait_for(&service, "/health", 200)?;
    Ok(())
}
