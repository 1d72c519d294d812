//! The health endpoint over real HTTP: the service (`service::Service`) with its background
//! checks, or a `HealthMonitor` served by a `HealthServer` on its own.
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use cucumber::{given, then, when};
use vramguard::health::{HealthConfig, HealthMonitor};
use vramguard::server::{HealthServer, ServerConfig};
use vramguard::service::{Service, ServiceConfig};
use vramguard::Tracker;

use super::no_gpu::expected_code;
use super::params::Size;
use super::world::{Endpoint, VramWorld};
use crate::http_client::{self, HttpResponse};

/// Long enough for many checks even under compute-sanitizer, which slows every CUDA call.
const PATIENCE: Duration = Duration::from_secs(30);

fn loopback() -> ServerConfig {
    ServerConfig { port: 0, ..ServerConfig::default() }
}

/// GETs `path` until `accept` takes the answer; fails with the last answer after `PATIENCE`.
fn poll(world: &VramWorld, path: &str, what: &str, accept: impl Fn(&HttpResponse) -> bool) -> HttpResponse {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = http_client::get(world.endpoint().addr(), path);
        if accept(&response) {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {what}; last: {} {}",
            response.status,
            response.text()
        );
        sleep(Duration::from_millis(50));
    }
}

fn json(response: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_default()
}

fn serve_monitor(world: &mut VramWorld, tracker: Tracker) -> vramguard::Result<Arc<HealthMonitor>> {
    let monitor = Arc::new(HealthMonitor::new(tracker, HealthConfig::default())?);
    let server = HealthServer::start(loopback(), monitor.clone())?;
    world.endpoint = Some(Endpoint::Monitor { server, monitor: monitor.clone() });
    Ok(monitor)
}

#[given(expr = "a running health service checking every {int} ms")]
fn service(world: &mut VramWorld, interval_ms: u64) -> vramguard::Result<()> {
    let config = ServiceConfig {
        health: HealthConfig { interval: Duration::from_millis(interval_ms), ..HealthConfig::default() },
        server: loopback(),
        ..ServiceConfig::default()
    };
    let service = Service::start(config)?;
    world.tracker = Some(service.tracker().clone());
    world.endpoint = Some(Endpoint::Service(service));
    Ok(())
}

#[given(expr = "a health monitor of GPU {int} served over HTTP")]
fn monitor_of(world: &mut VramWorld, ordinal: u32) -> vramguard::Result<()> {
    // Making a tracker needs no GPU; its checks fail where the device is missing.
    let tracker = Tracker::new(ordinal)?;
    world.tracker = Some(tracker.clone());
    serve_monitor(world, tracker)?;
    Ok(())
}

#[when("the health monitor runs a check")]
fn check(world: &mut VramWorld) {
    match world.endpoint() {
        Endpoint::Monitor { monitor, .. } => drop(monitor.check_now()),
        Endpoint::Service(_) => panic!("the service checks on its own"),
    }
}

#[then(expr = "the health endpoint shows vram_bytes_used >= {size}")]
fn shows_used(world: &mut VramWorld, size: Size) -> vramguard::Result<()> {
    // The worker's endpoint: its tracker, checked by the health monitor and served over HTTP.
    let tracker = world.tracker().clone();
    let monitor = serve_monitor(world, tracker)?;
    monitor.check_now();
    let response = poll(world, "/health", "200", |r| r.status == 200);
    let body = json(&response);
    let used = body["vram_bytes_used"].as_u64().unwrap_or(0);
    assert!(used >= size.0, "vram_bytes_used {used} < {}: {body}", size.0);
    assert_eq!((&body["status"], &body["resident"]), (&"healthy".into(), &true.into()), "{body}");
    Ok(())
}

#[given(regex = r#"^/health answers (\d{3}) with status "(\w+)"$"#)]
fn given_status(world: &mut VramWorld, status: u16, label: String) {
    then_status(world, status, label);
}

#[then(regex = r#"^/health answers (\d{3}) with status "(\w+)"$"#)]
fn then_status(world: &mut VramWorld, status: u16, label: String) {
    poll(world, "/health", &format!("{status} {label}"), |r| r.status == status && json(r)["status"] == label.as_str());
}

#[then(regex = r"^(/health(?:/ready|/live)?) answers (\d{3})$")]
fn answers(world: &mut VramWorld, path: String, status: u16) {
    poll(world, &path, &status.to_string(), |r| r.status == status);
}

#[then(regex = r#"^/health answers 503 naming the violation "([^"]+)" in (\w+) memory$"#)]
fn names_violation(world: &mut VramWorld, name: String, kind: String) {
    let response = poll(world, "/health", "503 with the violation", |r| r.status == 503);
    let body = json(&response);
    let violations = body["violations"].as_array().cloned().unwrap_or_default();
    let named = violations.iter().any(|v| v["description"] == name.as_str() && v["kind"] == kind.as_str());
    assert!(named, "{name:?} ({kind}) not among the violations: {body}");
    assert_eq!((&body["status"], &body["resident"]), (&"unhealthy".into(), &false.into()), "{body}");
}

#[then(
    regex = r#"^/health answers 503 with status "unhealthy" and last_error VRAM-E001 if the host has no usable GPU, else VRAM-E010$"#
)]
fn unhealthy_with_error(world: &mut VramWorld) {
    let response = poll(world, "/health", "503 unhealthy", |r| r.status == 503 && json(r)["status"] == "unhealthy");
    let body = json(&response);
    assert_eq!(body["last_error"]["code"], expected_code(), "{body}");
    assert_eq!((&body["resident"], &body["vram_bytes_used"]), (&false.into(), &0.into()), "{body}");
    assert!(body["last_error"]["remediation"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
}
