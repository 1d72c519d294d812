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
    /// Most bytes one request may take: request line + headers + body. Larger → 414 (the
    /// request line alone), 431 (the head) or 413 (the declared body), before the body is read.
    /// At most [`ServerConfig::MAX_REQUEST_BYTES`].
    pub max_request_bytes: usize,
    /// How long a connection may stay silent before it is closed (a new one, or a kept-alive
    /// one after its last response), then how long a request head may take from its first
    /// byte, and its body as long again: a client dripping a request is answered 408 or closed
    /// within three of these at most. Also how long an answer may wait for the client to read
    /// it: a connection whose writes make no progress for this long is closed at once, so a
    /// client that pipelines requests and never reads the answers holds nothing for longer.
    /// At most [`ServerConfig::MAX_TIMEOUT`].
    pub request_timeout: Duration,
    /// Connections served at once. Past it, one is closed to make room: the oldest that has
    /// not sent a byte, else the oldest still sending its first request head, else the one
    /// served the longest ago. So a probe is still answered while idle or slow clients hold
    /// every other connection. Each connection costs a file descriptor: `vramguard serve`
    /// raises its soft limit to the hard one. When the process runs out of descriptors, the
    /// server closes a connection of its own only while its connections hold at least half of
    /// the process's limit, and then only one that has not completed a request; otherwise it
    /// keeps them all and retries accepting after 10 ms, doubling to a second.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9400,
            max_request_bytes: 8 * 1024,
            request_timeout: Duration::from_secs(5),
            max_connections: 4096,
        }
    }
}

impl ServerConfig {
    /// The largest `max_request_bytes`: the endpoint takes no bodies, and a connection's read
    /// buffer may grow to a few times this.
    pub const MAX_REQUEST_BYTES: usize = 1 << 20;
    /// The longest `request_timeout`: deadlines are computed from it, and a longer wait is
    /// no limit at all.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

    /// VRAM-E007 for a limit that would make the server refuse everything, never time out, or
    /// overflow a deadline.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_connections == 0 {
            return Err(Error::InvalidArgument("server max_connections must be at least 1".into()));
        }
        // The shortest valid request, "GET / HTTP/1.0\r\n\r\n", is 18 bytes.
        if !(18..=Self::MAX_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return Err(Error::InvalidArgument(format!(
                "server max_request_bytes is {}; it must be between 18 (a request line) and {}",
                self.max_request_bytes,
                Self::MAX_REQUEST_BYTES
            )));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Self::MAX_TIMEOUT {
            return Err(Error::InvalidArgument(format!(
                "server request_timeout is {:?}; it must be more than zero and at most {:?}",
                self.request_timeout,
                Self::MAX_TIMEOUT
            )));
        }
        Ok(())
    }
}
