//! `Service::start` (what `vramguard serve` runs) with a device no host has and with
//! configurations that cannot work.
use std::time::Duration;

use vramguard::health::HealthConfig;
use vramguard::server::ServerConfig;
use vramguard::service::{Service, ServiceConfig};

use super::{code, is_unusable_device, UNUSABLE_DEVICE};

fn on_unusable_device() -> ServiceConfig {
    ServiceConfig {
        device: UNUSABLE_DEVICE,
        server: ServerConfig { port: 0, ..ServerConfig::default() },
        ..ServiceConfig::default()
    }
}

#[test]
fn a_service_on_a_device_no_host_has_is_e001_or_e010() {
    let code = code(Service::start(on_unusable_device()));
    assert!(is_unusable_device(code), "{code}");
}

/// A configuration that can never work should be named as such (VRAM-E007) before the GPU is
/// opened and the whole workload allocated on it: today it is answered "no GPU" where there is
/// none, and on a GPU host only after 1.6 GB of slots were loaded and freed again.
#[test]
fn a_service_configuration_that_cannot_work_is_e007_before_the_device_is_touched() {
    let zero_interval = ServiceConfig {
        health: HealthConfig { interval: Duration::ZERO, ..HealthConfig::default() },
        ..on_unusable_device()
    };
    assert_eq!(code(Service::start(zero_interval)), "VRAM-E007", "health interval 0");
    let no_workers = ServiceConfig {
        server: ServerConfig { port: 0, max_connections: 0, ..ServerConfig::default() },
        ..on_unusable_device()
    };
    assert_eq!(code(Service::start(no_workers)), "VRAM-E007", "no HTTP workers");
}
