//! How the endpoint listens and what it tolerates from clients (S4).
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::error::{Error, Result};

/// Where the endpoint listens and the limits it puts on every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind. Loopback by default (S4): exposing VRAM figures is an explicit choice.
    pub bind: IpAddr,
    /// Port; 0 picks a free one (see `HealthServer::local_addr`).
    pub port: u16,
    /// Most bytes one request may take: request line + headers + body. Larger → 414/431/413.
    pub max_request_bytes: usize,
    /// Time a client has to send one whole request, counted from when the server starts
    /// waiting for it (on a kept-alive connection: from the previous response). A client that
    /// sends nothing, or too slowly, is dropped when it runs out; a worker is never held longer.
    pub request_timeout: Duration,
    /// Threads that serve connections, one connection each at a time.
    pub worker_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9400,
            max_request_bytes: 8 * 1024,
            request_timeout: Duration::from_secs(5),
            worker_threads: 4,
        }
    }
}

impl ServerConfig {
    /// VRAM-E007 for a limit that would make the server refuse everything or never time out.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.worker_threads == 0 {
            return Err(Error::InvalidArgument("server worker_threads must be at least 1".into()));
        }
        // The shortest valid request, "GET / HTTP/1.0\r\n\r\n", is 18 bytes.
        if self.max_request_bytes < 18 {
            return Err(Error::InvalidArgument(format!(
                "server max_request_bytes is {}; at least 18 are needed for a request line",
                self.max_request_bytes
            )));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::InvalidArgument("server request_timeout must be more than zero".into()));
        }
        Ok(())
    }
}
