//! `vramguard load FILE...`: validate the files of one model, load them into a fresh model slot,
//! verify, print what was loaded and how fast, free it and exit. Every file is validated before
//! the device is opened, so a bad file is reported with its own code (VRAM-E020) on any machine.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::device::Device;
use crate::error::Result;
use crate::loader::{LoaderConfig, Verification};
use crate::purpose::AllocationKind;
use crate::slots::{DeviceBacking, ModelSlotManager, SlotConfig, WeightsLoadOptions};
use crate::weights::{WeightLimits, WeightsSet};

use super::units::parse_bytes;

/// The arguments of `vramguard load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The safetensors files of one model (all go into one slot).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: u32,
    /// Do not compare the device's bytes with a host hash of the bytes read (the device checksum
    /// is still computed and printed).
    #[arg(long)]
    pub unverified: bool,
    /// Pinned host memory for staging, e.g. 256MiB.
    #[arg(long, default_value = "128MiB", value_parser = parse_bytes)]
    pub staging: u64,
    /// Reader threads (0: one per hardware thread, at most 16).
    #[arg(long, default_value_t = 0)]
    pub readers: u32,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a load printed.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// The files loaded, as given on the command line.
    pub files: Vec<String>,
    /// Tensors loaded, all files together.
    pub tensors: usize,
    /// Tensor bytes copied to the device (without padding).
    pub bytes: u64,
    /// How long the load took, in seconds.
    pub seconds: f64,
    /// Tensor bytes per second, in GB/s (10^9 bytes).
    pub gb_per_s: f64,
    /// Whether the device checksum was compared with the host hash.
    pub verified: bool,
    /// The device checksum of the slot's image, as 32 hex digits.
    pub checksum: String,
    /// The pinned staging memory the loader used.
    pub staging_bytes: u64,
    /// The loader's reader threads.
    pub readers: u32,
}

impl LoadSummary {
    /// The one line `vramguard load` prints without `--json`.
    pub fn to_text(&self) -> String {
        format!(
            "loaded {} tensors, {} bytes ({:.2} GiB) in {:.3} s: {:.2} GB/s, {}; checksum {}\n",
            self.tensors,
            self.bytes,
            self.bytes as f64 / (1u64 << 30) as f64,
            self.seconds,
            self.gb_per_s,
            if self.verified { "verified" } else { "not verified" },
            self.checksum
        )
    }
}

/// Loads, verifies and frees. Errors: VRAM-E020/E017 for a file (before the device is opened),
/// VRAM-E001 without a GPU, VRAM-E021/E022 from the load, VRAM-E002 when the model does not fit.
pub fn run(args: &LoadArgs) -> Result<LoadSummary> {
    let set = WeightsSet::open_all(&args.files, &WeightLimits::default())?;
    let tracker = Device::new(args.device)?.tracker()?;
    let slots = ModelSlotManager::with_config(SlotConfig {
        backing: Some(DeviceBacking { tracker, kind: AllocationKind::Device }),
        loader: LoaderConfig { staging_bytes: args.staging, readers: args.readers, ..LoaderConfig::default() },
        ..SlotConfig::default()
    });
    let verification = if args.unverified { Verification::Unverified } else { Verification::HostHash };
    let options = WeightsLoadOptions { verification, evict: false };
    let loaded =
        with_progress(&slots, set.total_bytes(), || slots.load_weights_set("load".to_string(), &set, options))?;
    let report = loaded.weights.report;
    Ok(LoadSummary {
        files: args.files.iter().map(|f| f.display().to_string()).collect(),
        tensors: loaded.weights.tensors.len(),
        bytes: report.bytes,
        seconds: report.duration.as_secs_f64(),
        gb_per_s: report.gb_per_second(),
        verified: report.verified,
        checksum: report.checksum.to_string(),
        staging_bytes: slots.weights_loader().map_or(0, |l| l.staging_bytes()),
        readers: slots.weights_loader().map_or(0, |l| l.readers()),
    })
}

/// Runs `load`, drawing a progress bar on standard error while it takes over a second (only on a
/// terminal: indicatif draws nothing otherwise).
fn with_progress<T: Send>(slots: &ModelSlotManager<String>, total: u64, load: impl FnOnce() -> T + Send) -> T {
    const SHOW_AFTER: Duration = Duration::from_secs(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let started = Instant::now();
            let mut bar: Option<indicatif::ProgressBar> = None;
            while done_rx.recv_timeout(Duration::from_millis(100)).is_err() {
                if started.elapsed() < SHOW_AFTER {
                    continue;
                }
                let bar = bar.get_or_insert_with(|| {
                    let bar = indicatif::ProgressBar::new(total);
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar
                });
                if let Some(loader) = slots.weights_loader() {
                    bar.set_position(loader.progress().0);
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        let result = load();
        let _ = done_tx.send(());
        result
    })
}
