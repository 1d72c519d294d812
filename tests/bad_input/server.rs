//! `HealthServer::start` with a `ServerConfig` that cannot serve (no connections, no time or a
//! time that overflows a deadline, no room for a request line or room without bound) and with
//! an address it cannot bind. A refused start serves nothing and
//! leaves a server already on the port serving.
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use vramguard::health::{HealthConfig, HealthMonitor, HealthSource};
use vramguard::server::{HealthServer, ServerConfig};
use vramguard::Tracker;

use super::{code, UNUSABLE_DEVICE};

fn source() -> Arc<dyn HealthSource> {
    Arc::new(HealthMonitor::new(Tracker::new(UNUSABLE_DEVICE).unwrap(), HealthConfig::default()).unwrap())
}

fn config() -> ServerConfig {
    ServerConfig { port: 0, ..ServerConfig::default() }
}

#[test]
fn no_connections_is_e007() {
    assert_eq!(code(HealthServer::start(ServerConfig { max_connections: 0, ..config() }, source())), "VRAM-E007");
    let one = HealthServer::start(ServerConfig { max_connections: 1, ..config() }, source()).unwrap();
    one.shutdown();
}

#[test]
fn a_zero_request_timeout_is_e007() {
    assert_eq!(
        code(HealthServer::start(ServerConfig { request_timeout: Duration::ZERO, ..config() }, source())),
        "VRAM-E007"
    );
}

/// Deadlines are `now + request_timeout`: a timeout that would overflow one (or that is no
/// limit at all) is refused, not left to panic in a connection. An hour is the most.
#[test]
fn a_request_timeout_over_an_hour_is_e007() {
    for timeout in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(3600) + Duration::from_nanos(1),
        Duration::from_secs(86_400),
    ] {
        assert_eq!(
            code(HealthServer::start(ServerConfig { request_timeout: timeout, ..config() }, source())),
            "VRAM-E007",
            "{timeout:?}"
        );
    }
    let hour =
        HealthServer::start(ServerConfig { request_timeout: Duration::from_secs(3600), ..config() }, source()).unwrap();
    hour.shutdown();
}

/// A connection's read buffer grows with the limit: an unbounded one is refused. 1 MiB is the most.
#[test]
fn max_request_bytes_over_a_mebibyte_is_e007() {
    for max in [usize::MAX, usize::MAX / 4 + 1, (1 << 20) + 1] {
        assert_eq!(
            code(HealthServer::start(ServerConfig { max_request_bytes: max, ..config() }, source())),
            "VRAM-E007",
            "{max}"
        );
    }
    let largest = HealthServer::start(ServerConfig { max_request_bytes: 1 << 20, ..config() }, source()).unwrap();
    largest.shutdown();
}

/// The shortest request, "GET / HTTP/1.0\r\n\r\n", is 18 bytes: a smaller limit refuses all.
#[test]
fn max_request_bytes_below_18_is_e007() {
    for max in [0, 1, 17] {
        assert_eq!(
            code(HealthServer::start(ServerConfig { max_request_bytes: max, ..config() }, source())),
            "VRAM-E007",
            "{max}"
        );
    }
    let smallest = HealthServer::start(ServerConfig { max_request_bytes: 18, ..config() }, source()).unwrap();
    smallest.shutdown();
}

#[test]
fn binding_a_port_in_use_is_e017_and_the_first_server_keeps_serving() {
    let first = HealthServer::start(config(), source()).unwrap();
    let taken = ServerConfig { port: first.local_addr().port(), ..config() };
    let error = HealthServer::start(taken, source()).unwrap_err();
    assert_eq!(error.code(), "VRAM-E017");
    assert!(error.to_string().contains(&first.local_addr().to_string()), "{error}");
    let probe = std::net::TcpStream::connect_timeout(&first.local_addr(), Duration::from_secs(5));
    assert!(probe.is_ok(), "the first server stopped listening");
}

/// 192.0.2.1 is TEST-NET-1 (RFC 5737): no host has it, so bind fails with EADDRNOTAVAIL.
#[test]
fn binding_an_address_this_host_does_not_have_is_e017() {
    let elsewhere = ServerConfig { bind: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), ..config() };
    let error = HealthServer::start(elsewhere, source()).unwrap_err();
    assert_eq!(error.code(), "VRAM-E017");
    assert!(error.to_string().contains("192.0.2.1"), "{error}");
}
