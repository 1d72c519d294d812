//! Residency through the safe API: device and pool memory is resident; the RAM-fallback kinds
//! are reported as violations naming the allocation.
use libtest_mimic::{Failed, Trial};
use vramguard::{check_pointer, AllocationKind, Device, MemoryType, Purpose, PurposeSet, ViolationReason};

use crate::ensure;
use crate::gpu_gate::gpu;

const MIB: u64 = 1 << 20;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu("residency::device_and_pool_are_resident", device_and_pool_are_resident),
        gpu("residency::host_and_null_pointers_are_not", host_and_null_pointers_are_not),
        gpu("residency::managed_fallback_detected", managed_fallback_detected),
        gpu("residency::pinned_fallback_detected", pinned_fallback_detected),
        gpu("residency::purpose_set_limits_the_check", purpose_set_limits_the_check),
        gpu("residency::adopted_pointer_is_checked", adopted_pointer_is_checked),
        gpu("residency::report_names_violations", report_names_violations),
        gpu("residency::device_used_covers_tracked", device_used_covers_tracked),
        gpu("residency::check_self_test_classifies_every_kind", check_self_test_classifies_every_kind),
        gpu("residency::check_binary_passes", check_binary_passes),
    ]
}

fn device_and_pool_are_resident() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let device = tracker.allocate(4 * MIB, Purpose::ModelWeights, "weights")?;
    let pool = tracker.allocate_kind(2 * MIB, Purpose::KVCache, AllocationKind::Pool, "kv")?;
    for buffer in [&device, &pool] {
        let check = check_pointer(0, buffer.as_ptr())?;
        ensure!(check.resident && check.memory_type == MemoryType::Device && !check.has_host_pointer, "{check:?}");
    }
    let report = tracker.verify_all()?;
    ensure!(report.resident && report.checked == 2 && report.violations.is_empty(), "{report:?}");
    ensure!(report.tracked_bytes == 6 * MIB, "{report:?}");
    Ok(())
}

fn host_and_null_pointers_are_not() -> Result<(), Failed> {
    let host = vec![0u8; 4096];
    let check = check_pointer(0, host.as_ptr().cast())?;
    ensure!(!check.resident && check.memory_type == MemoryType::Unregistered, "{check:?}");
    let check = check_pointer(0, std::ptr::null())?;
    ensure!(!check.resident, "{check:?}");
    Ok(())
}

fn fallback_detected(kind: AllocationKind, expected_type: MemoryType) -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let _good = tracker.allocate(MIB, Purpose::ModelWeights, "resident weights")?;
    let bad = tracker.allocate_kind(MIB, Purpose::ModelWeights, kind, "fallen-back weights")?;
    let report = tracker.verify_all()?;
    ensure!(!report.resident && report.checked == 2, "{report:?}");
    ensure!(report.violations.len() == 1, "{report:?}");
    let v = &report.violations[0];
    ensure!(v.address == bad.as_ptr() as usize && v.kind == kind && v.description == "fallen-back weights", "{v:?}");
    ensure!(v.memory_type == expected_type && v.reason == ViolationReason::NotDeviceMemory, "{v:?}");
    drop(bad);
    ensure!(tracker.verify_all()?.resident, "still a violation after the fallback memory was freed");
    Ok(())
}

fn managed_fallback_detected() -> Result<(), Failed> {
    fallback_detected(AllocationKind::Managed, MemoryType::Managed)
}

fn pinned_fallback_detected() -> Result<(), Failed> {
    fallback_detected(AllocationKind::PinnedHost, MemoryType::Host)
}

fn purpose_set_limits_the_check() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let _staging = tracker.allocate_kind(MIB, Purpose::IntermediateBuffers, AllocationKind::PinnedHost, "staging")?;
    let weights_only = tracker.verify(PurposeSet::of(&[Purpose::ModelWeights, Purpose::KVCache]))?;
    ensure!(weights_only.resident && weights_only.checked == 0, "{weights_only:?}");
    ensure!(!tracker.verify_all()?.resident, "staging buffer not reported");
    Ok(())
}

fn adopted_pointer_is_checked() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    // A pointer this tracker did not make (here: another tracker's buffer, standing in for a
    // framework tensor), adopted with a purpose.
    let framework = Device::new(0)?.tracker()?;
    let tensor = framework.allocate(MIB, Purpose::Unknown, "framework tensor")?;
    tracker.adopt(tensor.as_ptr(), MIB, Purpose::ModelWeights, "adopted tensor")?;
    ensure!(tracker.bytes_for(Purpose::ModelWeights) == MIB, "not counted");
    ensure!(tracker.verify_all()?.resident, "adopted device memory not resident");
    let host = vec![0u8; 4096];
    tracker.adopt(host.as_ptr().cast(), 4096, Purpose::ModelWeights, "adopted host vector")?;
    let report = tracker.verify_all()?;
    ensure!(!report.resident && report.violations[0].description == "adopted host vector", "{report:?}");
    tracker.forget(host.as_ptr().cast())?;
    tracker.forget(tensor.as_ptr())?;
    Ok(())
}

fn report_names_violations() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let _pinned = tracker.allocate_kind(MIB, Purpose::ModelWeights, AllocationKind::PinnedHost, "pinned layer")?;
    let text = tracker.residency_report()?;
    ensure!(
        text.contains("Status: VIOLATION") && text.contains("\"pinned layer\"") && text.contains("kind PinnedHost"),
        "{text}"
    );
    Ok(())
}

fn device_used_covers_tracked() -> Result<(), Failed> {
    let tracker = Device::new(0)?.tracker()?;
    let _block = tracker.allocate(64 * MIB, Purpose::ModelWeights, "block")?;
    let report = tracker.verify_all()?;
    ensure!(report.device_used_bytes >= 64 * MIB, "{report:?}");
    ensure!(report.device_total_bytes > report.device_used_bytes, "{report:?}");
    Ok(())
}

fn check_self_test_classifies_every_kind() -> Result<(), Failed> {
    let outcomes = vramguard::cli::check::self_test(Device::new(0)?)?;
    ensure!(outcomes.len() == 4, "{outcomes:?}");
    for outcome in &outcomes {
        ensure!(outcome.resident == outcome.expected_resident, "{outcome:?}");
    }
    Ok(())
}

fn check_binary_passes() -> Result<(), Failed> {
    let output = std::process::Command::new(crate::gpu_gate::vramguard_binary()).arg("check").output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.code() == Some(0), "exit {:?}: {stdout}", output.status.code());
    ensure!(stdout.contains("GPU0:") && stdout.contains("self-test: passed"), "{stdout}");
    ensure!(stdout.contains("Managed") && stdout.contains("VIOLATION"), "{stdout}");
    Ok(())
}
