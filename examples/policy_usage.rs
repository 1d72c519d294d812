//! Budgets, model slots, reservations and the GPU monitor together (Rust API).
use std::process::ExitCode;
use std::sync::Arc;

use vramguard::monitor::{GpuMonitor, MonitorConfig};
use vramguard::reservation::{MemoryGuard, MemoryLimits};
use vramguard::slots::presets::{self, Embedder, MODEL_SIZES};
use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig};
use vramguard::{AllocationKind, Budget, BudgetedAllocator, Device, Error, Purpose};

fn run() -> vramguard::Result<()> {
    let tracker = Device::new(0)?.tracker()?;

    // Model weights: seed 000's preset, the 13 embedders as slots of real device memory in 8 GiB.
    let backing = DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device };
    let config = SlotConfig { backing: Some(backing), ..presets::seed000().slot_config() };
    let slots = ModelSlotManager::with_config(config);
    for (embedder, bytes) in MODEL_SIZES {
        slots.allocate_slot(embedder, bytes)?;
        // Upload the weights through the slot (`copy_from_host`), then declare them loaded: their
        // checksum becomes the reference that every integrity check compares against.
        slots.use_slot(&embedder)?.mark_loaded()?;
    }
    slots.touch(&Embedder::Semantic); // now the most recently used slot
    println!(
        "slots: {} loaded, {} bytes, pressure {}",
        slots.loaded_count(),
        slots.allocated(),
        slots.pressure_level()
    );
    println!("to fit 7 GiB more, load_slot would evict {:?}", slots.plan_fit(7 << 30)?);

    // KV cache and scratch: a 2 GiB budget shared by allocations and reservations.
    let budget = Budget::new(2 << 30)?;
    let allocator = BudgetedAllocator::new(tracker.clone(), budget.clone());
    let _kv = allocator.allocate(1 << 30, Purpose::KVCache, "kv cache")?;
    let guard = MemoryGuard::with_budget(MemoryLimits::default(), budget)?;
    let batch = guard.request_allocation("batch-42", 256 << 20)?;
    println!(
        "reserved {} bytes for {}; KV budget pressure {}",
        batch.bytes(),
        batch.operation_id(),
        allocator.budget().pressure()
    );

    // The monitor: alerts on level changes, unloads idle slots at critical, dumps on OOM.
    let monitor = Arc::new(GpuMonitor::new(MonitorConfig::default())?);
    monitor.attach_tracker(tracker.clone());
    monitor.set_unloader(Arc::new(slots.clone()));
    monitor.on_alert(|alert| eprintln!("GPU{} memory {:?} -> {:?}", alert.device, alert.previous, alert.level));
    slots.on_oom(monitor.oom_hook());
    let _background = monitor.start()?;
    let now = &monitor.check_now()?[0];
    let fits = monitor.can_load_model(0, 4 << 30)?;
    println!(
        "GPU0: {:.1} % used, {} bytes tracked; a 4 GiB model fits: {fits}",
        now.utilization_percent, now.tracked_bytes
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vramguard: {error}\n  {}", error.remediation());
            ExitCode::from(if matches!(error, Error::NoDevice(_)) { 101 } else { 1 })
        }
    }
}
