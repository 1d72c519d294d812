//! One connection's life: wait for its first byte, let hyper serve it with its writes bounded,
//! answer a head hyper gave up on, and close without destroying the last answer.
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1::Parts;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use super::limits::Refusal;
use super::server::{stopped, Admitted, Shared};
use super::write_deadline::WriteDeadline;

/// After the last answer, what is still read and dropped before the socket closes.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Serves `stream` until the client leaves, a limit closes it, the server stops, or the bound
/// on connections evicts it (then it is dropped at once). A client that stops reading its
/// answers is a limit too: once hyper's writes have made no progress for `request_timeout`,
/// the connection is dropped at once.
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>, admitted: Admitted, stop: watch::Receiver<bool>) {
    let evicted = admitted.evict.clone();
    tokio::select! {
        biased;
        () = evicted.notified() => {}
        () = run(stream, &shared, &admitted, stop) => {}
    }
}

async fn run(stream: TcpStream, shared: &Shared, admitted: &Admitted, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let timeout = shared.config.request_timeout;
    tokio::select! {
        biased;
        () = stopped(&mut stop) => return,
        started = request_started(&stream, timeout) => if !started { return },
    }
    admitted.started();
    let service = hyper::service::service_fn(|request| {
        admitted.touch();
        shared.app.clone().oneshot(request)
    });
    let io = TokioIo::new(WriteDeadline::new(stream, timeout));
    let mut connection = shared.http.serve_connection(io, service);
    let mut stopping = false;
    let ended = loop {
        tokio::select! {
            ended = poll_fn(|cx| connection.poll_without_shutdown(cx)) => break ended,
            () = stopped(&mut stop), if !stopping => {
                // Idle: closes now. Mid-request: after its answer. The accept task's grace
                // period bounds the rest.
                stopping = true;
                std::pin::Pin::new(&mut connection).graceful_shutdown();
            }
        }
    };
    let Parts { io, read_buf, .. } = connection.into_parts();
    let bounded = io.into_inner();
    if bounded.timed_out() {
        // The client reads nothing: no answer is left to protect, and nothing more is written.
        return;
    }
    let mut stream = bounded.into_inner();
    if let Some(refusal) = ended.err().and_then(|error| unanswered(&error, &read_buf)) {
        let _ = tokio::time::timeout(LINGER_TIME, stream.write_all(&raw_response(refusal))).await;
    }
    if !stopping {
        linger(stream, timeout).await;
    }
}

/// Waits for the first byte of a request: most abusive connections never send one, and
/// waiting before hyper allocates its buffers (16 KiB) keeps such a connection at a few hundred
/// bytes. Blank lines before it are read and dropped (RFC 9112 §2.2 lets a server ignore them;
/// hyper would keep them until its buffer fills, then answer 431). False, and the connection is
/// closed without a word, when the client closes or sends nothing else within `timeout`.
async fn request_started(stream: &TcpStream, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut peeked = [0u8; 64];
    loop {
        let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(deadline, stream.peek(&mut peeked)).await else { return false };
        let blank = peeked[..n].iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if blank == 0 {
            return true;
        }
        match stream.try_read(&mut peeked[..blank]) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
}

/// hyper closes without a word when a head stops arriving (its header timeout) or the client
/// shuts its side in the middle of one. A client that sent part of a request is told why;
/// blank lines alone are no request and get nothing.
fn unanswered(error: &hyper::Error, unparsed: &[u8]) -> Option<Refusal> {
    if unparsed.iter().all(|&b| b == b'\r' || b == b'\n') {
        None
    } else if error.is_timeout() {
        Some(Refusal::new(StatusCode::REQUEST_TIMEOUT, "request not received in time"))
    } else if error.is_incomplete_message() {
        Some(Refusal::new(StatusCode::BAD_REQUEST, "connection closed mid-request"))
    } else {
        None
    }
}

/// The one answer written without hyper, which has given the connection up by then: what
/// [`Refusal::response`] holds, as bytes.
fn raw_response(refusal: Refusal) -> Vec<u8> {
    let body = serde_json::json!({ "error": refusal.reason }).to_string();
    let status = refusal.status;
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nserver: vramguard\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes()
}

/// Closing a socket with unread bytes makes the kernel reset the connection, and a reset can
/// destroy an answer the client has not read yet — a refused request is usually followed by
/// bytes nobody read. So the write side is shut first, then what the client still sends is
/// read and dropped (at most 64 KiB, for at most a second) until it closes.
async fn linger(mut stream: TcpStream, timeout: Duration) {
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_TIME.min(timeout);
    let mut chunk = [0u8; 2048];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_refusal_is_one_complete_response() {
        let raw = String::from_utf8(raw_response(Refusal::new(StatusCode::REQUEST_TIMEOUT, "late"))).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        assert_eq!(body, r#"{"error":"late"}"#);
    }
}
