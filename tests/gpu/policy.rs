//! Budgets and model slots on a real device: the budget holds under concurrency, eviction gives
//! memory back to the driver, a real device out-of-memory is answered by eviction and retry, an
//! integrity pass never makes slots look busy, and the monitor's unload at Critical is bounded.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use vramguard::monitor::{AlertLevel, GpuMonitor, MonitorConfig};
use vramguard::slots::presets::{self, Embedder, MODEL_SIZES};
use vramguard::slots::{DeviceBacking, EvictionReason, ManualClock, ModelSlotManager, SlotConfig};
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
        gpu(
            "policy::monitor_unloads_nothing_that_cannot_bring_the_device_below_critical",
            monitor_unloads_nothing_it_cannot_bring_below,
        ),
        gpu(
            "policy::loads_needing_eviction_succeed_during_integrity_passes",
            loads_needing_eviction_succeed_during_integrity_passes,
        ),
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
    let manager = ModelSlotManager::<Embedder>::on_device(backing, presets::seed000().budget_bytes);
    for (embedder, size) in MODEL_SIZES {
        manager.allocate_slot(embedder, size)?;
    }
    ensure!(manager.loaded_count() == 13, "loaded {}", manager.loaded_count());
    ensure!(
        tracker.bytes_for(Purpose::ModelWeights) == presets::seed000().model_bytes(),
        "tracked {}",
        tracker.bytes_for(Purpose::ModelWeights)
    );
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
    ensure!(
        reasons.lock().unwrap()[0] == ("first".to_string(), EvictionReason::DeviceOutOfMemory),
        "{:?}",
        reasons.lock().unwrap()
    );
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
    let clock = ManualClock::new();
    let backing = DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device };
    let slots = ModelSlotManager::with_config(SlotConfig {
        budget_bytes: 64 * GIB,
        backing: Some(backing),
        clock: Arc::new(clock.clone()),
        ..SlotConfig::default()
    });
    for name in ["old", "mid", "new"] {
        slots.allocate_slot(name.to_string(), 2 * GIB)?;
        clock.advance(Duration::from_secs(1));
    }
    monitor.set_unloader(Arc::new(slots.clone()));
    // Loaded 3 s ago at most: the default 30 s unload residency keeps every slot.
    let first = monitor.check_now()?.remove(0);
    ensure!(first.level == AlertLevel::Critical, "{first:?}");
    ensure!(
        monitor.unloaded().is_empty() && slots.loaded_count() == 3,
        "unloaded {:?} before 30 s",
        monitor.unloaded()
    );
    clock.advance(Duration::from_secs(30));
    let before = monitor.check_now()?[0].free_bytes;
    let unloaded = monitor.unloaded();
    ensure!(unloaded.first().map(String::as_str) == Some("old"), "unloaded {unloaded:?}");
    ensure!(slots.has_slot(&"new".to_string()), "the most recently used slot was unloaded");
    let after = monitor.check_now()?.remove(0);
    ensure!(after.level != AlertLevel::Critical, "still critical: {after:?}");
    ensure!(
        after.free_bytes >= before + 2 * GIB * unloaded.len() as u64,
        "driver free {} -> {}",
        before,
        after.free_bytes
    );
    ensure!(slots.stats().evictions == unloaded.len() as u64, "{:?}", slots.stats());
    Ok(())
}

/// Critical 3.5 GiB above what the device used at the start; slots of 2, 2 and 1 GiB: 1.5 GiB must
/// go. With the two 2 GiB slots pinned, only 1 GiB could: the monitor unloads nothing, at any
/// check (before, it unloaded every idle slot at every check). Unpinned, one 2 GiB slot goes.
fn monitor_unloads_nothing_it_cannot_bring_below() -> Result<(), Failed> {
    let tracker = tracker()?;
    let memory = Device::new(0)?.memory_info()?;
    let used_at_start = memory.total_bytes - memory.free_bytes;
    let percent = |bytes: u64| bytes as f64 * 100.0 / memory.total_bytes as f64;
    let config = MonitorConfig {
        warning_percent: percent(used_at_start + 2 * GIB),
        critical_percent: percent(used_at_start + 7 * GIB / 2),
        ..MonitorConfig::default()
    };
    let monitor = GpuMonitor::new(config)?;
    let backing = DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device };
    let slots = ModelSlotManager::with_config(SlotConfig {
        budget_bytes: 64 * GIB,
        backing: Some(backing),
        unload_min_residency: Duration::ZERO,
        ..SlotConfig::default()
    });
    for (name, bytes) in [("a", 2 * GIB), ("b", 2 * GIB), ("c", GIB)] {
        slots.allocate_slot(name.to_string(), bytes)?;
    }
    slots.pin(&"a".to_string(), true)?;
    slots.pin(&"b".to_string(), true)?;
    monitor.set_unloader(Arc::new(slots.clone()));
    for check in 0..3 {
        let reading = monitor.check_now()?.remove(0);
        ensure!(reading.level == AlertLevel::Critical, "check {check}: {reading:?}");
    }
    ensure!(monitor.unloaded().is_empty() && monitor.unloads().is_empty(), "unloaded {:?}", monitor.unloaded());
    ensure!(slots.loaded_count() == 3 && slots.stats().evictions == 0, "{:?}", slots.slots());

    slots.pin(&"b".to_string(), false)?;
    let reading = monitor.check_now()?.remove(0);
    ensure!(reading.level == AlertLevel::Critical, "{reading:?}");
    ensure!(
        monitor.unloaded() == ["b".to_string()],
        "unloaded {:?}: the fewest slots that free 1.5 GiB is b",
        monitor.unloaded()
    );
    let after = monitor.check_now()?.remove(0);
    ensure!(after.level != AlertLevel::Critical, "still critical: {after:?}");
    ensure!(tracker.total_bytes() == 3 * GIB, "tracker holds {}", tracker.total_bytes());
    Ok(())
}

/// Before, the integrity pass held every slot's memory handle for the whole pass, and a slot's
/// users were counted from that handle: during a pass every slot looked in use, and a load that
/// needed an eviction failed. A pass runs back to back here while loads that each need an
/// eviction run: every one must evict and succeed, and the table stays usable throughout.
fn loads_needing_eviction_succeed_during_integrity_passes() -> Result<(), Failed> {
    let tracker = tracker()?;
    let slot = 512 * MIB;
    // Four slots fit the budget; every further load evicts (one or two: loads aim below Critical).
    let manager = device_slots(&tracker, 4 * slot);
    let pattern: Vec<u8> = (0..slot).map(|i| (i % 251) as u8).collect();
    let load = |name: String| -> Result<Vec<String>, Failed> {
        let outcome = manager.load_slot(name.clone(), slot)?;
        let guard = manager.use_slot(&name)?;
        guard.copy_from_host(0, &pattern)?;
        guard.mark_loaded()?;
        Ok(outcome.evicted)
    };
    for i in 0..4 {
        load(format!("slot {i}"))?;
    }
    let stop = AtomicBool::new(false);
    let passes = AtomicU64::new(0);
    let violations = Mutex::new(Vec::new());
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let found = manager.verify_integrity();
                if !found.is_empty() {
                    violations.lock().unwrap().extend(found.into_iter().map(|v| v.key));
                }
                passes.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Let the passes begin before the first load.
        while passes.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let mut outcome = Ok(());
        for i in 4..64 {
            outcome = match load(format!("slot {i}")) {
                Ok(evicted) if evicted.is_empty() => Err(format!("load {i} evicted nothing")),
                Ok(_) if manager.slots().len() > 4 => Err(format!("{} slots after load {i}", manager.slots().len())),
                Ok(_) => Ok(()),
                Err(error) => Err(format!("load {i} failed during integrity passes: {error:?}")),
            };
            if outcome.is_err() {
                break;
            }
        }
        stop.store(true, Ordering::SeqCst); // before any return: the pass thread must end
        outcome
    });
    result?;
    ensure!(passes.load(Ordering::SeqCst) >= 2, "only {} passes ran", passes.load(Ordering::SeqCst));
    ensure!(violations.lock().unwrap().is_empty(), "integrity violations: {:?}", violations.lock().unwrap());
    ensure!(manager.stats().evictions >= 60, "{:?}", manager.stats());
    let held = manager.loaded_count() as u64 * slot;
    ensure!(
        tracker.total_bytes() == held && manager.allocated() == held,
        "tracked {}, {held} loaded",
        tracker.total_bytes()
    );
    Ok(())
}
