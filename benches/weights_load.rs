//! W1 on a GPU host: loading an 8 GiB, 128-tensor bf16 safetensors file into a model slot, against
//! the limit (a pinned host-to-device copy of the same bytes) and the safetensors package's own
//! loader (`safetensors.torch.load_file(device="cuda:0")`, through python3), warm and cold, in one
//! run; one printed table (BENCHMARKS.md, "Loading weights").
//!
//!   bench_weights_load [--gib N] [--dir DIR] [--readers-sweep]
//!
//! Cold runs drop the file's pages from the page cache with `posix_fadvise(DONTNEED)` (no root
//! needed); the plain sequential read printed beside them says whether the drop took effect.
#[path = "../tests/support/model_files.rs"]
mod model_files;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use model_files::{bf16_layers, write_model};
use vramguard::loader::{LoaderConfig, Verification};
use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig, WeightsLoadOptions};
use vramguard::weights::{WeightLimits, WeightsSet};
use vramguard::{AllocationKind, Device, Purpose, Tracker};

const GIB: u64 = 1 << 30;
const REPEATS: usize = 5;
/// Cold loads read the file from disk: fewer of them.
const COLD_REPEATS: usize = 3;

struct Row {
    name: String,
    gb_per_s: f64,
    note: String,
}

fn gbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e9
}

fn drop_cache(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        // SAFETY: a valid descriptor; the call only advises the kernel.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn plain_read(path: &Path) -> std::io::Result<Duration> {
    let started = Instant::now();
    let mut file = std::fs::File::open(path)?;
    let mut block = vec![0u8; 16 << 20];
    while file.read(&mut block)? > 0 {}
    Ok(started.elapsed())
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// The best of REPEATS loads of `set` through a fresh slot each time (the loader is kept, as a
/// worker keeps it).
fn vramguard_load(
    slots: &ModelSlotManager<String>,
    set: &WeightsSet,
    verification: Verification,
    cold: Option<&Path>,
) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..if cold.is_some() { COLD_REPEATS } else { REPEATS } {
        if let Some(path) = cold {
            drop_cache(path);
        }
        let options = WeightsLoadOptions { verification, evict: false };
        let started = Instant::now();
        let loaded = slots.load_weights_set("model".to_string(), set, options).expect("load");
        let elapsed = started.elapsed();
        best = best.max(gbps(loaded.weights.report.bytes, elapsed));
        slots.deallocate_slot(&"model".to_string());
    }
    best
}

/// The limit: the same number of bytes copied host-to-device from pinned memory, 64 MiB at a time
/// out of a 1 GiB pinned buffer, each copy complete before the next (as vramguard's copies are not:
/// this is the synchronous ceiling of one stream).
fn pinned_copy(tracker: &Tracker, bytes: u64) -> f64 {
    let staging = tracker
        .allocate_kind(GIB, Purpose::IntermediateBuffers, AllocationKind::PinnedHost, "baseline staging")
        .expect("pinned host memory");
    // SAFETY: pinned host memory of GIB bytes, alive while `staging` is.
    let host = unsafe { std::slice::from_raw_parts(staging.as_ptr() as *const u8, GIB as usize) };
    let mut device = tracker.allocate(bytes, Purpose::ModelWeights, "baseline").expect("device memory");
    let chunk = 64u64 << 20;
    let mut best = 0.0f64;
    for _ in 0..REPEATS {
        let started = Instant::now();
        let mut offset = 0;
        while offset < bytes {
            let n = chunk.min(bytes - offset);
            let from = (offset % GIB) as usize;
            device.copy_from_host(offset, &host[from..from + n as usize]).expect("copy");
            offset += n;
        }
        best = best.max(gbps(bytes, started.elapsed()));
    }
    best
}

/// safetensors' own loader to the GPU, through python3 with torch: the best of REPEATS, or why not.
fn safetensors_torch(path: &Path, bytes: u64, cold: bool) -> Result<f64, String> {
    let script = r#"
import os, sys, time
import torch
from safetensors.torch import load_file
path, cold, repeats = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
torch.zeros(1, device="cuda:0")
best = 0.0
for _ in range(repeats):
    if cold:
        fd = os.open(path, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
    t = time.perf_counter()
    d = load_file(path, device="cuda:0")
    torch.cuda.synchronize()
    best = max(best, 1.0 / (time.perf_counter() - t))
    del d
print(best)
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(if cold { "1" } else { "0" })
        .arg(if cold { COLD_REPEATS } else { REPEATS }.to_string())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.lines().last().unwrap_or("failed").to_string());
    }
    let per_second: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|e| format!("{e}"))?;
    Ok(per_second * bytes as f64 / 1e9)
}

fn main() {
    let args: Vec<String> = std::env::args().collect(); // `cargo bench` adds --bench: ignored
    let gib: u64 =
        args.iter().position(|a| a == "--gib").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(8);
    let dir: PathBuf = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let sweep = args.iter().any(|a| a == "--readers-sweep");

    let tracker = match Device::new(0).and_then(|d| d.tracker()) {
        Ok(tracker) => tracker,
        Err(error) => {
            eprintln!("weights_load benchmark: needs a GPU ({error})");
            std::process::exit(if std::env::var("VRAM_REQUIRE_GPU").as_deref() == Ok("1") { 1 } else { 0 });
        }
    };
    let path = dir.join(format!("vramguard-bench-{}.safetensors", std::process::id()));
    let layers = (gib * GIB / (64 << 20)) as usize; // 8192 x 4096 bf16 = 64 MiB each: 128 for 8 GiB
    let started = Instant::now();
    write_model(&path, &bf16_layers(layers, 8192, 4096), 42).expect("write the model file");
    // On disk before anything is timed: writeback of 8 GiB of dirty pages would compete with the
    // loads for memory bandwidth and CPU.
    std::fs::File::open(&path).and_then(|f| f.sync_all()).expect("fsync the model file");
    println!("wrote {} ({layers} bf16 tensors of 64 MiB) in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    let set = WeightsSet::open_all(&[&path], &WeightLimits::default()).expect("validate");
    let bytes = set.total_bytes();

    let slots = ModelSlotManager::with_config(SlotConfig {
        backing: Some(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device }),
        loader: LoaderConfig::default(),
        ..SlotConfig::default()
    });
    let warm_read = plain_read(&path).expect("read"); // also warms the page cache
    let warm_read = gbps(bytes, plain_read(&path).map(|d| d.min(warm_read)).expect("read"));

    let mut rows = Vec::new();
    let unverified = vramguard_load(&slots, &set, Verification::Unverified, None);
    let verified = vramguard_load(&slots, &set, Verification::HostHash, None);
    let loader = slots.weights_loader().expect("made by the first load");
    let rss_after_loads = peak_rss_mib();
    let pinned = pinned_copy(&tracker, bytes);
    let torch_warm = safetensors_torch(&path, bytes, false);
    let cold_verified = vramguard_load(&slots, &set, Verification::HostHash, Some(&path));
    drop_cache(&path);
    let cold_read = gbps(bytes, plain_read(&path).expect("read"));
    let torch_cold = safetensors_torch(&path, bytes, true);

    let torch_text = |r: &Result<f64, String>| match r {
        Ok(v) => format!("{v:.2}"),
        Err(e) => format!("n/a ({e})"),
    };
    let torch_warm_value = torch_warm.as_ref().copied().unwrap_or(f64::NAN);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    rows.push(Row {
        name: "pinned host-to-device copy (the limit)".into(),
        gb_per_s: pinned,
        note: "64 MiB copies, one stream".into(),
    });
    rows.push(Row {
        name: "vramguard, unverified, warm".into(),
        gb_per_s: unverified,
        note: format!(
            "{:.0} % of pinned, {:.1}x safetensors; target >= 48 GB/s: {}",
            100.0 * unverified / pinned,
            unverified / torch_warm_value,
            verdict(unverified >= 48.0)
        ),
    });
    rows.push(Row {
        name: "vramguard, verified, warm".into(),
        gb_per_s: verified,
        note: format!(
            "{:.0} % of pinned, {:.1}x safetensors; target >= 40 GB/s: {}",
            100.0 * verified / pinned,
            verified / torch_warm_value,
            verdict(verified >= 40.0)
        ),
    });
    rows.push(Row {
        name: "safetensors.torch.load_file(cuda:0), warm".into(),
        gb_per_s: torch_warm_value,
        note: torch_text(&torch_warm),
    });
    rows.push(Row { name: "plain sequential read, warm (1 thread)".into(), gb_per_s: warm_read, note: String::new() });
    rows.push(Row {
        name: "vramguard, verified, cold".into(),
        gb_per_s: cold_verified,
        note: format!(
            "{:.0} % of the plain cold read; target within 10 %: {}",
            100.0 * cold_verified / cold_read,
            verdict(cold_verified >= 0.9 * cold_read)
        ),
    });
    rows.push(Row { name: "plain sequential read, cold (1 thread)".into(), gb_per_s: cold_read, note: String::new() });
    rows.push(Row {
        name: "safetensors.torch.load_file(cuda:0), cold".into(),
        gb_per_s: torch_cold.as_ref().copied().unwrap_or(f64::NAN),
        note: torch_text(&torch_cold),
    });

    println!();
    println!(
        "## Loading {:.1} GiB ({} bf16 tensors) into a model slot, best of {REPEATS} warm, {COLD_REPEATS} cold (GB/s = 10^9 bytes/s)",
        bytes as f64 / GIB as f64,
        layers
    );
    println!(
        "loader: {} readers, {} MiB per staging slot, {} MiB pinned staging; peak RSS after the loads {} MiB (file {} MiB)",
        loader.readers(),
        loader.chunk_bytes() >> 20,
        loader.staging_bytes() >> 20,
        rss_after_loads,
        bytes >> 20
    );
    println!();
    println!("| load | GB/s | note |");
    println!("|---|---|---|");
    for row in &rows {
        println!("| {} | {:.2} | {} |", row.name, row.gb_per_s, row.note);
    }

    if sweep {
        println!();
        println!("| readers | staging MiB | unverified GB/s | verified GB/s |");
        println!("|---|---|---|---|");
        for readers in [12u32, 16, 24] {
            for staging in [64u64 << 20, 128 << 20, 256 << 20] {
                let slots = ModelSlotManager::with_config(SlotConfig {
                    backing: Some(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device }),
                    loader: LoaderConfig { staging_bytes: staging, readers, ..LoaderConfig::default() },
                    ..SlotConfig::default()
                });
                let u = vramguard_load(&slots, &set, Verification::Unverified, None);
                let v = vramguard_load(&slots, &set, Verification::HostHash, None);
                println!("| {readers} | {} | {u:.2} | {v:.2} |", staging >> 20);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}
