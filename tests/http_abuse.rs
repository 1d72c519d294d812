//! R1 over real loopback sockets, CPU only: liveness and health stay reachable while idle
//! clients, clients that hold half a request, and keep-alive scrapers hold the endpoint at
//! once, and a client that never reads its answers is let go; descriptors exhausted by the rest
//! of the process cost the server none of its connections. Behaviour only (every probe
//! answered, and answered right); `benches/http_abuse.rs` measures the latencies, with ten
//! times the connections.
#[path = "support/http_client.rs"]
mod http_client;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_client::{connect, get, parse_one, raise_fd_limit, Abuse, Connection};
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

/// Set in the child process that runs [`descriptors_exhausted_elsewhere_keep_the_servers_connections`]
/// under a low limit on open files; the parent only starts it and reads its verdict.
const DESCRIPTOR_CHILD: &str = "VRAMGUARD_TEST_DESCRIPTOR_CHILD";
/// The child's limit on open files: low enough to exhaust in a moment, far above what the
/// server's own connections hold.
const CHILD_DESCRIPTOR_LIMIT: libc::rlim_t = 64;

/// The server is a library inside an inference worker: when the rest of the process takes
/// every descriptor, accept fails with EMFILE, and the server must wait for descriptors rather
/// than close its own healthy connections to make room. Runs in a child process, whose limit
/// on open files can be lowered without touching the other tests.
#[test]
fn descriptors_exhausted_elsewhere_keep_the_servers_connections() {
    if std::env::var_os(DESCRIPTOR_CHILD).is_some() {
        exhaust_descriptors_elsewhere();
        return;
    }
    let name = "descriptors_exhausted_elsewhere_keep_the_servers_connections";
    let child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(DESCRIPTOR_CHILD, "1")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    eprintln!("child stdout:\n{stdout}\nchild stderr:\n{stderr}");
    assert!(
        child.status.success(),
        "the child under a limit of {CHILD_DESCRIPTOR_LIMIT} files failed: {}",
        child.status
    );
    assert!(stdout.contains("1 passed"), "the child ran no test");
    assert!(stderr.contains("accept failed"), "the server never ran out of descriptors: the test proved nothing");
}

/// The child's part: a kept-alive connection is served, the process runs out of descriptors
/// with a client waiting to be accepted, and the kept connection is still served afterwards;
/// once descriptors are given back, the waiting client and a new one are served too.
fn exhaust_descriptors_elsewhere() {
    // The server's warnings, for the parent to see that accept did fail.
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    set_descriptor_limit(CHILD_DESCRIPTOR_LIMIT);
    let server = start(ServerConfig::default());
    let addr = server.local_addr();
    let mut kept = Connection::open(addr).expect("connects");
    let mut ask_kept = |round: &str| {
        kept.send(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").expect("sends");
        let response = kept.read_response(false).unwrap_or_else(|e| panic!("kept-alive connection, {round}: {e}"));
        assert_eq!(response.status, 200, "kept-alive connection, {round}");
    };
    ask_kept("before the descriptors run out");

    // Another part of the process takes every descriptor left...
    let mut hogged = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hogged.push(file),
            Err(e) => break e,
        }
    };
    assert_eq!(exhausted.raw_os_error(), Some(libc::EMFILE), "{exhausted}");
    // ...but one, taken back at once by a client whose connection the kernel queues and the
    // server cannot accept (EMFILE) until descriptors are given back.
    drop(hogged.pop());
    let mut queued = connect(addr).expect("the kernel completes the handshake");
    queued.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("sends");
    // Thirty times the server's first retry delay: room for it to fail to accept many times.
    std::thread::sleep(Duration::from_millis(300));
    ask_kept("while the process is out of descriptors");

    drop(hogged);
    let waited = http_client::parse_response(&http_client::read_until_closed(&mut queued), false)
        .expect("the queued client is answered once descriptors are back");
    assert_eq!(waited.status, 200, "the queued client");
    assert_eq!(get(addr, "/health/live").status, 200, "a new client once descriptors are back");
    ask_kept("after descriptors are back");
}

/// Lowers this process's soft limit on open files to `limit`.
fn set_descriptor_limit(limit: libc::rlim_t) {
    let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `current` is a valid, writable rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) }, 0, "getrlimit");
    let lowered = libc::rlimit { rlim_cur: limit.min(current.rlim_max), rlim_max: current.rlim_max };
    // SAFETY: `lowered` is a valid rlimit; lowering the soft limit needs no privilege.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
    assert_eq!(set, 0, "setrlimit: {}", std::io::Error::last_os_error());
}
