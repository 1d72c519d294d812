//! Reads requests off a socket within a byte limit and a deadline (S4). tiny_http's own reader
//! buffers a header line until it ends and waits for it forever, so the endpoint reads here.
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::request::{check_partial, Rejection, Request};

/// What one client may send and how long it may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Request line + headers + body.
    pub max_request_bytes: usize,
    /// Per request, from when the server starts waiting for its first byte.
    pub request_timeout: Duration,
}

/// What the next read off a connection produced.
#[derive(Debug)]
pub(crate) enum Next {
    /// A whole request, its body (if any) read and dropped.
    Request(Request),
    /// The client closed, or stayed silent until the deadline: nothing to answer.
    Closed,
    /// Answer with this status, then close.
    Rejected(Rejection),
}

enum Fill {
    Data,
    Eof,
    TimedOut,
    Failed,
}

/// The reading half of one connection. Never holds more than `max_request_bytes`.
pub(crate) struct BoundedReader {
    stream: TcpStream,
    /// Read but not yet consumed: the head so far, or the start of a pipelined request.
    pending: Vec<u8>,
    limits: Limits,
}

impl BoundedReader {
    pub(crate) fn new(stream: TcpStream, limits: Limits) -> BoundedReader {
        BoundedReader { stream, pending: Vec::new(), limits }
    }

    /// Reads the next request, or says why there is none.
    pub(crate) fn next_request(&mut self) -> Next {
        let deadline = Instant::now() + self.limits.request_timeout;
        let head_len = match self.read_head(deadline) {
            Ok(len) => len,
            Err(next) => return next,
        };
        let request = match Request::parse(&self.pending[..head_len]) {
            Ok(request) => request,
            Err(rejection) => return Next::Rejected(rejection),
        };
        self.pending.drain(..head_len);
        let body = match request.content_length() {
            Ok(length) => length,
            Err(rejection) => return Next::Rejected(rejection),
        };
        // Checked before reading a byte of the body.
        if body > (self.limits.max_request_bytes - head_len) as u64 {
            return Next::Rejected(Rejection::new(413, "request larger than the server accepts"));
        }
        let body = body as usize;
        if body > self.pending.len() && request.expects_continue() {
            let _ = (&self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        match self.discard_body(body, deadline) {
            Ok(()) => Next::Request(request),
            Err(next) => next,
        }
    }

    /// Length of the head at the front of `pending`, reading until it is complete.
    fn read_head(&mut self, deadline: Instant) -> Result<usize, Next> {
        let max = self.limits.max_request_bytes;
        loop {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            let blank = self.pending.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            self.pending.drain(..blank);
            if let Some(end) = head_end(&self.pending) {
                return Ok(end);
            }
            check_partial(&self.pending).map_err(Next::Rejected)?;
            if self.pending.len() >= max {
                let line_done = self.pending.contains(&b'\n');
                return Err(Next::Rejected(if line_done {
                    Rejection::new(431, "request headers larger than the server accepts")
                } else {
                    Rejection::new(414, "request line longer than the server accepts")
                }));
            }
            let room = max - self.pending.len();
            match self.fill(deadline, room) {
                Fill::Data => {}
                Fill::Eof if self.pending.is_empty() => return Err(Next::Closed),
                Fill::Eof => return Err(Next::Rejected(Rejection::new(400, "connection closed mid-request"))),
                Fill::TimedOut if self.pending.is_empty() => return Err(Next::Closed),
                Fill::TimedOut => return Err(Next::Rejected(Rejection::new(408, "request not received in time"))),
                Fill::Failed => return Err(Next::Closed),
            }
        }
    }

    /// Drops `len` body bytes: those already buffered, then the rest from the socket.
    fn discard_body(&mut self, len: usize, deadline: Instant) -> Result<(), Next> {
        let buffered = len.min(self.pending.len());
        self.pending.drain(..buffered);
        let mut left = len - buffered;
        while left > 0 {
            match self.fill(deadline, left) {
                Fill::Data => {
                    left -= self.pending.len();
                    self.pending.clear();
                }
                Fill::Eof => return Err(Next::Rejected(Rejection::new(400, "body shorter than its Content-Length"))),
                Fill::TimedOut => return Err(Next::Rejected(Rejection::new(408, "request body not received in time"))),
                Fill::Failed => return Err(Next::Closed),
            }
        }
        Ok(())
    }

    /// Appends at most `room` bytes to `pending`, waiting no later than `deadline`.
    fn fill(&mut self, deadline: Instant, room: usize) -> Fill {
        let mut chunk = [0u8; 2048];
        let want = room.min(chunk.len());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return Fill::TimedOut;
            }
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => return Fill::Eof,
                Ok(n) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    return Fill::Data;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return Fill::TimedOut,
                Err(_) => return Fill::Failed,
            }
        }
    }

    /// After a refusal: stop writing, then read and drop what the client still sends — at most
    /// `LINGER_BYTES`, for at most `LINGER_TIME` — so that closing with unread data does not
    /// reset the connection before the client has read the refusal.
    pub(crate) fn linger(mut self) {
        const LINGER_BYTES: usize = 64 * 1024;
        const LINGER_TIME: Duration = Duration::from_secs(1);
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + LINGER_TIME.min(self.limits.request_timeout);
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.pending.clear();
            match self.fill(deadline, LINGER_BYTES - drained) {
                Fill::Data => drained += self.pending.len(),
                Fill::Eof | Fill::TimedOut | Fill::Failed => break,
            }
        }
    }
}

/// End of the head (just past its empty line) when `received` holds a whole one.
fn head_end(received: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in received.iter().enumerate() {
        if b == b'\n' {
            let line = &received[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// A read timeout reads as WouldBlock on Unix and TimedOut on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nbody"), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
