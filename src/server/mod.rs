//! The HTTP endpoint (S2–S4): `/health`, `/health/live`, `/health/ready` and `/metrics`, served
//! from the health monitor's cached report on a small synchronous server.
//!
//! Sockets, limits and threads are handled here; tiny_http supplies the HTTP types and the
//! response encoder. Its `Server` is not used: it reads a header line until it ends, without
//! limit or timeout, and its threads cannot be joined (see `limits.rs`).
mod config;
mod connection;
mod limits;
mod metrics;
mod reply;
mod request;
mod routes;
#[allow(clippy::module_inception)]
mod server;

pub use config::ServerConfig;
pub use metrics::{encode_metrics, METRICS_CONTENT_TYPE};
pub use server::HealthServer;
