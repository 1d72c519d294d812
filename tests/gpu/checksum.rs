//! I1 on the GPU: DeviceBuffer::checksum through the product equals host_checksum of the bytes
//! the test uploaded; corruption of one byte is detected. Slots: the integrity reference is the
//! checksum of the bytes the holder declares loaded, in the slot it holds, and nothing before.
use libtest_mimic::{Failed, Trial};
use vramguard::slots::{DeviceBacking, ModelSlotManager};
use vramguard::{host_checksum, AllocationKind, Device, Purpose, Tracker};

use crate::ensure;
use crate::gpu_gate::gpu;

const MIB: u64 = 1 << 20;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("checksum::whole_buffer_equals_host_checksum", whole_buffer_equals_host_checksum),
        gpu("checksum::range_at_odd_offsets_equals_host_checksum_of_slice", range_at_odd_offsets),
        gpu("checksum::out_of_range_is_e008", out_of_range_is_e008),
        gpu("checksum::one_byte_corruption_is_detected", one_byte_corruption_is_detected),
        gpu("checksum::every_kind", every_kind),
        gpu(
            "checksum::a_slot_is_verified_against_the_bytes_declared_loaded",
            a_slot_is_verified_against_the_bytes_declared_loaded,
        ),
        gpu(
            "checksum::a_reference_never_lands_in_a_slot_reloaded_under_its_key",
            a_reference_never_lands_in_a_slot_reloaded_under_its_key,
        ),
    ]
}

fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn whole_buffer_equals_host_checksum() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    for n in [1usize, 15, 16, 17, 4096, (MIB + 7) as usize, (64 * MIB) as usize] {
        let data = pattern(n, n as u64);
        let mut buffer = tracker.allocate(n as u64, Purpose::ModelWeights, "weights")?;
        buffer.copy_from_host(0, &data)?;
        let device = buffer.checksum()?;
        let host = host_checksum(&data);
        ensure!(device == host, "{n} bytes: device {device}, host {host}");
        ensure!(buffer.checksum()? == device, "{n} bytes: not deterministic");
    }
    Ok(())
}

fn range_at_odd_offsets() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let n = 3 * MIB as usize + 11;
    let data = pattern(n, 7);
    let mut buffer = tracker.allocate(n as u64, Purpose::ModelWeights, "weights")?;
    buffer.copy_from_host(0, &data)?;
    for offset in [1usize, 3, 7, 9, 15, 17, 4097, MIB as usize + 5] {
        for len in [1usize, 13, 16, 31, 1000, n - offset] {
            let device = buffer.checksum_range(offset as u64, len as u64)?;
            let host = host_checksum(&data[offset..offset + len]);
            ensure!(device == host, "offset {offset}, {len} bytes: device {device}, host {host}");
        }
    }
    Ok(())
}

fn out_of_range_is_e008() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let buffer = tracker.allocate(1024, Purpose::ModelWeights, "small")?;
    for (offset, len) in [(0u64, 1025u64), (1000, 25), (1025, 1), (u64::MAX, 2)] {
        let err = buffer.checksum_range(offset, len).unwrap_err();
        ensure!(err.code() == "VRAM-E008", "offset {offset}, {len} bytes: {err}");
    }
    let err = buffer.checksum_range(0, 0).unwrap_err();
    ensure!(err.code() == "VRAM-E003", "zero bytes: {err}");
    ensure!(buffer.checksum_range(1023, 1).is_ok(), "last byte refused");
    Ok(())
}

fn one_byte_corruption_is_detected() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let n = 16 * MIB as usize + 3;
    let data = pattern(n, 11);
    let mut buffer = tracker.allocate(n as u64, Purpose::ModelWeights, "weights")?;
    buffer.copy_from_host(0, &data)?;
    let at_load = buffer.checksum()?;
    ensure!(at_load == host_checksum(&data), "checksum at load differs from the host's");
    for offset in [0usize, 5, n / 2 + 1, n - 1] {
        buffer.copy_from_host(offset as u64, &[data[offset] ^ 0x01])?;
        let corrupted = buffer.checksum()?;
        ensure!(corrupted != at_load, "a flipped bit at {offset} went unnoticed");
        let mut expected = data.clone();
        expected[offset] ^= 0x01;
        ensure!(corrupted == host_checksum(&expected), "offset {offset}: device and host disagree");
        buffer.copy_from_host(offset as u64, &data[offset..offset + 1])?;
        ensure!(buffer.checksum()? == at_load, "offset {offset}: restoring the byte did not restore it");
    }
    Ok(())
}

fn every_kind() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let n = 2 * MIB as usize + 9;
    let data = pattern(n, 13);
    let expected = host_checksum(&data);
    for kind in [AllocationKind::Device, AllocationKind::Pool, AllocationKind::Managed, AllocationKind::PinnedHost] {
        let mut buffer = tracker.allocate_kind(n as u64, Purpose::IntermediateBuffers, kind, "kind")?;
        buffer.copy_from_host(0, &data)?;
        let device = buffer.checksum()?;
        ensure!(device == expected, "{kind}: device {device}, host {expected}");
        ensure!(buffer.checksum_range(3, 100)? == host_checksum(&data[3..103]), "{kind}: range differs");
    }
    Ok(())
}

fn device_slots(tracker: &Tracker) -> ModelSlotManager<String> {
    ModelSlotManager::on_device(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device }, 1 << 30)
}

/// Before, the reference was taken at load on memory not yet written: a check between the load
/// and the upload reported a violation (an unhealthy worker for a whole interval). Now a slot has
/// no reference until its holder declares the uploaded bytes loaded.
fn a_slot_is_verified_against_the_bytes_declared_loaded() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let manager = device_slots(&tracker);
    let n = 64 * MIB as usize + 5;
    let key = "weights".to_string();
    manager.allocate_slot(key.clone(), n as u64)?;
    let slot = manager.use_slot(&key)?;
    ensure!(slot.integrity_reference().is_none(), "a reference before anything was declared loaded");
    // Half uploaded: the memory changes under the check, which must not call it a violation.
    let data = pattern(n, 17);
    slot.copy_from_host(0, &data[..n / 2])?;
    ensure!(manager.verify_integrity().is_empty(), "a slot without a reference was reported");
    slot.copy_from_host(0, &data)?;
    let reference = slot.mark_loaded()?.ok_or("no reference for a device slot")?;
    ensure!(reference == host_checksum(&data), "reference {reference}, host {}", host_checksum(&data));
    ensure!(slot.integrity_reference() == Some(reference), "reference not kept");
    ensure!(manager.verify_integrity().is_empty(), "the declared bytes are a violation");

    let offset = n / 3;
    slot.copy_from_host(offset as u64, &[data[offset] ^ 0x10])?;
    let violations = manager.verify_integrity();
    ensure!(violations.len() == 1 && violations[0].key == key, "{violations:?}");
    ensure!(violations[0].expected == reference, "{violations:?}");
    let mut corrupted = data.clone();
    corrupted[offset] ^= 0x10;
    ensure!(violations[0].actual == Ok(host_checksum(&corrupted)), "{violations:?}");
    slot.copy_from_host(offset as u64, &data[offset..offset + 1])?;
    ensure!(manager.verify_integrity().is_empty(), "restored bytes still a violation");
    ensure!(slot.copy_from_host(n as u64, &[0]).is_err_and(|e| e.code() == "VRAM-E008"), "a write past the slot");
    drop(slot);
    manager.deallocate_slot(&key);
    ensure!(tracker.total_bytes() == 0, "left {}", tracker.total_bytes());
    Ok(())
}

/// Before, `refresh_checksum(key)` checksummed one entry and stored the value into whatever entry
/// held the key by then. Now the reference goes into the slot the guard holds.
fn a_reference_never_lands_in_a_slot_reloaded_under_its_key() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let manager = device_slots(&tracker);
    let n = 8 * MIB as usize + 3;
    let key = "encoder".to_string();
    manager.allocate_slot(key.clone(), n as u64)?;
    let old = manager.use_slot(&key)?;
    let (old_data, new_data) = (pattern(n, 1), pattern(n, 2));
    old.copy_from_host(0, &old_data)?;
    manager.deallocate_slot(&key); // reloaded while the old holder still works on its copy
    manager.allocate_slot(key.clone(), n as u64)?;
    let new = manager.use_slot(&key)?;
    ensure!(new.device_ptr() != old.device_ptr(), "the reload reused the old memory while in use");
    new.copy_from_host(0, &new_data)?;
    new.mark_loaded()?;
    let late = old.mark_loaded()?.ok_or("no reference")?;
    ensure!(late == host_checksum(&old_data), "old reference {late}");
    ensure!(new.integrity_reference() == Some(host_checksum(&new_data)), "the new slot's reference changed");
    let violations = manager.verify_integrity();
    ensure!(violations.is_empty(), "the old slot's reference landed in the new one: {violations:?}");
    drop((old, new));
    ensure!(tracker.total_bytes() == n as u64, "tracked {}", tracker.total_bytes());
    Ok(())
}
