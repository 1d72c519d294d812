//! H4 on a GPU: the driver's per-process figure from NVML, matched to the CUDA device by PCI bus
//! id, moves with what vramguard allocates and covers at least what the tracker records. Where
//! the host hides our PID from NVML (a container's PID namespace) the answer must be Unknown with
//! that reason, and stay so: never a guess.
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use vramguard::nvml::{in_own_pid_namespace, process_vram, Nvml, PciBusId, ProcessVram, UsedGpuMemory};
use vramguard::{Device, Purpose};

use crate::ensure;
use crate::gpu_gate::gpu;

const GIB: u64 = 1 << 30;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("process_vram::pci_bus_id_is_well_formed", pci_bus_id_is_well_formed),
        gpu("process_vram::nvml_finds_the_cuda_device", nvml_finds_the_cuda_device),
        gpu("process_vram::known_or_explained", known_or_explained),
        gpu("process_vram::follows_a_1_gib_allocation", follows_a_1_gib_allocation),
        gpu("ledger::splits_untracked_vram_and_flags_steady_growth", ledger_splits_and_flags_growth),
    ]
}

fn pci_bus_id_is_well_formed() -> Result<(), Failed> {
    for device in Device::all()? {
        let id = device.info()?.pci_bus_id;
        let parsed = PciBusId::parse(&id)?;
        ensure!(
            parsed.legacy_form() == id.to_uppercase(),
            "GPU{}: {id:?} is not CUDA's dddd:bb:dd.f",
            device.ordinal()
        );
        println!("[ vramguard ] GPU{} PCI bus id {id}", device.ordinal());
    }
    Ok(())
}

/// The PCI bus id match works even where our PID is hidden: the GPU NVML finds at CUDA's bus id
/// reports that same bus id, NVML's process list can be read on it, and every entry it lists has a
/// plausible figure.
fn nvml_finds_the_cuda_device() -> Result<(), Failed> {
    let device = Device::new(0)?;
    let _context = device.tracker()?.allocate(1 << 20, Purpose::IntermediateBuffers, "context")?;
    let info = device.info()?;
    let nvml = Nvml::load()?;
    let nvml_bus_id = nvml.device(&info.pci_bus_id)?.pci_info()?.bus_id;
    ensure!(
        PciBusId::parse(&nvml_bus_id)? == PciBusId::parse(&info.pci_bus_id)?,
        "NVML's GPU at CUDA's {} is at {nvml_bus_id}",
        info.pci_bus_id
    );
    let list = nvml.processes(&info.pci_bus_id)?;
    println!("[ vramguard ] NVML lists on {nvml_bus_id}: {list:?} (our pid {})", std::process::id());
    for entry in &list {
        let plausible = match entry.used_gpu_memory {
            UsedGpuMemory::Unavailable => true,
            UsedGpuMemory::Used(bytes) => bytes <= info.memory.total_bytes,
        };
        ensure!(plausible, "implausible entry {entry:?}");
    }
    Ok(())
}

fn known_or_explained() -> Result<(), Failed> {
    let device = Device::new(0)?;
    let _context = device.tracker()?.allocate(1 << 20, Purpose::IntermediateBuffers, "context")?;
    let answer = process_vram(0);
    println!("[ vramguard ] process_vram(0) = {answer:?}");
    match answer {
        ProcessVram::Known(bytes) => {
            let used = device.memory_info()?.used_bytes();
            ensure!(bytes >= 1 << 20, "{bytes} bytes with a live context and 1 MiB allocated");
            ensure!(bytes <= used, "the process holds {bytes} bytes, more than the GPU's {used} in use");
        }
        ProcessVram::Unknown(why) => ensure!(hidden_by_pid_namespace(&why), "unknown without cause: {why}"),
    }
    Ok(())
}

fn follows_a_1_gib_allocation() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let before = process_vram(0);
    let weights = tracker.allocate(GIB, Purpose::ModelWeights, "x")?;
    let tracked = tracker.total_bytes();
    let Some(start) = before.bytes() else {
        let during = process_vram(0);
        drop(weights);
        let ProcessVram::Unknown(why) = &before else { unreachable!() };
        ensure!(hidden_by_pid_namespace(why), "unknown without cause: {why}");
        ensure!(during.bytes().is_none(), "a figure appeared while our PID is hidden: {during:?}");
        println!("[ vramguard ] unknown before and during the allocation, as it must be here: {why}");
        return Ok(());
    };
    let during = wait_for(|bytes| bytes >= start + GIB)?;
    ensure!(during >= start + GIB, "rose from {start} to only {during} after allocating 1 GiB");
    ensure!(during >= tracked, "process {during} below tracked {tracked}");
    drop(weights);
    let after = wait_for(|bytes| bytes + GIB <= during)?;
    ensure!(after + GIB <= during, "fell from {during} to only {after} after freeing 1 GiB");
    println!("[ vramguard ] process VRAM {start} -> {during} (tracked {tracked}) -> {after}");
    Ok(())
}

/// NVML's figure, polled for up to two seconds until `done` holds (the last reading otherwise).
fn wait_for(done: impl Fn(u64) -> bool) -> Result<u64, Failed> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let bytes = process_vram(0).bytes().ok_or("NVML's figure disappeared")?;
        if done(bytes) || Instant::now() > deadline {
            return Ok(bytes);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one accepted cause of Unknown on a GPU host: our PID is not NVML's because this process
/// runs in its own PID namespace.
fn hidden_by_pid_namespace(why: &str) -> bool {
    in_own_pid_namespace() == Some(true) && why.contains("PID namespace")
}

/// Issue 16, part 5: with NVML's real figure, the ledger splits untracked VRAM into the context
/// measured before any allocation, the pool's cache (a freed Pool allocation stays in it) and the
/// remainder; untracked memory that grows every check (a raw cudaMalloc outside vramguard, 320 MiB
/// a check) is a suspected leak after the window, and so is a purpose that grows steadily — both
/// in the report and the metrics, while the worker stays healthy.
fn ledger_splits_and_flags_growth() -> Result<(), Failed> {
    use vramguard::health::{HealthConfig, HealthMonitor, HealthSource, HealthStatus};
    use vramguard::AllocationKind;
    extern "C" {
        fn cudaMalloc(ptr: *mut *mut std::ffi::c_void, bytes: usize) -> i32;
        fn cudaFree(ptr: *mut std::ffi::c_void) -> i32;
    }
    let device = Device::new(0)?;
    let tracker = device.tracker()?;
    device.memory_info()?;
    let context = vramguard::nvml::process_vram_bytes(0);
    let Some(context) = context else {
        return Err(format!("NVML gives no process figure here: {:?}", process_vram(0)).into());
    };
    // 64 MiB of Pool memory, freed: it stays in the pool's cache.
    drop(tracker.allocate_kind(64 << 20, Purpose::KVCache, AllocationKind::Pool, "cached")?);
    let config = HealthConfig { leak_window_checks: 3, leak_min_growth_bytes: 512 << 20, ..HealthConfig::default() };
    let monitor = HealthMonitor::new(tracker.clone(), config)?.with_context_bytes(Some(context));
    let first = monitor.check_now();
    let ledger = first.ledger.clone().ok_or("no ledger with NVML's figure")?;
    println!("[ vramguard ] ledger at the first check: {ledger:?}");
    ensure!(ledger.cuda_context_bytes == context && ledger.cuda_context_measured == "at device open", "{ledger:?}");
    ensure!(ledger.pool_cache_bytes >= 64 << 20, "{ledger:?}");
    ensure!(
        ledger.untracked_bytes
            == ledger.cuda_context_bytes + ledger.pool_cache_bytes + ledger.witness_bytes + ledger.remainder_bytes
            || ledger.remainder_bytes == 0,
        "{ledger:?}"
    );
    let mut raw = Vec::new();
    let mut weights = Vec::new();
    let mut suspected = Vec::new();
    for _ in 0..3 {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; freed below.
        ensure!(unsafe { cudaMalloc(&mut ptr, 320 << 20) } == 0, "cudaMalloc failed");
        raw.push(ptr);
        weights.push(tracker.allocate(320 << 20, Purpose::ModelWeights, "growing weights")?);
        let report = monitor.check_now();
        ensure!(report.status == HealthStatus::Healthy, "a suspicion never changes health: {report:?}");
        suspected = report.leak_suspected.iter().map(|s| (s.source.clone(), s.grew_bytes)).collect::<Vec<_>>();
    }
    println!("[ vramguard ] suspected after 3 growing checks: {suspected:?}");
    ensure!(suspected.iter().any(|(source, grew)| source == "untracked" && *grew >= 640 << 20), "{suspected:?}");
    ensure!(suspected.iter().any(|(source, grew)| source == "ModelWeights" && *grew == 640 << 20), "{suspected:?}");
    let metrics = vramguard::server::encode_metrics(&monitor.report())?;
    ensure!(metrics.contains("vramguard_leak_suspected{source=\"untracked\"} 1"), "{metrics}");
    ensure!(metrics.contains("vramguard_leak_suspected{source=\"model_weights\"} 1"), "{metrics}");
    ensure!(metrics.contains("vramguard_leak_suspected{source=\"kv_cache\"} 0"), "{metrics}");
    for ptr in raw {
        // SAFETY: allocated above by cudaMalloc, freed once.
        unsafe { cudaFree(ptr) };
    }
    drop(weights);
    let report = monitor.check_now();
    ensure!(report.leak_suspected.is_empty(), "the growth fell back: {:?}", report.leak_suspected);
    Ok(())
}
