//! A tiny HTTP/1.1 client over `std::net::TcpStream` for the endpoint's tests: send raw bytes,
//! read the response, split it into status line, headers and body. No dependencies, no
//! cleverness: what goes on the wire is exactly what the test wrote.
#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Long enough for any answer on loopback; a hang fails the test instead of blocking it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// One parsed response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// e.g. "HTTP/1.1".
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// `GET path` on a fresh connection (`Connection: close`).
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path)
}

/// `method path` on a fresh connection (`Connection: close`); panics on I/O errors.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    request_with(addr, method, path, &[])
}

/// `GET path` with extra request headers, on a fresh connection.
#[allow(dead_code)]
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    request_with(addr, "GET", path, headers)
}

/// `method path` with extra request headers, on a fresh connection; panics on I/O errors.
pub fn request_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    let reply = send_raw(addr, raw.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse_response(&reply, method == "HEAD").unwrap_or_else(|| panic!("{method} {path}: no response in {reply:?}"))
}

/// Connects, writes `bytes` (tolerating a server that closes early), half-closes, and reads
/// until the server closes. Returns whatever arrived, possibly nothing.
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = connect(addr)?;
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    Ok(read_until_closed(&mut stream))
}

/// A connected stream with read and write timeouts set.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Everything until EOF, a reset, or `IO_TIMEOUT` of silence.
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return out,
        }
    }
}

/// Whether the server closed `stream`: a read returns EOF or a reset (not a timeout).
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }
}

/// Parses one response at the start of `raw`. The body runs for `Content-Length` bytes (none
/// for a HEAD request), or to the end of `raw` without one.
pub fn parse_response(raw: &[u8], head_request: bool) -> Option<HttpResponse> {
    parse_one(raw, head_request).map(|(response, _)| response)
}

/// Like `parse_response`, also returning how many bytes the response took (for pipelining).
pub fn parse_one(raw: &[u8], head_request: bool) -> Option<(HttpResponse, usize)> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..head_end - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next()?.splitn(3, ' ');
    let version = status_line.next()?.to_owned();
    let status = status_line.next()?.parse().ok()?;
    let reason = status_line.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = HttpResponse { version, status, reason, headers, body: Vec::new() };
    let length = if head_request {
        Some(0)
    } else {
        response.header("Content-Length").map(|v| v.parse::<usize>().ok()).unwrap_or(None)
    };
    let body_end = match length {
        Some(len) => head_end.checked_add(len).filter(|&end| end <= raw.len())?,
        None => raw.len(),
    };
    response.body = raw[head_end..body_end].to_vec();
    Some((response, body_end))
}

/// A kept-alive connection: several requests, responses read one at a time by Content-Length.
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> io::Result<Connection> {
        Ok(Connection { stream: connect(addr)?, buffer: Vec::new() })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads the next response (its whole body).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<HttpResponse> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((response, used)) = parse_one(&self.buffer, head_request) {
                if response.header("Content-Length").is_some() || head_request {
                    self.buffer.drain(..used);
                    return Ok(response);
                }
            }
            match self.stream.read(&mut chunk)? {
                0 => return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed before a whole response")),
                n => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

// ---------------------------------------------------------------------------------------------
// Abusive clients (R1)

/// Raises this process's soft limit on open files to its hard limit (the abuse tests hold both
/// ends of hundreds or thousands of connections) and returns the limit in force.
pub fn raise_fd_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        limit.rlim_max
    } else {
        limit.rlim_cur
    }
}

/// The abusive clients of R1, kept up until `stop`: `idle` connections that never send a
/// byte, `partial` ones that send half a request head and hold it, and `scrapers` keep-alive
/// clients that ask `GET /metrics` back to back. A connection the server closes (timeout,
/// bound) is opened again, so the load holds whatever the server's limits.
pub struct Abuse {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Connections held open now, idle and partial together.
    pub held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Scrapes answered 200, and scrapes answered otherwise (or not at all).
    pub scrapes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub failed_scrapes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// What a partial client sends, and never finishes.
const PARTIAL_HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";

impl Abuse {
    pub fn start(addr: SocketAddr, idle: usize, partial: usize, scrapers: usize) -> Abuse {
        use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let scrapes = Arc::new(AtomicU64::new(0));
        let failed_scrapes = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for (count, opening) in [(idle, &b""[..]), (partial, PARTIAL_HEAD)] {
            let (stop, held) = (stop.clone(), held.clone());
            threads.push(std::thread::spawn(move || hold(addr, count, opening, &stop, &held)));
        }
        for _ in 0..scrapers {
            let (stop, scrapes, failed) = (stop.clone(), scrapes.clone(), failed_scrapes.clone());
            threads.push(std::thread::spawn(move || scrape(addr, &stop, &scrapes, &failed)));
        }
        Abuse { stop, threads, held, scrapes, failed_scrapes }
    }

    /// Waits (up to a minute) until `connections` are held and every scraper has been answered.
    pub fn wait_established(&self, connections: usize, scrapers: u64) -> bool {
        use std::sync::atomic::Ordering;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if self.held.load(Ordering::SeqCst) >= connections && self.scrapes.load(Ordering::SeqCst) >= scrapers {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Closes every connection; returns (scrapes answered 200, scrapes that were not).
    pub fn stop(self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            let _ = thread.join();
        }
        (self.scrapes.load(Ordering::SeqCst), self.failed_scrapes.load(Ordering::SeqCst))
    }
}

/// Keeps `count` connections open that sent `opening` and nothing more.
fn hold(
    addr: SocketAddr,
    count: usize,
    opening: &[u8],
    stop: &std::sync::atomic::AtomicBool,
    held: &std::sync::atomic::AtomicUsize,
) {
    use std::sync::atomic::Ordering;
    let mut open: Vec<TcpStream> = Vec::with_capacity(count);
    while !stop.load(Ordering::SeqCst) {
        let before = open.len();
        open.retain(still_open);
        held.fetch_sub(before - open.len(), Ordering::SeqCst);
        while open.len() < count && !stop.load(Ordering::SeqCst) {
            let Ok(stream) = TcpStream::connect_timeout(&addr, IO_TIMEOUT) else { break };
            if (&stream).write_all(opening).is_err() || stream.set_nonblocking(true).is_err() {
                continue;
            }
            open.push(stream);
            held.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    held.fetch_sub(open.len(), Ordering::SeqCst);
}

/// Whether the server has neither closed `stream` nor answered on it (an answer to a partial
/// head is a refusal, followed by a close).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// One keep-alive scraper: `GET /metrics` back to back, reconnecting when closed.
fn scrape(
    addr: SocketAddr,
    stop: &std::sync::atomic::AtomicBool,
    answered: &std::sync::atomic::AtomicU64,
    failed: &std::sync::atomic::AtomicU64,
) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut connection) = Connection::open(addr) else {
            failed.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        while !stop.load(Ordering::SeqCst) {
            let response = connection
                .send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .and_then(|()| connection.read_response(false));
            match response {
                Ok(r) if r.status == 200 => answered.fetch_add(1, Ordering::SeqCst),
                _ => {
                    failed.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            };
        }
    }
}
