//! `Tracker`, `Device` and `check_pointer`: null, zero, oversized and wrapping sizes, unknown and
//! double deallocation, pointers already tracked, over-long and NUL-carrying descriptions, and
//! device ordinals no host has. The tracker's counters and live records must not move.
use std::ffi::c_void;
use std::ptr::null;

use vramguard::{check_pointer, sys, Allocation, AllocationKind, Device, Purpose, PurposeSet, Tracker, Usage};

use super::{code, is_unusable_device, UNUSABLE_DEVICE};

const MAX_BYTES: u64 = sys::VG_MAX_ALLOCATION_BYTES;
const MAX_DESCRIPTION: usize = sys::VG_MAX_DESCRIPTION_BYTES as usize;

/// An address nothing lives at; the tracker never dereferences it.
fn fake(n: usize) -> *const c_void {
    (0x7e00_0000_0000usize + n * 4096) as *const c_void
}

/// A tracker (creating one needs no GPU) holding one recorded and one adopted pointer.
fn tracker_on(device: u32) -> Tracker {
    let tracker = Tracker::new(device).unwrap();
    tracker.record(fake(1), 4096, Purpose::ModelWeights, AllocationKind::Device, "layer 0").unwrap();
    tracker.adopt(fake(2), 8192, Purpose::KVCache, "kv").unwrap();
    tracker
}

fn tracker() -> Tracker {
    tracker_on(0)
}

fn state(tracker: &Tracker) -> (Usage, Vec<Allocation>) {
    (tracker.usage(), tracker.snapshot().unwrap())
}

/// Runs `call`, expects the code `expected`, and checks that counters and records did not move.
fn rejects<T>(tracker: &Tracker, expected: &str, what: &str, call: impl FnOnce(&Tracker) -> vramguard::Result<T>) {
    let before = state(tracker);
    assert_eq!(code(call(tracker)), expected, "{what}");
    assert_eq!(state(tracker), before, "{what}: the tracker changed");
}

fn record(tracker: &Tracker, ptr: *const c_void, bytes: u64, description: &str) -> vramguard::Result<u64> {
    tracker.record(ptr, bytes, Purpose::ModelWeights, AllocationKind::Device, description)
}

// --- Tracker::new, Device::new, check_pointer ------------------------------------------------

#[test]
fn tracker_new_beyond_i32_ordinals_is_e010() {
    for device in [u32::MAX, i32::MAX as u32 + 1] {
        assert_eq!(code(Tracker::new(device)), "VRAM-E010", "Tracker::new({device})");
    }
}

#[test]
fn device_new_on_an_ordinal_no_host_has_is_e001_or_e010() {
    for ordinal in [UNUSABLE_DEVICE, i32::MAX as u32 + 1, u32::MAX] {
        let code = code(Device::new(ordinal));
        assert!(is_unusable_device(code), "Device::new({ordinal}): {code}");
    }
}

#[test]
fn check_pointer_on_a_device_no_host_has_is_e001_or_e010() {
    for device in [UNUSABLE_DEVICE, i32::MAX as u32 + 1, u32::MAX] {
        for ptr in [fake(1), null()] {
            let code = code(check_pointer(device, ptr));
            assert!(is_unusable_device(code), "check_pointer({device}, {ptr:?}): {code}");
        }
    }
}

#[test]
fn allocating_on_a_device_no_host_has_is_e001_or_e010_and_changes_nothing() {
    let tracker = tracker_on(UNUSABLE_DEVICE);
    let before = state(&tracker);
    for kind in [AllocationKind::Device, AllocationKind::Pool, AllocationKind::Managed, AllocationKind::PinnedHost] {
        let code = code(tracker.allocate_kind(1 << 20, Purpose::ModelWeights, kind, "weights"));
        assert!(is_unusable_device(code), "{kind}: {code}");
    }
    assert_eq!(state(&tracker), before);
}

#[test]
fn verifying_on_a_device_no_host_has_is_e001_or_e010_and_changes_nothing() {
    let tracker = tracker_on(UNUSABLE_DEVICE);
    let before = state(&tracker);
    let code = code(tracker.verify(PurposeSet::ALL));
    assert!(is_unusable_device(code), "{code}");
    assert!(tracker.residency_report().is_err(), "a report of a check that cannot run");
    assert_eq!(state(&tracker), before);
}

#[test]
fn verifying_an_empty_purpose_set_is_e007_before_the_device_is_touched() {
    let tracker = tracker_on(UNUSABLE_DEVICE);
    rejects(&tracker, "VRAM-E007", "verify(of(&[]))", |t| t.verify(PurposeSet::of(&[])));
}

// --- record and adopt ------------------------------------------------------------------------

#[test]
fn recording_or_adopting_a_null_pointer_is_e007() {
    let t = tracker();
    rejects(&t, "VRAM-E007", "record", |t| record(t, null(), 64, "x"));
    rejects(&t, "VRAM-E007", "adopt", |t| t.adopt(null(), 64, Purpose::KVCache, "x"));
}

#[test]
fn recording_or_adopting_zero_bytes_is_e003() {
    let t = tracker();
    rejects(&t, "VRAM-E003", "record", |t| record(t, fake(9), 0, "x"));
    rejects(&t, "VRAM-E003", "adopt", |t| t.adopt(fake(9), 0, Purpose::KVCache, "x"));
}

#[test]
fn recording_or_adopting_over_256_tib_is_e003() {
    let t = tracker();
    for bytes in [MAX_BYTES + 1, u64::MAX] {
        rejects(&t, "VRAM-E003", &format!("record {bytes}"), |t| record(t, fake(9), bytes, "x"));
        rejects(&t, "VRAM-E003", &format!("adopt {bytes}"), |t| t.adopt(fake(9), bytes, Purpose::KVCache, "x"));
    }
}

#[test]
fn a_range_wrapping_the_address_space_is_e003() {
    let t = tracker();
    let near_end = (usize::MAX - 4095) as *const c_void;
    let last = usize::MAX as *const c_void;
    rejects(&t, "VRAM-E003", "record 1 MiB at the last page", |t| record(t, near_end, 1 << 20, "x"));
    rejects(&t, "VRAM-E003", "record 1 byte at the last address", |t| record(t, last, 1, "x"));
    rejects(&t, "VRAM-E003", "adopt 1 MiB at the last page", |t| t.adopt(near_end, 1 << 20, Purpose::KVCache, "x"));
}

#[test]
fn recording_a_pointer_already_tracked_is_e005_whatever_its_size_or_purpose() {
    let t = tracker();
    rejects(&t, "VRAM-E005", "record the recorded", |t| record(t, fake(1), 4096, "again"));
    rejects(&t, "VRAM-E005", "record with another size", |t| record(t, fake(1), 1, "again"));
    rejects(&t, "VRAM-E005", "record the adopted", |t| {
        t.record(fake(2), 8192, Purpose::Unknown, AllocationKind::Pool, "again")
    });
    rejects(&t, "VRAM-E005", "adopt the recorded", |t| t.adopt(fake(1), 4096, Purpose::KVCache, "again"));
    rejects(&t, "VRAM-E005", "adopt the adopted", |t| t.adopt(fake(2), 8192, Purpose::KVCache, "again"));
}

#[test]
fn a_description_over_255_bytes_is_e009_counting_bytes_not_characters() {
    let t = tracker();
    let ascii = "d".repeat(MAX_DESCRIPTION + 1);
    let two_byte = "é".repeat(MAX_DESCRIPTION / 2 + 1); // 128 characters, 256 bytes
    assert_eq!(two_byte.len(), MAX_DESCRIPTION + 1);
    let huge = "d".repeat(1 << 20);
    for description in [&ascii, &two_byte, &huge] {
        let what = format!("{} bytes", description.len());
        rejects(&t, "VRAM-E009", &format!("record {what}"), |t| record(t, fake(9), 64, description));
        rejects(&t, "VRAM-E009", &format!("adopt {what}"), |t| t.adopt(fake(9), 64, Purpose::KVCache, description));
    }
}

#[test]
fn a_description_of_exactly_255_bytes_is_kept_whole() {
    let t = tracker();
    let description = format!("{}a", "é".repeat(127));
    assert_eq!(description.len(), MAX_DESCRIPTION);
    record(&t, fake(9), 64, &description).unwrap();
    let kept = t.snapshot().unwrap().into_iter().find(|a| a.address == fake(9) as usize).unwrap();
    assert_eq!(kept.description, description);
}

/// `description_cstring` turns an interior NUL into VRAM-E007 (InvalidArgument), before the core
/// (or the device) is reached: the text would otherwise be cut at the NUL without a word.
#[test]
fn a_description_with_an_interior_nul_is_e007() {
    let t = tracker();
    for description in ["layer\0 1", "\0", "trailing\0"] {
        rejects(&t, "VRAM-E007", &format!("record {description:?}"), |t| record(t, fake(9), 64, description));
        rejects(&t, "VRAM-E007", &format!("adopt {description:?}"), |t| {
            t.adopt(fake(9), 64, Purpose::KVCache, description)
        });
    }
}

// --- allocate: arguments are refused before the device is touched ------------------------------

const ALLOCATABLE: [AllocationKind; 4] =
    [AllocationKind::Device, AllocationKind::Pool, AllocationKind::Managed, AllocationKind::PinnedHost];

/// On device 63, an argument error that was checked first reads as its own code, never as
/// E001/E010: so these hold on any host, and prove the device was not asked.
#[test]
fn allocating_zero_bytes_is_e003_before_the_device_is_touched() {
    let t = tracker_on(UNUSABLE_DEVICE);
    rejects(&t, "VRAM-E003", "allocate", |t| t.allocate(0, Purpose::ModelWeights, "x"));
    for kind in ALLOCATABLE {
        rejects(&t, "VRAM-E003", &format!("{kind}"), |t| t.allocate_kind(0, Purpose::ModelWeights, kind, "x"));
    }
}

#[test]
fn allocating_over_256_tib_is_e003_before_the_device_is_touched() {
    let t = tracker_on(UNUSABLE_DEVICE);
    for kind in ALLOCATABLE {
        for bytes in [MAX_BYTES + 1, u64::MAX] {
            rejects(&t, "VRAM-E003", &format!("{kind} {bytes}"), |t| {
                t.allocate_kind(bytes, Purpose::KVCache, kind, "x")
            });
        }
    }
}

#[test]
fn allocating_with_a_description_over_255_bytes_is_e009_before_the_device_is_touched() {
    let t = tracker_on(UNUSABLE_DEVICE);
    let long = "d".repeat(MAX_DESCRIPTION + 1);
    for kind in ALLOCATABLE {
        rejects(&t, "VRAM-E009", &format!("{kind}"), |t| t.allocate_kind(64, Purpose::KVCache, kind, &long));
    }
}

#[test]
fn allocating_with_an_interior_nul_is_e007_before_the_device_is_touched() {
    let t = tracker_on(UNUSABLE_DEVICE);
    rejects(&t, "VRAM-E007", "allocate", |t| t.allocate(64, Purpose::KVCache, "kv\0cache"));
    for kind in ALLOCATABLE {
        rejects(&t, "VRAM-E007", &format!("{kind}"), |t| t.allocate_kind(64, Purpose::KVCache, kind, "kv\0cache"));
    }
}

#[test]
fn allocating_kind_adopted_is_e007_before_the_device_is_touched() {
    let t = tracker_on(UNUSABLE_DEVICE);
    rejects(&t, "VRAM-E007", "Adopted", |t| t.allocate_kind(64, Purpose::ModelWeights, AllocationKind::Adopted, "x"));
}

// --- deallocate ------------------------------------------------------------------------------

#[test]
fn deallocating_null_is_e007_and_counts_nothing() {
    let t = tracker();
    rejects(&t, "VRAM-E007", "deallocate(null)", |t| t.forget(null()));
}

/// T2: an unknown pointer changes nothing but the `unknown_deallocations` counter.
#[test]
fn deallocating_an_unknown_pointer_is_e004_and_only_counts_it() {
    let t = tracker();
    let (usage, records) = state(&t);
    assert_eq!(code(t.forget(fake(9))), "VRAM-E004");
    let expected = Usage { unknown_deallocations: usage.unknown_deallocations + 1, ..usage };
    assert_eq!(state(&t), (expected, records));
}

#[test]
fn deallocating_inside_a_tracked_range_is_e004() {
    let t = tracker();
    let inside = (fake(1) as usize + 16) as *const c_void;
    let (usage, records) = state(&t);
    assert_eq!(code(t.forget(inside)), "VRAM-E004", "only the start address names an allocation");
    assert_eq!(state(&t), (Usage { unknown_deallocations: usage.unknown_deallocations + 1, ..usage }, records));
}

#[test]
fn deallocating_twice_is_e004_the_second_time() {
    let t = tracker();
    t.forget(fake(1)).unwrap();
    t.forget(fake(2)).unwrap();
    let (usage, records) = state(&t);
    assert_eq!((usage.total_bytes, usage.allocation_count, records.len()), (0, 0, 0));
    for ptr in [fake(1), fake(2)] {
        assert_eq!(code(t.forget(ptr)), "VRAM-E004");
    }
    assert_eq!(state(&t), (Usage { unknown_deallocations: usage.unknown_deallocations + 2, ..usage }, records));
}

// --- owned memory: only where a GPU is visible -------------------------------------------------

/// Forgetting a pointer vramguard allocated (it must be freed by dropping its buffer) is E006, and
/// recording it again is E005; both leave the record in place. Needs real device memory, so it
/// runs where a GPU is visible and returns at once elsewhere (the GPU runner runs this binary).
#[test]
fn deallocating_or_recording_an_owned_buffer_is_refused_on_a_gpu_host() {
    if Device::new(0).is_err() {
        eprintln!("no GPU visible: deallocating_or_recording_an_owned_buffer_is_refused_on_a_gpu_host not run");
        return;
    }
    let t = tracker();
    let buffer = t.allocate(4096, Purpose::ModelWeights, "owned").unwrap();
    let ptr = buffer.as_ptr() as *const c_void;
    rejects(&t, "VRAM-E006", "deallocate an owned pointer", |t| t.forget(ptr));
    rejects(&t, "VRAM-E005", "record an owned pointer", |t| record(t, ptr, 4096, "again"));
    rejects(&t, "VRAM-E005", "adopt an owned pointer", |t| t.adopt(ptr, 4096, Purpose::KVCache, "again"));
    drop(buffer);
    assert_eq!((t.drop_failures(), t.allocation_count()), (0, 2), "the buffer was freed normally");
}
