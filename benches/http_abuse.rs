//! R1: how fast a fresh client's probe is answered, idle and under abuse, and what 10,000
//! concurrent connections cost. CPU only; prints a markdown table.
//!
//! `cargo bench --bench http_abuse` serves a fixed healthy report with the default
//! `ServerConfig` (5 s request timeout, 4096 connections) and measures, for `/health/live` and
//! `/health`, the latency of `PROBES` requests each on a new connection (connect, request,
//! whole answer, close), first on an idle server, then while 1,000 idle connections, 200
//! clients holding half a request and 8 keep-alive scrapers asking `/metrics` back to back
//! hold it (the abusers reconnect whenever the server cuts them off). Then it opens 10,000
//! connections, reads this process's RSS before, with and after them, and probes meanwhile.
//! Client and server share the process (and, on a small machine, the cores): the client's own
//! work is in every figure.
#[path = "../tests/support/http_client.rs"]
mod http_client;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use http_client::{get, raise_fd_limit, Abuse, IO_TIMEOUT};
use vramguard::health::{DeviceReport, HealthReport, HealthSource, HealthStatus};
use vramguard::server::{HealthServer, ServerConfig};

const PROBES: usize = 500;
const IDLE: usize = 1_000;
const PARTIAL: usize = 200;
const SCRAPERS: usize = 8;
const FLOOD: usize = 10_000;
const TARGET_P99: Duration = Duration::from_millis(50);
const ROUTES: [&str; 2] = ["/health/live", "/health"];

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

/// p50, p99 and max of a set of latencies.
struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency { p50: at(0.50), p99: at(0.99), max: at(1.0) }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `count` probes of `path`, each on a fresh connection; panics on any answer but 200.
fn probe(addr: SocketAddr, path: &str, count: usize) -> Latency {
    let samples = (0..count)
        .map(|_| {
            let started = Instant::now();
            let status = get(addr, path).status;
            assert_eq!(status, 200, "{path}");
            started.elapsed()
        })
        .collect();
    Latency::of(samples)
}

/// This process's resident set, from /proc/self/status.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

/// Opens `count` connections from 8 threads at once; returns those that connected.
fn flood(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let share = count / 8 + usize::from(i < count % 8);
            thread::spawn(move || {
                (0..share).filter_map(|_| TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()).collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap_or_default()).collect()
}

/// How many of `streams` the server has closed.
fn closed(streams: &[TcpStream]) -> usize {
    streams
        .iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut byte = [0u8; 1];
            !matches!(s.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (probes, idle, partial, flood_size) = if quick { (20, 100, 20, 500) } else { (PROBES, IDLE, PARTIAL, FLOOD) };
    // The flood's client ends, and at most `max_connections` server ends, must fit.
    let files = raise_fd_limit() as usize;
    let flood_size = flood_size.min(files.saturating_sub(ServerConfig::default().max_connections + 256));

    let server = HealthServer::start(ServerConfig { port: 0, ..ServerConfig::default() }, Arc::new(Healthy))
        .expect("server starts");
    let addr = server.local_addr();
    let config = ServerConfig::default();
    let _warm = probe(addr, "/health", 20);

    let calm: Vec<Latency> = ROUTES.iter().map(|path| probe(addr, path, probes)).collect();

    let abuse = Abuse::start(addr, idle, partial, SCRAPERS);
    let established = abuse.wait_established(idle + partial, SCRAPERS as u64);
    let abused: Vec<Latency> = ROUTES.iter().map(|path| probe(addr, path, probes)).collect();
    let held = abuse.held.load(std::sync::atomic::Ordering::SeqCst);
    let (scrapes, failed) = abuse.stop();

    thread::sleep(Duration::from_millis(500));
    let before = rss_mib();
    let started = Instant::now();
    let streams = flood(addr, flood_size);
    let opened = started.elapsed();
    let during = probe(addr, "/health/live", probes / 5);
    let health_during = probe(addr, "/health", probes / 5);
    thread::sleep(Duration::from_millis(200));
    let with = rss_mib();
    let cut = closed(&streams);
    drop(streams);
    thread::sleep(Duration::from_secs(2));
    let after = rss_mib();
    let after_probe = probe(addr, "/health/live", 20);
    server.shutdown();

    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!("## HTTP endpoint under abuse (R1) — {cores} cores, server and clients in one process\n");
    println!(
        "Default `ServerConfig` ({} s request timeout, {} connections at most). Each probe: a new connection, `GET`, the whole answer, close; {probes} per route and load.",
        config.request_timeout.as_secs(),
        config.max_connections
    );
    println!(
        "Abuse: {idle} idle connections + {partial} holding half a request head (reopened whenever the server cuts them off) + {SCRAPERS} keep-alive scrapers asking `/metrics` back to back; {} held when measured{}, {scrapes} scrapes answered, {failed} not.\n",
        held,
        if established { "" } else { " (not all established)" }
    );
    println!("| Probe | idle p50 | idle p99 | idle max | abuse p50 | abuse p99 | abuse max | target p99 < 50 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for ((path, calm), abused) in ROUTES.iter().zip(&calm).zip(&abused) {
        let verdict = if calm.p99 < TARGET_P99 && abused.p99 < TARGET_P99 { "met" } else { "missed" };
        println!(
            "| `GET {path}` | {} | {} | {} | {} | {} | {} | {verdict} |",
            ms(calm.p50),
            ms(calm.p99),
            ms(calm.max),
            ms(abused.p50),
            ms(abused.p99),
            ms(abused.max)
        );
    }
    println!("\n| {flood_size} concurrent connections | RSS before | RSS with | RSS after | probes while held |");
    println!("|---|---|---|---|---|");
    println!(
        "| opened in {:.1} s; {} of them closed by the bound | {before:.1} MiB | {with:.1} MiB | {after:.1} MiB | all {} answered (`/health/live` p99 {}, `/health` p99 {}); after: p99 {} |",
        opened.as_secs_f64(),
        cut,
        2 * (probes / 5),
        ms(during.p99),
        ms(health_during.p99),
        ms(after_probe.p99),
    );
}
