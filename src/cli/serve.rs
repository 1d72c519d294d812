//! `vramguard serve`: load a workload, check residency periodically, serve /health and /metrics
//! until Ctrl-C, then free everything.
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::health::HealthConfig;
use crate::server::ServerConfig;
use crate::service::{Service, ServiceConfig, Workload};

use super::units::{parse_bytes, parse_duration};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    #[arg(long, default_value_t = 9400)]
    pub port: u16,
    /// Time between residency checks, e.g. 60s, 500ms.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Budget of the model slots, e.g. 8GiB (default 8 GiB).
    #[arg(long, value_parser = parse_bytes)]
    pub budget: Option<u64>,
    /// TOML file of [[slot]] entries (name, bytes, purpose, pinned); default: the 13 embedders.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: u32,
    /// Log as JSON lines (N2) instead of text.
    #[arg(long)]
    pub json_logs: bool,
}

/// Serves until Ctrl-C (or SIGTERM). Errors: VRAM-E001 without a GPU, the workload's errors.
pub fn run(args: &ServeArgs) -> Result<()> {
    let workload = match &args.workload {
        Some(path) => Workload::load(path)?,
        None => Workload::embedders(),
    };
    let config = ServiceConfig {
        device: args.device,
        budget_bytes: args.budget.unwrap_or(crate::slots::MODEL_BUDGET_BYTES),
        health: HealthConfig { interval: args.interval, ..HealthConfig::default() },
        server: ServerConfig { bind: args.bind, port: args.port, ..ServerConfig::default() },
        workload,
    };
    let (stop, stopped) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })
    .map_err(|e| Error::Internal(format!("cannot install the Ctrl-C handler: {e}")))?;
    let service = Service::start(config)?;
    let address = service.local_addr();
    tracing::info!(
        actor = crate::events::ACTOR_WORKER, action = "serve", target = %address,
        slots = service.slots().loaded_count(), tracked_bytes = service.tracker().total_bytes(),
        human = %format!("Serving http://{address}/health, /health/live, /health/ready and /metrics"),
    );
    let _ = stopped.recv();
    tracing::info!(actor = crate::events::ACTOR_WORKER, action = "shutdown", target = %address, human = "Shutting down: stopping checks and freeing VRAM");
    let tracker = service.tracker().clone();
    drop(service);
    tracing::info!(
        actor = crate::events::ACTOR_WORKER, action = "shutdown", target = %address, tracked_bytes = tracker.total_bytes(),
        human = %format!("Stopped; {} bytes still tracked", tracker.total_bytes()),
    );
    Ok(())
}

/// N2: text logs by default, JSON lines with `--json-logs`; `RUST_LOG` sets the level (info).
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Events carry their own `target` field (GPU0, worker): the module path would be a second one.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}
