//! Bad input at the HTTP endpoint over loopback (issue "Behaviour specs and hardening", part 2),
//! beyond what `tests/http.rs` covers: methods other than GET/HEAD it does not try, path tricks
//! (traversal, percent-encoding, absolute form), many small headers, framing attacks
//! (Content-Length at and past the limit, conflicting or invalid; any Transfer-Encoding; what
//! follows a refusal on the same connection), protocols that are not HTTP/1.x, empty lines,
//! slow drips past the timeout, half-closed and vanishing clients.
//!
//! The source is the product's own `HealthMonitor` on device 63, which no host has: its one
//! check fails on any host (VRAM-E001 or VRAM-E010), so `/health` is 503 with
//! `checks_failed: 1`. After each bad input a normal client still gets 200 from `/health/live`
//! and the same `/health` as before: a request can change neither the report nor the server.
#[path = "support/http_client.rs"]
mod http_client;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use http_client::{
    closed_by_server, connect, get, parse_one, parse_response, read_until_closed, request, send_raw, Connection,
};
use vramguard::health::{HealthConfig, HealthMonitor};
use vramguard::server::{HealthServer, ServerConfig};
use vramguard::Tracker;

/// No host has this many GPUs.
const UNUSABLE_DEVICE: u32 = 63;

/// Short enough that deadline tests finish quickly, long enough for any loopback request.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// A deadline test fails if the server takes this long to give up on a client.
const CUT_OFF_WITHIN: Duration = Duration::from_secs(8);

const ROUTES: [&str; 4] = ["/health", "/health/live", "/health/ready", "/metrics"];

/// The server, the monitor behind it, and `/health`'s body after the one check.
struct Endpoint {
    server: HealthServer,
    _monitor: Arc<HealthMonitor>,
    baseline: serde_json::Value,
}

fn endpoint() -> Endpoint {
    endpoint_with(ServerConfig { port: 0, request_timeout: REQUEST_TIMEOUT, ..ServerConfig::default() })
}

fn endpoint_with(config: ServerConfig) -> Endpoint {
    let monitor =
        Arc::new(HealthMonitor::new(Tracker::new(UNUSABLE_DEVICE).unwrap(), HealthConfig::default()).unwrap());
    monitor.check_now();
    let server = HealthServer::start(config, monitor.clone()).unwrap();
    let health = get(server.local_addr(), "/health");
    assert_eq!(health.status, 503, "a check on device 63 fails");
    let baseline = health.json();
    assert_eq!(baseline["counters"]["checks_failed"], 1);
    Endpoint { server, _monitor: monitor, baseline }
}

/// What of `/health` a request must never change (the age of the check moves by itself).
fn stable(body: &serde_json::Value) -> serde_json::Value {
    let mut body = body.clone();
    body.as_object_mut().unwrap().remove("last_check_secs");
    body
}

impl Endpoint {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A normal client is still served, and the report is what it was.
    fn assert_unchanged(&self, after: &str) {
        let live = get(self.addr(), "/health/live");
        assert_eq!(live.status, 200, "after {after}: /health/live");
        let health = get(self.addr(), "/health");
        assert_eq!(health.status, 503, "after {after}: /health");
        assert_eq!(stable(&health.json()), stable(&self.baseline), "after {after}: /health changed");
    }

    /// Sends `bytes`, half-closes, and returns the status of the one response, or None when the
    /// server closed without a word. Panics on a second response: after a refusal or a close
    /// nothing that followed may be served.
    fn one_answer(&self, bytes: &[u8]) -> Option<u16> {
        let raw = send_raw(self.addr(), bytes).unwrap();
        if raw.is_empty() {
            return None;
        }
        let (response, used) = parse_one(&raw, false).unwrap_or_else(|| panic!("{bytes:?}: not HTTP: {raw:?}"));
        assert!(raw[used..].is_empty(), "{bytes:?}: more than one response: {:?}", String::from_utf8_lossy(&raw));
        Some(response.status)
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned()
}

// --- methods ---------------------------------------------------------------------------------

/// `tests/http.rs` tries POST, PUT, DELETE, PATCH and OPTIONS; these are the rest: the other
/// standard methods, WebDAV's, made-up tokens, and GET and HEAD in the wrong case (methods are
/// case-sensitive, RFC 9110 §9.1).
#[test]
fn every_other_method_is_405_with_allow_get_head_on_every_route() {
    let e = endpoint();
    for path in ROUTES {
        for method in ["CONNECT", "TRACE", "PROPFIND", "MKCOL", "LOCK", "BREW", "X-PURGE", "get", "Head"] {
            let response = request(e.addr(), method, path);
            assert_eq!(response.status, 405, "{method} {path}");
            assert_eq!(response.header("Allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
    e.assert_unchanged("other methods");
}

#[test]
fn an_unknown_path_is_404_whatever_the_method() {
    let e = endpoint();
    for method in ["GET", "HEAD", "POST", "TRACE", "BREW"] {
        let raw = send_raw(e.addr(), format!("{method} /nope HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        assert_eq!(parse_response(&raw, method == "HEAD").unwrap().status, 404, "{method}");
    }
    e.assert_unchanged("unknown paths");
}

// --- paths -----------------------------------------------------------------------------------

#[test]
fn traversal_and_dot_segments_are_not_resolved_to_a_route() {
    let e = endpoint();
    for path in [
        "/../health",
        "/health/../health",
        "/./health",
        "//health",
        "/health/./live",
        "/metrics/..",
        "/health/live/../../metrics",
        "/../../../../etc/passwd",
        "/health\\..\\metrics",
    ] {
        assert_eq!(get(e.addr(), path).status, 404, "{path}");
    }
    e.assert_unchanged("traversal");
}

#[test]
fn percent_encoded_paths_are_not_decoded_to_a_route() {
    let e = endpoint();
    for path in [
        "/%68ealth",
        "/health%2Flive",
        "/health%2flive",
        "/%2e%2e/health",
        "/health%00",
        "/health%20",
        "/health%",
        "/health%zz",
        "/%2Fhealth",
    ] {
        assert_eq!(get(e.addr(), path).status, 404, "{path}");
    }
    e.assert_unchanged("percent-encoding");
}

#[test]
fn a_fragment_or_a_hostile_query_stays_on_its_route() {
    let e = endpoint();
    assert_eq!(get(e.addr(), "/health/live#/metrics").status, 200);
    assert_eq!(get(e.addr(), "/health/live?path=/../../etc/passwd&x=%00").status, 200);
    assert_eq!(get(e.addr(), "/nope?/health").status, 404);
    e.assert_unchanged("fragments and queries");
}

/// Whatever the server makes of absolute-form and asterisk-form targets, it answers with a 4xx
/// at most, and never a route other than the one named.
#[test]
fn absolute_and_asterisk_form_targets_are_answered_safely() {
    let e = endpoint();
    let targets = ["http://127.0.0.1/nope", "http://evil.example/../metrics", "https://x/health/../metrics", "*"];
    for target in targets {
        for method in ["GET", "OPTIONS"] {
            let status = e.one_answer(format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            assert!(status.is_some_and(|s| (400..500).contains(&s)), "{method} {target}: {status:?}");
        }
    }
    e.assert_unchanged("absolute-form targets");
}

/// RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests".
#[test]
fn absolute_form_targets_are_routed_by_their_path() {
    let e = endpoint();
    assert_eq!(get(e.addr(), &format!("http://{}/health/live", e.addr())).status, 200);
    assert_eq!(get(e.addr(), "HTTP://localhost/health/live?x=1").status, 200);
    assert_eq!(get(e.addr(), &format!("http://{}/health", e.addr())).status, 503);
}

#[test]
fn a_long_path_within_the_limit_is_404_and_a_long_query_on_a_route_is_414() {
    let e = endpoint();
    assert_eq!(get(e.addr(), &format!("/{}", "x".repeat(7_000))).status, 404, "fits in 8 KiB: an unknown path");
    let long = format!("GET /health?{} HTTP/1.1\r\n\r\n", "q".repeat(9_000));
    assert_eq!(e.one_answer(long.as_bytes()), Some(414), "over 8 KiB on a real route");
    e.assert_unchanged("long targets");
}

// --- headers and bodies ----------------------------------------------------------------------

/// `tests/http.rs` floods one header; this sends thousands of small ones.
#[test]
fn many_small_headers_are_431() {
    let e = endpoint();
    let headers: String = (0..3_000).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = format!("GET /health HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    assert_eq!(e.one_answer(raw.as_bytes()), Some(431));
    e.assert_unchanged("a header flood");
}

/// The limit counts head and body together: a body that brings the request to exactly
/// `max_request_bytes` is read and skipped; one byte more is 413 before a byte of it is read.
#[test]
fn content_length_up_to_the_limit_is_served_and_one_byte_more_is_413() {
    let max = 1024;
    let e = endpoint_with(ServerConfig {
        port: 0,
        max_request_bytes: max,
        request_timeout: REQUEST_TIMEOUT,
        ..ServerConfig::default()
    });
    let head = |length: usize| format!("GET /health HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
    let exact = (900..max).find(|&n| head(n).len() + n == max).unwrap();
    let fits = [head(exact).into_bytes(), vec![b'b'; exact]].concat();
    assert_eq!(e.one_answer(&fits), Some(503), "exactly at the limit: served");
    // The body of the one-byte-larger request is never sent: the answer cannot wait for it.
    let mut over = connect(e.addr()).unwrap();
    over.write_all(head(exact + 1).as_bytes()).unwrap();
    let raw = read_until_closed(&mut over);
    assert_eq!(parse_response(&raw, false).map(|r| r.status), Some(413), "{:?}", show(&raw));
    e.assert_unchanged("content lengths at the limit");
}

#[test]
fn an_oversized_body_expecting_100_continue_is_413_without_continue() {
    let e = endpoint();
    let mut stream = connect(e.addr()).unwrap();
    stream
        .write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let raw = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(!text.contains("100 Continue"), "invited a body it will refuse: {text}");
    e.assert_unchanged("Expect: 100-continue");
}

#[test]
fn conflicting_content_lengths_are_400() {
    let e = endpoint();
    for lengths in [
        "Content-Length: 4\r\nContent-Length: 5",
        "content-length: 0\r\nCONTENT-LENGTH: 1",
        "Content-Length: 4\r\nContent-Length: 04x",
    ] {
        let raw = format!("POST /health HTTP/1.1\r\nHost: x\r\n{lengths}\r\n\r\nbodyb");
        assert_eq!(e.one_answer(raw.as_bytes()), Some(400), "{lengths:?}");
    }
    e.assert_unchanged("conflicting Content-Length");
}

#[test]
fn invalid_content_length_values_are_400() {
    let e = endpoint();
    for value in ["abc", "-1", "+4", "0x10", "4.0", "4 4", "1e3", "", "18446744073709551616"] {
        let raw = format!("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\nbody");
        assert_eq!(e.one_answer(raw.as_bytes()), Some(400), "Content-Length: {value:?}");
    }
    e.assert_unchanged("invalid Content-Length");
}

/// `tests/http.rs` tries `Transfer-Encoding: chunked` alone; any coding, in any case, with or
/// without a Content-Length, is refused and nothing after it is read as a request
/// (`one_answer`). Codings that end in `chunked` are 411 (send a Content-Length instead); hyper
/// answers the others 400 before any layer sees them, as RFC 9112 §6.3 requires ("If a
/// Transfer-Encoding header field is present in a request and the chunked transfer coding is
/// not the final encoding, ... the server MUST respond with the 400 (Bad Request) status code
/// and then close the connection").
#[test]
fn any_transfer_encoding_is_411_even_beside_a_content_length() {
    let e = endpoint();
    for (framing, status) in [
        ("Transfer-Encoding: chunked\r\nContent-Length: 4", 411),
        ("Content-Length: 4\r\nTransfer-Encoding: chunked", 411),
        ("transfer-encoding: CHUNKED", 411),
        ("Transfer-Encoding: gzip, chunked", 411),
        ("Transfer-Encoding: identity", 400),
        ("Transfer-Encoding: chunked, gzip", 400),
        ("Transfer-Encoding:", 400),
    ] {
        let raw = format!("POST /health HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n0\r\n\r\n");
        assert_eq!(e.one_answer(raw.as_bytes()), Some(status), "{framing:?}");
    }
    e.assert_unchanged("Transfer-Encoding");
}

/// Request smuggling: after a request whose framing is refused, what follows on the connection
/// is never read as another request (`one_answer` fails on a second response).
#[test]
fn nothing_after_a_refused_request_is_served() {
    let e = endpoint();
    let smuggled = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    for (framing, status) in [
        ("Content-Length: 4\r\nTransfer-Encoding: chunked", 411),
        ("Content-Length: 0\r\nContent-Length: 40", 400),
        ("Content-Length: nope", 400),
        ("Content-Length: 999999", 413),
    ] {
        let raw = format!("POST /health HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n{smuggled}");
        assert_eq!(e.one_answer(raw.as_bytes()), Some(status), "{framing:?}");
    }
    e.assert_unchanged("smuggling attempts");
}

// --- not HTTP/1.x ----------------------------------------------------------------------------

#[test]
fn an_http2_preface_is_refused_or_closed() {
    let e = endpoint();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00";
    let status = e.one_answer(preface);
    assert!(status.map_or(true, |s| s == 400 || s == 505), "{status:?}");
    e.assert_unchanged("an HTTP/2 preface");
}

/// `tests/http.rs` sends a TLS ClientHello and a few malformed lines; these are the bytes it
/// does not try: NUL, DEL and 8-bit bytes in each part, tabs for spaces, bare CR line ends.
#[test]
fn invalid_bytes_are_400_or_closed() {
    let e = endpoint();
    let inputs: [&[u8]; 12] = [
        b"GET /health\x00 HTTP/1.1\r\n\r\n",
        b"GET /hea\x7fth HTTP/1.1\r\n\r\n",
        b"GET /h\xc3\xa9alth HTTP/1.1\r\n\r\n",
        b"G\x00T /health HTTP/1.1\r\n\r\n",
        b"GET\t/health\tHTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
        b"GET /health HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nX\x00Y: a\r\n\r\n",
        b"GET /health HTTP/1.1\r\n: no name\r\n\r\n",
        b"GET /health HTTP/1.1\rHost: x\r\r",
        b"\x80\x81\x82\x83\r\n\r\n",
        b"\x16\x03\x03\x00\x05\x01\x00\x00\x01\x00", // TLS 1.2 record header, then half-close
    ];
    for bytes in inputs {
        let status = e.one_answer(bytes);
        assert!(status.map_or(true, |s| s == 400), "{:?}: {status:?}", show(bytes));
    }
    e.assert_unchanged("invalid bytes");
}

#[test]
fn empty_lines_only_get_no_answer() {
    let e = endpoint();
    for bytes in [&b"\r\n"[..], b"\r\n\r\n\r\n\r\n", b"\n\n\n", &b"\r\n".repeat(100_000)] {
        assert_eq!(e.one_answer(bytes), None, "{} bytes of empty lines", bytes.len());
    }
    e.assert_unchanged("empty lines");
}

// --- time ------------------------------------------------------------------------------------

/// Writes `first`, then `drip` one byte at a time every 50 ms until the server gives up (or the
/// test stops it); returns the server's answer and how long it took to come.
fn drip(addr: SocketAddr, first: &[u8], drip: u8) -> (Vec<u8>, Duration) {
    let mut stream = connect(addr).unwrap();
    stream.write_all(first).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let dripper = thread::spawn(move || {
        while !stopped.load(Ordering::SeqCst) && writer.write_all(&[drip]).is_ok() {
            thread::sleep(Duration::from_millis(50));
        }
    });
    let started = Instant::now();
    let raw = read_until_closed(&mut stream);
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    dripper.join().unwrap();
    (raw, took)
}

#[test]
fn a_header_dripped_past_the_timeout_is_408_or_closed() {
    let e = endpoint();
    let (raw, took) = drip(e.addr(), b"GET /health HTTP/1.1\r\nX-Slow: ", b'a');
    assert!(took < CUT_OFF_WITHIN, "the server waited {took:?} for a dripping header");
    if !raw.is_empty() {
        assert_eq!(parse_response(&raw, false).map(|r| r.status), Some(408), "{:?}", show(&raw));
    }
    e.assert_unchanged("a dripping header");
}

#[test]
fn a_body_dripped_past_the_timeout_is_408_or_closed() {
    let e = endpoint();
    let (raw, took) = drip(e.addr(), b"POST /health HTTP/1.1\r\nContent-Length: 4000\r\n\r\n", b'b');
    assert!(took < CUT_OFF_WITHIN, "the server waited {took:?} for a dripping body");
    if !raw.is_empty() {
        assert_eq!(parse_response(&raw, false).map(|r| r.status), Some(408), "{:?}", show(&raw));
    }
    e.assert_unchanged("a dripping body");
}

/// Empty lines before a request are allowed (RFC 9112 §2.2), but not for ever: the request's
/// deadline still runs.
#[test]
fn a_stream_of_empty_lines_is_cut_off_at_the_timeout() {
    let e = endpoint();
    let (raw, took) = drip(e.addr(), b"\r\n", b'\n');
    assert!(took < CUT_OFF_WITHIN, "the server listened to empty lines for {took:?}");
    assert!(raw.is_empty(), "answered nothing with {:?}", show(&raw));
    e.assert_unchanged("a stream of empty lines");
}

// --- half-closed and vanishing clients -------------------------------------------------------

#[test]
fn a_client_that_half_closes_after_its_requests_gets_every_answer() {
    let e = endpoint();
    let mut connection = Connection::open(e.addr()).unwrap();
    connection.send(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    connection.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(connection.read_response(false).unwrap().status, 200);
    assert_eq!(connection.read_response(false).unwrap().status, 503);
    assert!(closed_by_server(connection.stream()), "the server kept a half-closed connection open");
    e.assert_unchanged("a half-close after requests");
}

#[test]
fn a_body_cut_short_by_a_half_close_is_400() {
    let e = endpoint();
    assert_eq!(e.one_answer(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"), Some(400));
    assert_eq!(e.one_answer(b"GET /health HTTP/1.1\r\nHost: x\r\n"), Some(400), "a head cut short");
    e.assert_unchanged("a half-close mid-request");
}

/// Clients that send many requests and vanish without reading (reset or closed) cost the
/// server a failed write each, nothing more.
#[test]
fn clients_that_vanish_without_reading_do_not_hurt_the_server() {
    let e = endpoint();
    let pipelined = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    for round in 0..20 {
        let mut stream = connect(e.addr()).unwrap();
        let _ = stream.write_all(pipelined.as_bytes());
        if round % 2 == 0 {
            let _ = stream.shutdown(Shutdown::Both);
        }
        drop(stream);
    }
    let mut reader = connect(e.addr()).unwrap();
    reader.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 503");
    drop(reader); // vanishes mid-response
    e.assert_unchanged("vanishing clients");
}
