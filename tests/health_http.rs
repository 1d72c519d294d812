//! The health service end to end, with or without a GPU: the product computes the report (a check
//! that cannot run — no driver, or no such device) and the endpoint serves it over loopback.
#[path = "support/http_client.rs"]
mod http_client;

use std::sync::Arc;
use std::time::Duration;

use vramguard::health::{HealthConfig, HealthMonitor};
use vramguard::server::{HealthServer, ServerConfig};
use vramguard::slots::{Embedder, ModelSlotManager, MODEL_SIZES};
use vramguard::Tracker;

/// No host has this many GPUs: VRAM-E001 without a driver, VRAM-E010 with one.
const UNUSABLE_DEVICE: u32 = 63;

fn serve(monitor: &Arc<HealthMonitor>) -> HealthServer {
    let config = ServerConfig { port: 0, ..ServerConfig::default() };
    HealthServer::start(config, monitor.clone()).unwrap()
}

#[test]
fn a_failed_check_is_served_as_503_with_its_error() {
    let slots = ModelSlotManager::<Embedder>::new();
    for (embedder, bytes) in MODEL_SIZES {
        slots.allocate_slot(embedder, bytes).unwrap();
    }
    let tracker = Tracker::new(UNUSABLE_DEVICE).unwrap();
    let monitor = Arc::new(HealthMonitor::new(tracker, HealthConfig::default()).unwrap().with_slots(Arc::new(slots)));
    let server = serve(&monitor);
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());

    // Before any check: starting, not ready, but alive.
    let health = http_client::get(addr, "/health");
    assert_eq!((health.status, health.json()["status"].as_str()), (503, Some("starting")));
    assert_eq!(http_client::get(addr, "/health/live").status, 200);

    monitor.check_now();
    let health = http_client::get(addr, "/health");
    assert_eq!(health.status, 503);
    let body = health.json();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["resident"], false);
    let code = &body["last_error"]["code"];
    assert!(code == "VRAM-E001" || code == "VRAM-E010", "{code}");
    assert_eq!(body["vram_bytes_used"], 0);
    assert!(body["last_check_secs"].as_f64().is_some());
    assert_eq!(body["budget"]["allocated_bytes"], 1_600_000_000u64);
    assert_eq!(body["slots"].as_array().unwrap().len(), 13);
    assert_eq!(body["device"]["process_bytes"], serde_json::Value::Null);

    let ready = http_client::get(addr, "/health/ready");
    assert_eq!((ready.status, ready.json()["ready"].as_bool()), (503, Some(false)));
    assert_eq!(http_client::get(addr, "/health/live").status, 200);

    let metrics = http_client::get(addr, "/metrics").text();
    for line in [
        "vramguard_residency_checks_total{result=\"failed\"} 1",
        "vramguard_resident 0",
        "vramguard_healthy 0",
        "vramguard_budget_allocated_bytes 1600000000",
        "vramguard_loaded_slots 13",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line:?} missing from\n{metrics}");
    }
    assert!(!metrics.contains("vramguard_process_vram_bytes "), "unknown process VRAM must not be a number");
    assert_eq!(http_client::get(addr, "/nope").status, 404);
    assert_eq!(http_client::request(addr, "POST", "/health").status, 405);
}

#[test]
fn background_checks_update_what_is_served() {
    let config = HealthConfig { interval: Duration::from_millis(10), ..HealthConfig::default() };
    let monitor = Arc::new(HealthMonitor::new(Tracker::new(UNUSABLE_DEVICE).unwrap(), config).unwrap());
    let _checks = monitor.start().unwrap();
    let server = serve(&monitor);
    let mut failed = 0;
    for _ in 0..500 {
        failed =
            http_client::get(server.local_addr(), "/health").json()["counters"]["checks_failed"].as_u64().unwrap_or(0);
        if failed >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(failed >= 2, "the served report did not follow the checks ({failed})");
}
