//! A response, written with tiny_http's encoder (status line, Date, Content-Length; no body for
//! HEAD). The body is always complete in memory, so it is sent with a Content-Length.
use std::io::{self, BufWriter, Write};
use std::net::TcpStream;

use serde::Serialize;
use tiny_http::{HTTPVersion, Header, Response, StatusCode};

use super::request::Rejection;

pub(crate) const JSON: &str = "application/json";

/// Status, body and the few headers the endpoint sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Reply {
    /// `value` as JSON; a 500 in the unlikely case it cannot be serialized.
    pub(crate) fn json(status: u16, value: &impl Serialize) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply { status, content_type: JSON, body, allow: None },
            Err(e) => Reply::error(500, &format!("cannot serialize the response: {e}")),
        }
    }

    /// `{"error": reason}` with `status`.
    pub(crate) fn error(status: u16, reason: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": reason }))
    }

    pub(crate) fn rejected(rejection: Rejection) -> Reply {
        Reply::error(rejection.status, rejection.reason)
    }

    /// Writes the whole response and flushes it.
    pub(crate) fn write(self, stream: &TcpStream, version: HTTPVersion, head_only: bool) -> io::Result<()> {
        let mut response = Response::from_data(self.body)
            .with_status_code(StatusCode(self.status))
            .with_chunked_threshold(usize::MAX)
            .with_header(header("Content-Type", self.content_type))
            .with_header(header("Cache-Control", "no-store"))
            .with_header(header("Server", "vramguard"));
        if let Some(allow) = self.allow {
            response.add_header(header("Allow", allow));
        }
        let mut writer = BufWriter::new(stream);
        // No request headers passed: a client's `TE` must not switch the body to chunked.
        response.raw_print(&mut writer, version, &[], head_only, None)?;
        writer.flush()
    }
}

fn header(name: &str, value: &str) -> Header {
    // Every name and value here is ASCII, which is all `from_bytes` checks.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}
