//! `vramguard serve`: load a workload, check residency periodically, serve /health and /metrics
//! until SIGTERM or SIGINT (Ctrl-C), then free everything and exit 0 (R6).
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::health::HealthConfig;
use crate::server::ServerConfig;
use crate::service::{Service, ServiceConfig, Workload};

use super::units::{parse_bytes, parse_duration};

/// The arguments of `vramguard serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 9400)]
    pub port: u16,
    /// Time between residency checks, e.g. 60s, 500ms.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// A check still running after this long counts as failed (/health and /health/ready 503).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub check_deadline: Duration,
    /// The verdict reads "stale" (503) when the last completed check is older than this many
    /// intervals.
    #[arg(long, default_value_t = 3)]
    pub stale_after: u32,
    /// After SIGTERM/SIGINT, the longest the shutdown may take; past it (a hung GPU keeps
    /// frees waiting) the process exits 1 at once and the driver reclaims its memory.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Budget of the model slots, e.g. 8GiB (default: seed 000's preset, 8 GiB).
    #[arg(long, value_parser = parse_bytes)]
    pub budget: Option<u64>,
    /// TOML file of `[[slot]]` entries (name, bytes or files, purpose, pinned); default: seed 000's preset,
    /// the 13 embedders.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: u32,
    /// Log as JSON lines (N2) instead of text.
    #[arg(long)]
    pub json_logs: bool,
}

/// Serves until SIGTERM or SIGINT, then stops the endpoint and the checks and frees every
/// byte, within `--shutdown-timeout` (else exits 1 at once). Errors: VRAM-E001 without a GPU,
/// the workload's errors, VRAM-E007 for a configuration out of range (checked before the device
/// is opened).
pub fn run(args: &ServeArgs) -> Result<()> {
    let preset = crate::slots::presets::seed000();
    let workload = match &args.workload {
        Some(path) => Workload::load(path)?,
        None => Workload::from_preset(&preset),
    };
    let config = ServiceConfig {
        device: args.device,
        budget_bytes: args.budget.unwrap_or(preset.budget_bytes),
        health: HealthConfig {
            interval: args.interval,
            check_deadline: args.check_deadline,
            stale_after: args.stale_after,
            ..HealthConfig::default()
        },
        server: ServerConfig { bind: args.bind, port: args.port, ..ServerConfig::default() },
        workload,
    };
    raise_open_file_limit();
    // Installed before the workload is loaded: a signal during start-up is kept, not fatal, and
    // the service stops as soon as it has started.
    let signals = Signals::install()?;
    let service = Service::start(config)?;
    let address = service.local_addr();
    tracing::info!(
        actor = crate::events::ACTOR_WORKER, action = "serve", target = %address,
        slots = service.slots().loaded_count(), tracked_bytes = service.tracker().total_bytes(),
        human = %format!("Serving http://{address}/health, /health/live, /health/ready and /metrics"),
    );
    let signal = signals.wait();
    tracing::info!(actor = crate::events::ACTOR_WORKER, action = "shutdown", target = %address, human = %format!("{signal}: stopping checks and freeing VRAM"));
    let tracker = service.tracker().clone();
    if !service.shutdown_within(args.shutdown_timeout) {
        tracing::error!(
            actor = crate::events::ACTOR_WORKER, action = "shutdown", target = %address, error_kind = "timeout",
            human = %format!("Shutdown not finished within {:?} (a hung GPU?); exiting now, the driver reclaims the memory", args.shutdown_timeout),
        );
        // SAFETY: _exit ends the process without atexit handlers: the CUDA runtime's own
        // teardown would wait on the same hung device.
        unsafe { libc::_exit(1) };
    }
    tracing::info!(
        actor = crate::events::ACTOR_WORKER, action = "shutdown", target = %address, tracked_bytes = tracker.total_bytes(),
        human = %format!("Stopped; {} bytes still tracked", tracker.total_bytes()),
    );
    Ok(())
}

/// SIGTERM (what Kubernetes and systemd send) and SIGINT (Ctrl-C), through tokio on a
/// one-thread runtime of their own.
struct Signals {
    runtime: tokio::runtime::Runtime,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// From here on, neither signal ends the process: `wait` sees it.
    fn install() -> Result<Signals> {
        let failed =
            |e: std::io::Error| Error::Internal(format!("cannot install the SIGTERM and SIGINT handlers: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(failed)?;
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let _entered = runtime.enter();
            let terminate = signal(SignalKind::terminate()).map_err(failed)?;
            let interrupt = signal(SignalKind::interrupt()).map_err(failed)?;
            Ok(Signals { runtime, terminate, interrupt })
        }
        #[cfg(not(unix))]
        Ok(Signals { runtime })
    }

    /// Blocks until one of the signals arrives (or arrived since `install`); returns its name.
    fn wait(self) -> &'static str {
        #[cfg(unix)]
        {
            let Signals { runtime, mut terminate, mut interrupt } = self;
            runtime.block_on(async {
                tokio::select! {
                    _ = terminate.recv() => "SIGTERM",
                    _ = interrupt.recv() => "SIGINT",
                }
            })
        }
        #[cfg(not(unix))]
        {
            let _ = self.runtime.block_on(tokio::signal::ctrl_c());
            "Ctrl-C"
        }
    }
}

/// Each connection to the endpoint takes a file descriptor, and idle clients can hold
/// thousands: the soft limit (often 1024) is raised to the hard one.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= limit.rlim_max {
            return;
        }
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            tracing::warn!(actor = crate::events::ACTOR_WORKER, action = "serve", error_kind = "io", human = %format!("cannot raise the open-file limit: {}", std::io::Error::last_os_error()));
        }
    }
}

/// N2: text logs by default, JSON lines with `--json-logs`; `RUST_LOG` sets the level (info).
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Events carry their own `target` field (GPU0, worker): the module path would be a second one.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}
