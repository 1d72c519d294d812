//! Soak and fault runs on the GPU (issue 5): 8 threads × 100,000 mixed allocations and frees of
//! every kind and purpose while residency checks and slot evictions run, after which the tracker
//! is empty and the driver's free memory is back (within 2 MiB); and allocation until the device
//! is really out of memory. `VRAMGUARD_SOAK_OPS` sets the operations per thread.
#[path = "support/gpu_gate.rs"]
#[allow(dead_code)] // shared with the other GPU test binaries
mod gpu_gate;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use libtest_mimic::{Arguments, Failed};
use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig};
use vramguard::{AllocationKind, Device, DeviceBuffer, Error, Purpose, PurposeSet, Tracker};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const THREADS: u64 = 8;

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        gpu_gate::gpu("soak::mixed_churn_returns_every_byte", mixed_churn_returns_every_byte),
        gpu_gate::gpu("soak::real_oom_carries_breakdown_and_recovers", real_oom_carries_breakdown_and_recovers),
        gpu_gate::gpu("soak::every_eviction_of_device_slots_has_a_receipt", every_eviction_has_a_receipt),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn free_bytes() -> Result<u64, Failed> {
    Ok(Device::new(0)?.memory_info()?.free_bytes)
}

/// A small deterministic generator: each thread's sequence is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_allocation(tracker: &Tracker, rng: &mut Rng) -> vramguard::Result<DeviceBuffer> {
    let purpose = Purpose::ALL[rng.below(4) as usize];
    let (kind, max) = match rng.below(8) {
        0..=3 => (AllocationKind::Device, 4 * MIB),
        4..=5 => (AllocationKind::Pool, 4 * MIB),
        6 => (AllocationKind::Managed, MIB),
        _ => (AllocationKind::PinnedHost, 64 << 10), // page-locking is slow: keep it small
    };
    tracker.allocate_kind(1 + rng.below(max), purpose, kind, "soak")
}

fn mixed_churn_returns_every_byte() -> Result<(), Failed> {
    let ops: u64 = std::env::var("VRAMGUARD_SOAK_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    // Warm up what the driver keeps once per context (unified-memory bookkeeping, the pool).
    let tracker = Device::new(0)?.tracker()?;
    for kind in AllocationKind::ALL.into_iter().filter(|k| *k != AllocationKind::Adopted) {
        let mut buffer = tracker.allocate_kind(MIB, Purpose::Unknown, kind, "warm-up")?;
        buffer.copy_from_host(0, &[1u8; 64])?;
    }
    let before = free_bytes()?;
    let slots = ModelSlotManager::<String>::with_config(SlotConfig {
        budget_bytes: 256 * MIB,
        backing: Some(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Pool }),
        ..SlotConfig::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        // Residency checks run all along (they see the Managed/PinnedHost buffers as violations).
        let checker = {
            let (tracker, stop, checks) = (tracker.clone(), Arc::clone(&stop), Arc::clone(&checks));
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if tracker.verify(PurposeSet::ALL).is_ok() {
                        checks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (tracker, slots) = (tracker.clone(), slots.clone());
                scope.spawn(move || -> Result<(), String> {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                    let mut held: Vec<DeviceBuffer> = Vec::new();
                    for i in 0..ops {
                        match rng.below(10) {
                            0..=5 if held.len() < 32 => match random_allocation(&tracker, &mut rng) {
                                Ok(buffer) => held.push(buffer),
                                Err(Error::OutOfMemory(_)) => {}
                                Err(e) => return Err(format!("thread {t} op {i}: {e}")),
                            },
                            6 => {
                                // Slots churn through a small budget: loads evict.
                                let name = format!("t{t}-{}", rng.below(6));
                                if !slots.has_slot(&name) {
                                    let _ = slots.load_slot(name, MIB * (1 + rng.below(32)));
                                }
                            }
                            7 if !held.is_empty() => {
                                let buffer = held.swap_remove(rng.below(held.len() as u64) as usize);
                                let mut back = [0u8; 8];
                                buffer
                                    .copy_to_host(0, &mut back[..buffer.len().min(8) as usize])
                                    .map_err(|e| e.to_string())?;
                            }
                            _ if !held.is_empty() => drop(held.swap_remove(rng.below(held.len() as u64) as usize)),
                            _ => {}
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let failures = workers.into_iter().filter_map(|w| w.join().unwrap().err()).collect();
        stop.store(true, Ordering::Relaxed);
        checker.join().unwrap();
        failures
    });
    let stats = slots.stats();
    drop(slots);
    let usage = tracker.usage();
    let drop_failures = tracker.drop_failures();
    // The tracker's memory pool keeps freed blocks cached (its release threshold is the maximum):
    // they go back to the driver with the pool, when the tracker goes.
    drop(tracker);
    let after = free_bytes()?;
    println!(
        "[ vramguard ] soak: {THREADS} threads x {ops} ops in {:.1} s, {} allocations, {} residency sweeps, {} evictions; \
         driver free {before} bytes before, {after} after",
        started.elapsed().as_secs_f64(),
        usage.lifetime_allocations,
        checks.load(Ordering::Relaxed),
        stats.evictions,
    );
    crate::ensure!(failures.is_empty(), "{failures:?}");
    crate::ensure!(usage.total_bytes == 0 && usage.allocation_count == 0, "tracker not empty: {usage:?}");
    crate::ensure!(drop_failures == 0, "{drop_failures} frees failed");
    crate::ensure!(stats.evictions > 0, "no eviction happened: {stats:?}");
    crate::ensure!(before.saturating_sub(after) <= 2 * MIB, "driver free memory short by {} bytes", before - after);
    Ok(())
}

fn real_oom_carries_breakdown_and_recovers() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let before = free_bytes()?;
    let mut held = Vec::new();
    let _kv = tracker.allocate(GIB, Purpose::KVCache, "kv")?;
    let error = loop {
        match tracker.allocate(GIB, Purpose::ModelWeights, "fill") {
            Ok(buffer) => held.push(buffer),
            Err(error) => break error,
        }
        crate::ensure!(held.len() < 4096, "the device never ran out");
    };
    let Error::OutOfMemory(oom) = &error else { return Err(format!("expected out-of-memory, got {error}").into()) };
    println!("[ vramguard ] out of memory after {} GiB:\n{error}", held.len() + 1);
    crate::ensure!(oom.requested == GIB && oom.available.is_some_and(|a| a < GIB), "{oom:?}");
    crate::ensure!(oom.usage.bytes(Purpose::ModelWeights) == held.len() as u64 * GIB, "{oom:?}");
    crate::ensure!(oom.usage.bytes(Purpose::KVCache) == GIB, "{oom:?}");
    crate::ensure!(error.to_string().contains("cudaErrorMemoryAllocation"), "{error}");
    crate::ensure!(tracker.allocation_count() == held.len() as u64 + 1, "the failed allocation was recorded");
    held.pop();
    let next = tracker.allocate(GIB, Purpose::ModelWeights, "after a free")?;
    drop(next);
    drop(held);
    drop(_kv);
    let after = free_bytes()?;
    crate::ensure!(tracker.total_bytes() == 0, "tracker not empty");
    crate::ensure!(before.saturating_sub(after) <= 2 * MIB, "driver free memory short by {} bytes", before - after);
    Ok(())
}

/// Issue 16, part 3: 8 threads load slots of `Device` memory through a 256 MiB budget, so that
/// loads evict; every eviction, and the unloads at the end, get a receipt from the driver: the
/// bytes reclaimed are exactly the bytes evicted and unloaded, none unreclaimed.
fn every_eviction_has_a_receipt() -> Result<(), Failed> {
    let ops: u64 = std::env::var("VRAMGUARD_SOAK_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000) / 100;
    let tracker = Device::new(0)?.tracker()?;
    let slots = ModelSlotManager::<String>::with_config(SlotConfig {
        budget_bytes: 256 * MIB,
        backing: Some(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device }),
        ..SlotConfig::default()
    });
    let evicted = Arc::new(AtomicU64::new(0));
    let sink = Arc::clone(&evicted);
    slots.on_evict(move |eviction| {
        sink.fetch_add(eviction.size_bytes, Ordering::Relaxed);
    });
    let started = Instant::now();
    let unloaded_during = AtomicU64::new(0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (slots, unloaded_during) = (slots.clone(), &unloaded_during);
                scope.spawn(move || -> Result<(), String> {
                    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (t + 1));
                    for _ in 0..ops {
                        // 24 names a thread, 8 threads, slots of 1-48 MiB in 256 MiB: most loads evict.
                        let name = format!("t{t}-{}", rng.below(24));
                        if rng.below(4) == 0 {
                            // An unload, with its own receipt.
                            unloaded_during.fetch_add(slots.deallocate_slot(&name), Ordering::Relaxed);
                        } else if !slots.has_slot(&name) {
                            match slots.load_slot(name, MIB * (1 + rng.below(48))) {
                                Ok(_) | Err(Error::OutOfMemory(_)) | Err(Error::SlotExists(_)) => {}
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().unwrap().err()).collect()
    });
    let unloaded_during = unloaded_during.load(Ordering::Relaxed);
    let mut unloaded = unloaded_during;
    for slot in slots.slots() {
        unloaded += slots.deallocate_slot(&slot.key);
    }
    let stats = slots.stats();
    let receipts = stats.receipts;
    println!(
        "[ vramguard ] receipts: {THREADS} threads x {ops} loads in {:.1} s, {} evictions ({} MiB) and {} MiB unloaded; \
         {} receipts confirmed, {} not; {} MiB reclaimed, {} MiB unreclaimed",
        started.elapsed().as_secs_f64(),
        stats.evictions,
        evicted.load(Ordering::Relaxed) / MIB,
        unloaded / MIB,
        receipts.confirmed,
        receipts.unconfirmed,
        receipts.reclaimed_bytes / MIB,
        receipts.unreclaimed_bytes / MIB,
    );
    crate::ensure!(failures.is_empty(), "{failures:?}");
    crate::ensure!(stats.evictions > 0, "no eviction happened: {stats:?}");
    crate::ensure!(receipts.unconfirmed == 0 && receipts.unreclaimed_bytes == 0, "{receipts:?}");
    crate::ensure!(
        receipts.reclaimed_bytes == evicted.load(Ordering::Relaxed) + unloaded,
        "reclaimed {} bytes, evicted {} + unloaded {unloaded}",
        receipts.reclaimed_bytes,
        evicted.load(Ordering::Relaxed)
    );
    crate::ensure!(tracker.total_bytes() == 0, "{} bytes still tracked", tracker.total_bytes());
    Ok(())
}
