//! The HTTP endpoint (S2–S4): `/health`, `/health/live`, `/health/ready` and `/metrics`, served
//! from the health monitor's cached report by hyper (HTTP/1.1) on a tokio runtime of its own.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use vramguard::health::{HealthConfig, HealthMonitor};
//! # use vramguard::server::{HealthServer, ServerConfig};
//! # fn main() -> vramguard::Result<()> {
//! # let monitor = Arc::new(HealthMonitor::new(vramguard::Tracker::new(0)?, HealthConfig::default())?);
//! let server = HealthServer::start(ServerConfig::default(), monitor)?; // 127.0.0.1:9400
//! println!("probes at http://{}/health/live", server.local_addr());
//! server.shutdown(); // or drop it: graceful, bounded by a deadline
//! # Ok(()) }
//! ```
//!
//! A request goes through, each concern in one place:
//!
//! | Where | What it does | Answers |
//! |---|---|---|
//! | `server.rs` | the listening socket; a bound of `max_connections`, past which the silent, then the slow, then the least recently served connection is closed; out of file descriptors, a backoff that keeps every connection unless the server's own hold half the process's limit (`accept_failure.rs`) | — |
//! | `connection.rs` | waits for a connection's first byte before hyper allocates anything; closes one whose writes make no progress for `request_timeout` (a client that does not read its answers; `write_deadline.rs`); answers a head hyper gave up on; closes without losing the last answer | 408, 400 |
//! | hyper | parses, frames, times out a head (`request_timeout`), keeps connections alive, pipelines, HEAD without a body | 400, 431 |
//! | `limits.rs` (a tower layer) | request line, head and declared body against `max_request_bytes`; ASCII; no Transfer-Encoding | 414, 431, 413, 400, 411 |
//! | tower-http `TimeoutLayer` | the body (read and dropped) within `request_timeout` | 408 |
//! | `routes.rs` | the four routes, from `HealthSource::report` only, a panic caught | 200, 503, 404, 405, 500 |
//!
//! Every refusal closes the connection (`Connection: close`), so nothing sent after a refused
//! request is served. The pipeline needs no socket: `server::app(..).oneshot(request)` drives
//! it in the unit tests. Under abuse — thousands of idle connections, clients that hold half a
//! request, keep-alive scrapers, clients that pipeline requests and never read the answers —
//! probes keep being answered: no connection holds a thread, silent ones cost a few hundred
//! bytes and are cut at the timeout, as are those whose answers go unread, and the bound makes
//! room for a new one (`benches/http_abuse.rs` measures it).
mod accept_failure;
mod config;
mod connection;
mod limits;
mod metrics;
mod routes;
#[allow(clippy::module_inception)]
mod server;
mod write_deadline;

pub use config::ServerConfig;
pub use metrics::{encode_metrics, encode_metrics_as, MetricsFormat, METRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
pub use server::HealthServer;
