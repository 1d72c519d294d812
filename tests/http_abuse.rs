//! R1 over real loopback sockets, CPU only: liveness and health stay reachable while idle
//! clients, clients that hold half a request, and keep-alive scrapers hold the endpoint at
//! once, and a client that never reads its answers is let go. Behaviour only (every probe
//! answered, and answered right); `benches/http_abuse.rs` measures the latencies, with ten
//! times the connections.
#[path = "support/http_client.rs"]
mod http_client;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_client::{connect, get, parse_one, raise_fd_limit, Abuse};
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

/// What a client that stops reading can receive at most is what the socket buffers between it
/// and the server hold; a small receive buffer keeps that well below what it asks for.
const NEVER_READ_RECEIVE_BUFFER: libc::c_int = 64 * 1024;
/// Asked back to back, never read: at a kilobyte or more each, the answers are many times what
/// the buffers hold (64 KiB here, at most 4 MiB of server send buffer by default on Linux).
const NEVER_READ_REQUESTS: usize = 30_000;

/// Caps the kernel's receive buffer for `stream` (and so stops it from growing).
fn set_receive_buffer(stream: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is the socket `stream` owns, open for the whole call, and the option
    // value is a valid c_int of the length given.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// Responses read from `stream` until the server closes it or `deadline`: (answered 200,
/// answered otherwise, whether the server closed the connection).
fn count_responses(stream: &mut TcpStream, deadline: Instant) -> (usize, usize, bool) {
    let (mut ok, mut other) = (0, 0);
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let closed = loop {
        if Instant::now() >= deadline {
            break false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
        let mut used = 0;
        while let Some((response, length)) = parse_one(&pending[used..], false) {
            if response.status == 200 {
                ok += 1
            } else {
                other += 1
            }
            used += length;
        }
        pending.drain(..used);
    };
    (ok, other, closed)
}

/// A client that pipelines requests and never reads the answers: once the server's writes
/// have made no progress for `request_timeout` it is closed, with most requests unanswered,
/// instead of being held (with its buffers) until the client reads or the bound evicts it.
#[test]
fn a_client_that_never_reads_its_answers_is_closed_after_the_timeout() {
    let timeout = Duration::from_millis(400);
    let server = start(ServerConfig { request_timeout: timeout, ..ServerConfig::default() });
    let mut stream = connect(server.local_addr()).expect("connects");
    set_receive_buffer(&stream, NEVER_READ_RECEIVE_BUFFER);
    let requests = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(NEVER_READ_REQUESTS);
    let mut writing = stream.try_clone().expect("clones");
    // Blocks once the buffers are full; fails (broken pipe, reset) once the server gives up.
    let writer = std::thread::spawn(move || {
        let _ = writing.write_all(&requests);
    });
    // Past the timeout with margin: a server slow to be scheduled still sees the stall whole.
    std::thread::sleep(5 * timeout);
    let started = Instant::now();
    let (ok, other, closed) = count_responses(&mut stream, started + Duration::from_secs(120));
    eprintln!(
        "{ok} answered 200 and {other} otherwise of {NEVER_READ_REQUESTS} pipelined requests, read in {:?}; closed: {closed}",
        started.elapsed()
    );
    let _ = writer.join();
    assert!(closed, "the connection was neither closed nor answered within the deadline");
    assert!(
        ok + other < NEVER_READ_REQUESTS / 4,
        "the server held a connection that read nothing for {:?}: {ok} of {NEVER_READ_REQUESTS} requests answered",
        5 * timeout
    );
    let live = get(server.local_addr(), "/health/live");
    assert_eq!(live.status, 200, "a fresh probe after the stalled client");
}
