//! R1 over real loopback sockets, CPU only: liveness and health stay reachable while idle
//! clients, clients that hold half a request, and keep-alive scrapers hold the endpoint at
//! once. Behaviour only (every probe answered, and answered right); `benches/http_abuse.rs`
//! measures the latencies, with ten times the connections.
#[path = "support/http_client.rs"]
mod http_client;

use std::sync::Arc;
use std::time::Duration;

use http_client::{get, raise_fd_limit, Abuse};
use vramguard::health::{DeviceReport, HealthReport, HealthSource, HealthStatus};
use vramguard::server::{HealthServer, ServerConfig};

const IDLE: usize = 300;
const PARTIAL: usize = 100;
const SCRAPERS: usize = 8;

struct Healthy;

impl HealthSource for Healthy {
    fn report(&self) -> HealthReport {
        HealthReport {
            status: HealthStatus::Healthy,
            resident: true,
            ..HealthReport::starting(DeviceReport::default())
        }
    }
}

fn start(config: ServerConfig) -> HealthServer {
    HealthServer::start(ServerConfig { port: 0, ..config }, Arc::new(Healthy)).expect("server starts")
}

/// Both ends of every connection live in this process.
fn enough_files(connections: usize) {
    let limit = raise_fd_limit();
    assert!(
        limit as usize > 2 * connections + 64,
        "RLIMIT_NOFILE is {limit}: too low for {connections} connections at both ends"
    );
}

/// The probes Kubernetes sends, each on a fresh connection, all answered.
fn probe(server: &HealthServer, rounds: usize) {
    for round in 0..rounds {
        let live = get(server.local_addr(), "/health/live");
        assert_eq!((live.status, live.json()["status"].as_str()), (200, Some("alive")), "round {round}");
        let health = get(server.local_addr(), "/health");
        assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("healthy")), "round {round}");
    }
}

#[test]
fn probes_are_answered_while_idle_partial_and_keep_alive_clients_hold_the_endpoint() {
    enough_files(IDLE + PARTIAL + SCRAPERS);
    // Long enough that no abusive connection times out during the test: they are all held.
    let server = start(ServerConfig { request_timeout: Duration::from_secs(600), ..ServerConfig::default() });
    let abuse = Abuse::start(server.local_addr(), IDLE, PARTIAL, SCRAPERS);
    assert!(abuse.wait_established(IDLE + PARTIAL, SCRAPERS as u64), "the abusive clients could not all connect");
    probe(&server, 20);
    let held = abuse.held.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(held, IDLE + PARTIAL, "the server dropped abusive connections it had room for");
    let (scrapes, failed) = abuse.stop();
    assert!(scrapes >= SCRAPERS as u64 && failed == 0, "scrapers: {scrapes} answered, {failed} not");
    // And the endpoint is as it was once they leave.
    probe(&server, 2);
}

#[test]
fn probes_are_answered_when_abusive_clients_fill_every_connection() {
    // Fewer connections allowed than the abusers hold, with the default timeout: the bound
    // makes room for each probe, and the timeouts cut the rest as they come back.
    enough_files(IDLE + PARTIAL + SCRAPERS);
    let server = start(ServerConfig { max_connections: 128, ..ServerConfig::default() });
    let abuse = Abuse::start(server.local_addr(), IDLE, PARTIAL, SCRAPERS);
    assert!(abuse.wait_established(0, SCRAPERS as u64), "the scrapers were never answered");
    std::thread::sleep(Duration::from_millis(500));
    probe(&server, 20);
    let (scrapes, _evicted) = abuse.stop();
    assert!(scrapes >= SCRAPERS as u64);
    probe(&server, 2);
}
