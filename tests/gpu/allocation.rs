//! DeviceBuffer through the product: allocations made by vramguard, observed by the test.
use libtest_mimic::{Failed, Trial};
use vramguard::{AllocationKind, Device, Error, Purpose};

use crate::ensure;
use crate::gpu_gate::gpu;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("allocation::recorded_then_unrecorded_on_drop", recorded_then_unrecorded_on_drop),
        gpu("allocation::usage_by_purpose", usage_by_purpose),
        gpu("allocation::driver_memory_returns_after_drop", driver_memory_returns_after_drop),
        gpu("allocation::round_trip_every_kind", round_trip_every_kind),
        gpu("allocation::copy_out_of_range_rejected", copy_out_of_range_rejected),
        gpu("allocation::out_of_memory_carries_breakdown", out_of_memory_carries_breakdown),
        gpu("allocation::adopted_kind_cannot_be_allocated", adopted_kind_cannot_be_allocated),
        gpu("allocation::buffer_keeps_tracker_alive", buffer_keeps_tracker_alive),
        gpu("allocation::ten_threads_share_a_tracker", ten_threads_share_a_tracker),
        gpu("allocation::every_visible_device", every_visible_device),
    ]
}

fn tracker() -> Result<vramguard::Tracker, Failed> {
    Ok(Device::new(0)?.tracker()?)
}

fn recorded_then_unrecorded_on_drop() -> Result<(), Failed> {
    let tracker = tracker()?;
    let weights = tracker.allocate(GIB, Purpose::ModelWeights, "1 GiB model")?;
    ensure!(tracker.total_bytes() == GIB, "total {}", tracker.total_bytes());
    ensure!(tracker.allocation_count() == 1, "count {}", tracker.allocation_count());
    let snapshot = tracker.snapshot()?;
    ensure!(snapshot.len() == 1 && snapshot[0].address == weights.as_ptr() as usize, "{snapshot:?}");
    ensure!(snapshot[0].owned && snapshot[0].description == "1 GiB model", "{snapshot:?}");
    drop(weights);
    ensure!(tracker.total_bytes() == 0 && tracker.allocation_count() == 0, "not un-recorded");
    ensure!(tracker.usage().peak_total_bytes == GIB, "peak");
    ensure!(tracker.drop_failures() == 0, "drop failed");
    Ok(())
}

fn usage_by_purpose() -> Result<(), Failed> {
    let tracker = tracker()?;
    let _w = tracker.allocate(GIB, Purpose::ModelWeights, "weights")?;
    let _k = tracker.allocate(512 * MIB, Purpose::KVCache, "kv")?;
    let _b = tracker.allocate(256 * MIB, Purpose::IntermediateBuffers, "scratch")?;
    let usage = tracker.usage();
    ensure!(usage.bytes(Purpose::ModelWeights) == GIB, "{usage:?}");
    ensure!(usage.bytes(Purpose::KVCache) == 512 * MIB, "{usage:?}");
    ensure!(usage.bytes(Purpose::IntermediateBuffers) == 256 * MIB, "{usage:?}");
    ensure!(usage.allocation_count == 3, "{usage:?}");
    let report = tracker.report()?;
    ensure!(report.contains("ModelWeights") && report.contains("1.75 GiB"), "{report}");
    Ok(())
}

fn driver_memory_returns_after_drop() -> Result<(), Failed> {
    let device = Device::new(0)?;
    let tracker = device.tracker()?;
    let before = device.memory_info()?.free_bytes;
    let block = tracker.allocate(64 * MIB, Purpose::KVCache, "64 MiB")?;
    let during = device.memory_info()?.free_bytes;
    ensure!(before - during >= 64 * MIB, "free fell by only {}", before - during);
    drop(block);
    ensure!(device.memory_info()?.free_bytes == before, "memory not returned");
    Ok(())
}

fn round_trip_every_kind() -> Result<(), Failed> {
    let tracker = tracker()?;
    let data: Vec<u8> = (0..(3 * MIB + 17)).map(|i| (i * 7 + 3) as u8).collect();
    for kind in [AllocationKind::Device, AllocationKind::Pool, AllocationKind::Managed, AllocationKind::PinnedHost] {
        let mut buffer = tracker.allocate_kind(data.len() as u64, Purpose::IntermediateBuffers, kind, "round trip")?;
        buffer.copy_from_host(0, &data)?;
        ensure!(buffer.to_vec()? == data, "{kind} read back differs");
        let mut tail = [0u8; 17];
        buffer.copy_to_host(data.len() as u64 - 17, &mut tail)?;
        ensure!(tail[..] == data[data.len() - 17..], "{kind} tail differs");
    }
    ensure!(tracker.total_bytes() == 0, "buffers not freed");
    Ok(())
}

fn copy_out_of_range_rejected() -> Result<(), Failed> {
    let tracker = tracker()?;
    let mut buffer = tracker.allocate(1024, Purpose::KVCache, "small")?;
    let err = buffer.copy_from_host(100, &[0u8; 1000]).unwrap_err();
    ensure!(err.code() == "VRAM-E008", "{err}");
    let err = buffer.copy_from_host(u64::MAX, &[0u8; 1]).unwrap_err();
    ensure!(err.code() == "VRAM-E008", "{err}");
    Ok(())
}

fn out_of_memory_carries_breakdown() -> Result<(), Failed> {
    let tracker = tracker()?;
    let _weights = tracker.allocate(256 * MIB, Purpose::ModelWeights, "weights")?;
    let err = tracker.allocate(1 << 40, Purpose::KVCache, "1 TiB KV cache").unwrap_err();
    let Error::OutOfMemory(oom) = &err else { return Err(format!("expected OOM, got {err}").into()) };
    ensure!(err.code() == "VRAM-E002" && err.is_recoverable(), "{err}");
    ensure!(oom.requested == 1 << 40, "{oom:?}");
    ensure!(oom.available.is_some_and(|a| a > 0), "{oom:?}");
    ensure!(oom.usage.bytes(Purpose::ModelWeights) == 256 * MIB, "{oom:?}");
    let text = err.to_string();
    ensure!(text.contains("ModelWeights 256.00 MiB") && text.contains("Requested: 1,099,511,627,776 bytes"), "{text}");
    ensure!(text.contains("the device is out of memory") && text.contains("  Cause: vg_alloc: cudaMalloc"), "{text}");
    ensure!(text.contains("cudaErrorMemoryAllocation"), "{text}");
    ensure!(tracker.allocation_count() == 1, "state changed by a failed allocation");
    let _next = tracker.allocate(MIB, Purpose::KVCache, "after OOM")?;
    Ok(())
}

fn adopted_kind_cannot_be_allocated() -> Result<(), Failed> {
    let tracker = tracker()?;
    let err = tracker.allocate_kind(MIB, Purpose::KVCache, AllocationKind::Adopted, "x").unwrap_err();
    ensure!(err.code() == "VRAM-E007", "{err}");
    let err = tracker.allocate(0, Purpose::KVCache, "zero").unwrap_err();
    ensure!(err.code() == "VRAM-E003", "{err}");
    ensure!(tracker.usage().lifetime_allocations == 0, "state changed");
    Ok(())
}

fn buffer_keeps_tracker_alive() -> Result<(), Failed> {
    let tracker = tracker()?;
    let observer = tracker.clone();
    let buffer = tracker.allocate(MIB, Purpose::KVCache, "outlives its tracker handle")?;
    drop(tracker);
    ensure!(observer.total_bytes() == MIB, "tracker lost its record");
    drop(observer);
    let data = buffer.to_vec()?; // the tracker is still alive through the buffer
    ensure!(data.len() == MIB as usize, "read back {}", data.len());
    Ok(())
}

fn ten_threads_share_a_tracker() -> Result<(), Failed> {
    let tracker = tracker()?;
    let handles: Vec<_> = (0..10u64)
        .map(|t| {
            let tracker = tracker.clone();
            std::thread::spawn(move || -> vramguard::Result<()> {
                let mut held = Vec::new();
                for i in 0..20 {
                    held.push(tracker.allocate((t + 1) * MIB, Purpose::ALL[i % 4], "thread")?);
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.join().map_err(|_| "thread panicked")??;
    }
    let usage = tracker.usage();
    ensure!(usage.total_bytes == 0 && usage.lifetime_allocations == 200, "{usage:?}");
    Ok(())
}

fn every_visible_device() -> Result<(), Failed> {
    for device in Device::all()? {
        let tracker = device.tracker()?;
        let buffer = tracker.allocate(MIB, Purpose::ModelWeights, "per device")?;
        let check = vramguard::check_pointer(device.ordinal(), buffer.as_ptr())?;
        ensure!(check.resident && check.device == device.ordinal() as i32, "GPU{}: {check:?}", device.ordinal());
        ensure!(tracker.verify_all()?.resident, "GPU{} not resident", device.ordinal());
    }
    Ok(())
}
