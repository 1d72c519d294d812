//! Budgets and model slots on a real device: the budget holds under concurrency, eviction gives
//! memory back to the driver, and a real device out-of-memory is answered by eviction and retry.
use std::sync::{Arc, Mutex};

use libtest_mimic::{Failed, Trial};
use vramguard::monitor::{AlertLevel, GpuMonitor, MonitorConfig};
use vramguard::slots::{DeviceBacking, Embedder, EvictionReason, ModelSlotManager, SlotConfig, MODEL_SIZES};
use vramguard::{AllocationKind, Budget, BudgetedAllocator, Device, Error, OomSource, Purpose, PurposeSet, Tracker};

use crate::ensure;
use crate::gpu_gate::gpu;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("policy::budget_boundary_on_the_device", budget_boundary_on_the_device),
        gpu("policy::sixteen_threads_against_a_small_budget", sixteen_threads_against_a_small_budget),
        gpu("policy::preset_embedders_on_the_device", preset_embedders_on_the_device),
        gpu("policy::eviction_returns_memory_to_the_driver", eviction_returns_memory_to_the_driver),
        gpu("policy::device_oom_evicts_and_retries", device_oom_evicts_and_retries),
        gpu("policy::monitor_unloads_idle_slots_at_critical", monitor_unloads_idle_slots_at_critical),
    ]
}

fn tracker() -> Result<Tracker, Failed> {
    Ok(Device::new(0)?.tracker()?)
}

fn free_bytes() -> Result<u64, Failed> {
    Ok(Device::new(0)?.memory_info()?.free_bytes)
}

fn device_slots(tracker: &Tracker, budget: u64) -> ModelSlotManager<String> {
    let backing = DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device };
    ModelSlotManager::with_config(SlotConfig { budget_bytes: budget, backing: Some(backing), ..SlotConfig::default() })
}

fn budget_boundary_on_the_device() -> Result<(), Failed> {
    let tracker = tracker()?;
    let allocator = BudgetedAllocator::new(tracker.clone(), Budget::new(64 * MIB)?);
    let exact = allocator.allocate(64 * MIB, Purpose::KVCache, "exactly the budget")?;
    ensure!(tracker.total_bytes() == 64 * MIB, "tracked {}", tracker.total_bytes());
    let free_before = free_bytes()?;
    let over = allocator.allocate(1, Purpose::KVCache, "one byte over");
    let Err(Error::OutOfMemory(oom)) = over else { return Err(format!("expected out-of-memory, got {over:?}").into()) };
    ensure!(oom.source == OomSource::Budget && oom.available == Some(0), "{oom}");
    ensure!(tracker.allocation_count() == 1 && allocator.budget().used() == 64 * MIB, "state changed");
    ensure!(free_bytes()? == free_before, "the device was touched by a refused allocation");
    drop(exact);
    ensure!(allocator.budget().used() == 0 && tracker.total_bytes() == 0, "not released");
    Ok(())
}

fn sixteen_threads_against_a_small_budget() -> Result<(), Failed> {
    let tracker = tracker()?;
    let limit = 256 * MIB;
    let allocator = BudgetedAllocator::new(tracker.clone(), Budget::new(limit)?);
    let exceeded = Arc::new(Mutex::new(None));
    std::thread::scope(|scope| {
        for t in 0..16u64 {
            let (allocator, tracker, exceeded) = (allocator.clone(), tracker.clone(), Arc::clone(&exceeded));
            scope.spawn(move || {
                let mut held = Vec::new();
                for i in 0..200u64 {
                    let bytes = MIB * (1 + (t * 7 + i * 13) % 32);
                    let kind = if i % 2 == 0 { AllocationKind::Device } else { AllocationKind::Pool };
                    if let Ok(buffer) = allocator.allocate_kind(bytes, Purpose::KVCache, kind, "churn") {
                        held.push(buffer);
                    }
                    let tracked = tracker.total_bytes();
                    if tracked > limit || allocator.budget().used() > limit {
                        *exceeded.lock().unwrap() = Some(tracked);
                    }
                    if held.len() > 2 {
                        held.remove(0);
                    }
                }
            });
        }
    });
    ensure!(exceeded.lock().unwrap().is_none(), "budget exceeded: {:?}", exceeded.lock().unwrap());
    ensure!(tracker.total_bytes() == 0 && tracker.allocation_count() == 0, "left {}", tracker.total_bytes());
    ensure!(allocator.budget().used() == 0, "budget not empty");
    ensure!(allocator.budget().peak() <= limit && allocator.budget().peak() > 0, "peak {}", allocator.budget().peak());
    Ok(())
}

fn preset_embedders_on_the_device() -> Result<(), Failed> {
    let tracker = tracker()?;
    let backing = DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device };
    let manager = ModelSlotManager::on_device(backing, vramguard::slots::MODEL_BUDGET_BYTES);
    for (embedder, size) in MODEL_SIZES {
        manager.allocate_slot(embedder, size)?;
    }
    ensure!(manager.loaded_count() == 13, "loaded {}", manager.loaded_count());
    ensure!(tracker.bytes_for(Purpose::ModelWeights) == Embedder::preset_total_bytes(), "tracked {}", tracker.bytes_for(Purpose::ModelWeights));
    ensure!(manager.slots().iter().all(|s| s.on_device), "slots without device memory");
    let report = tracker.verify(PurposeSet::of(&[Purpose::ModelWeights]))?;
    ensure!(report.resident && report.checked == 13, "{report:?}");
    let snapshot = tracker.snapshot()?;
    ensure!(snapshot.iter().any(|a| a.description == "E7 Code" && a.bytes == 300_000_000), "{snapshot:?}");
    drop(manager);
    ensure!(tracker.total_bytes() == 0, "slots not freed with the manager");
    Ok(())
}

fn eviction_returns_memory_to_the_driver() -> Result<(), Failed> {
    let tracker = tracker()?;
    let manager = device_slots(&tracker, 8 * GIB);
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&evicted);
    manager.on_evict(move |e| sink.lock().unwrap().push(e.key.clone()));
    for name in ["a", "b", "c"] {
        manager.allocate_slot(name.to_string(), GIB)?;
    }
    manager.touch(&"a".to_string());
    let before = free_bytes()?;
    let gone = manager.evict_lru(GIB);
    let after = free_bytes()?;
    ensure!(gone == ["b".to_string()], "evicted {gone:?}");
    ensure!(*evicted.lock().unwrap() == ["b".to_string()], "callback saw {:?}", evicted.lock().unwrap());
    ensure!(after >= before + GIB, "driver free rose by {} bytes, less than 1 GiB", after as i64 - before as i64);
    ensure!(tracker.total_bytes() == 2 * GIB && manager.allocated() == 2 * GIB, "tracked {}", tracker.total_bytes());
    Ok(())
}

fn device_oom_evicts_and_retries() -> Result<(), Failed> {
    let tracker = tracker()?;
    let free = free_bytes()?;
    // Three slots fit in the device's free memory, a fourth does not; the budget (4x the GPU)
    // never refuses, so the failure comes from cudaMalloc itself.
    let slot = (free * 2 / 7) & !(MIB - 1);
    let manager = device_slots(&tracker, free * 4);
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&reasons);
    manager.on_evict(move |e| sink.lock().unwrap().push((e.key.clone(), e.reason)));
    for name in ["first", "second", "third"] {
        manager.load_slot(name.to_string(), slot)?;
    }
    let outcome = manager.load_slot("fourth".to_string(), slot)?;
    ensure!(outcome.oom_retries >= 1, "no retry: {outcome:?}");
    ensure!(outcome.evicted.first() == Some(&"first".to_string()), "evicted {:?}", outcome.evicted);
    ensure!(reasons.lock().unwrap()[0] == ("first".to_string(), EvictionReason::DeviceOutOfMemory), "{:?}", reasons.lock().unwrap());
    ensure!(manager.has_slot(&"fourth".to_string()), "the retry did not load");
    let stats = manager.stats();
    ensure!(stats.ooms >= 1 && stats.oom_retries >= 1 && stats.evictions >= 1, "{stats:?}");
    ensure!(tracker.bytes_for(Purpose::ModelWeights) == slot * manager.loaded_count() as u64, "tracker disagrees");
    Ok(())
}

fn monitor_unloads_idle_slots_at_critical() -> Result<(), Failed> {
    let tracker = tracker()?;
    let memory = Device::new(0)?.memory_info()?;
    let used_at_start = memory.total_bytes - memory.free_bytes;
    let percent = |bytes: u64| bytes as f64 * 100.0 / memory.total_bytes as f64;
    // Critical 4 GiB above what the device uses now; three 2 GiB slots cross it.
    let config = MonitorConfig {
        warning_percent: percent(used_at_start + 2 * GIB),
        critical_percent: percent(used_at_start + 4 * GIB),
        ..MonitorConfig::default()
    };
    let monitor = GpuMonitor::new(config)?;
    let slots = device_slots(&tracker, 64 * GIB);
    for name in ["old", "mid", "new"] {
        slots.allocate_slot(name.to_string(), 2 * GIB)?;
    }
    monitor.set_unloader(Arc::new(slots.clone()));
    let before = monitor.check_now()?[0].free_bytes;
    let unloaded = monitor.unloaded();
    ensure!(unloaded.first().map(String::as_str) == Some("old"), "unloaded {unloaded:?}");
    ensure!(slots.has_slot(&"new".to_string()), "the most recently used slot was unloaded");
    let after = monitor.check_now()?.remove(0);
    ensure!(after.level != AlertLevel::Critical, "still critical: {after:?}");
    ensure!(after.free_bytes >= before + 2 * GIB * unloaded.len() as u64, "driver free {} -> {}", before, after.free_bytes);
    ensure!(slots.stats().evictions == unloaded.len() as u64, "{:?}", slots.stats());
    Ok(())
}
