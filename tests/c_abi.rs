//! ERR3 at the C ABI: one test per class of bad input. Each call returns its documented status,
//! leaves a message in `vg_last_error`, and changes nothing in the tracker. None needs a GPU:
//! arguments are validated before the device is touched.
use std::ffi::{c_void, CStr};
use std::ptr::{null, null_mut};

use vramguard::sys::{self, vg_status, vg_tracker, vg_usage};

const WEIGHTS: i32 = sys::VG_PURPOSE_MODEL_WEIGHTS as i32;
const KV: i32 = sys::VG_PURPOSE_KV_CACHE as i32;
const DEVICE: i32 = sys::VG_KIND_DEVICE as i32;

/// A tracker with two records in it, destroyed at the end of the test.
struct Fixture {
    tracker: *mut vg_tracker,
}

impl Fixture {
    fn new() -> Fixture {
        let mut tracker = null_mut();
        assert_eq!(unsafe { sys::vg_tracker_create(0, &mut tracker) }, sys::VG_OK);
        let fixture = Fixture { tracker };
        assert_eq!(fixture.record(fake(1), 4096, WEIGHTS, c"layer 0".as_ptr()), sys::VG_OK);
        assert_eq!(fixture.record(fake(2), 8192, KV, c"kv".as_ptr()), sys::VG_OK);
        fixture
    }

    fn record(&self, ptr: *const c_void, bytes: u64, purpose: i32, description: *const libc::c_char) -> vg_status {
        let mut id = 0;
        unsafe { sys::vg_record(self.tracker, ptr, bytes, purpose, DEVICE, description, &mut id) }
    }

    fn usage(&self) -> vg_usage {
        let mut usage = vg_usage::default();
        assert_eq!(unsafe { sys::vg_usage_get(self.tracker, &mut usage) }, sys::VG_OK);
        usage
    }

    fn addresses(&self) -> Vec<u64> {
        let mut records = vec![sys::vg_allocation::default(); 16];
        let mut count = 0;
        let status = unsafe { sys::vg_snapshot(self.tracker, records.as_mut_ptr(), 16, &mut count) };
        assert_eq!(status, sys::VG_OK);
        records.truncate(count as usize);
        records.iter().map(|r| r.address).collect()
    }

    /// Runs `call`, expects `status` and a message, and checks the tracker did not change.
    fn rejects(&self, expected: vg_status, what: &str, call: impl FnOnce() -> vg_status) {
        let (usage, addresses) = (self.usage(), self.addresses());
        let status = call();
        assert_eq!(status_name(status), status_name(expected), "{what}");
        assert!(!last_error().is_empty(), "{what}: vg_last_error is empty");
        assert_eq!(self.usage(), usage, "{what}: counters changed");
        assert_eq!(self.addresses(), addresses, "{what}: live records changed");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        assert_eq!(unsafe { sys::vg_tracker_destroy(self.tracker) }, sys::VG_OK);
    }
}

fn fake(n: usize) -> *const c_void {
    (0x7e00_0000_0000usize + n * 4096) as *const c_void
}

fn status_name(status: vg_status) -> String {
    unsafe { CStr::from_ptr(sys::vg_status_name(status as i32)) }.to_string_lossy().into_owned()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(sys::vg_last_error()) }.to_string_lossy().into_owned()
}

/// One named C ABI call of a bad-input case.
type Call = Box<dyn FnMut() -> vg_status>;
#[test]
fn null_tracker_handle() {
    let f = Fixture::new();
    let null_t: *mut vg_tracker = null_mut();
    let (mut n, mut id, mut dev) = (0u64, 0u64, 0i32);
    let mut usage = vg_usage::default();
    let mut ptr: *mut c_void = null_mut();
    let mut residency = sys::vg_residency::default();
    let cases: Vec<(&str, Call)> = vec![
        ("destroy", Box::new(move || unsafe { sys::vg_tracker_destroy(null_t) })),
        ("device", Box::new(move || unsafe { sys::vg_tracker_device(null_t, &mut dev) })),
        ("record", Box::new(move || unsafe { sys::vg_record(null_t, fake(9), 1, WEIGHTS, DEVICE, null(), &mut id) })),
        ("adopt", Box::new(move || unsafe { sys::vg_adopt(null_t, fake(9), 1, WEIGHTS, null(), &mut id) })),
        ("deallocate", Box::new(move || unsafe { sys::vg_deallocate(null_t, fake(1)) })),
        ("usage", Box::new(move || unsafe { sys::vg_usage_get(null_t, &mut usage) })),
        ("total", Box::new(move || unsafe { sys::vg_total_bytes(null_t, &mut n) })),
        ("purpose bytes", Box::new(move || unsafe { sys::vg_purpose_bytes(null_t, WEIGHTS, &mut n) })),
        ("count", Box::new(move || unsafe { sys::vg_allocation_count(null_t, &mut n) })),
        ("snapshot", Box::new(move || unsafe { sys::vg_snapshot(null_t, null_mut(), 0, &mut n) })),
        ("report", Box::new(move || unsafe { sys::vg_report(null_t, null_mut(), 0, &mut n) })),
        ("alloc", Box::new(move || unsafe { sys::vg_alloc(null_t, 1, WEIGHTS, DEVICE, null(), &mut ptr) })),
        ("free", Box::new(move || unsafe { sys::vg_free(null_t, fake(1) as *mut c_void) })),
        (
            "verify",
            Box::new(move || unsafe {
                sys::vg_verify(null_t, sys::VG_PURPOSE_MASK_ALL, &mut residency, null_mut(), 0)
            }),
        ),
        ("residency report", Box::new(move || unsafe { sys::vg_residency_report(null_t, null_mut(), 0, &mut n) })),
    ];
    for (what, call) in cases {
        f.rejects(sys::VG_ERR_NULL_ARGUMENT, what, call);
        assert!(last_error().contains("tracker is NULL"), "{what}: {}", last_error());
    }
}

#[test]
fn null_out_parameters_and_pointers() {
    let f = Fixture::new();
    let t = f.tracker;
    let mut n = 0u64;
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "create", || unsafe { sys::vg_tracker_create(0, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "device", || unsafe { sys::vg_tracker_device(t, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "usage", || unsafe { sys::vg_usage_get(t, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "total", || unsafe { sys::vg_total_bytes(t, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "purpose", || unsafe { sys::vg_purpose_bytes(t, WEIGHTS, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "count", || unsafe { sys::vg_allocation_count(t, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "snapshot count", || unsafe {
        sys::vg_snapshot(t, null_mut(), 0, null_mut())
    });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "snapshot out", || unsafe { sys::vg_snapshot(t, null_mut(), 8, &mut n) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "report needed", || unsafe { sys::vg_report(t, null_mut(), 0, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "report out", || unsafe { sys::vg_report(t, null_mut(), 4096, &mut n) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "record null ptr", || f.record(null(), 64, WEIGHTS, null()));
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "adopt null ptr", || unsafe {
        sys::vg_adopt(t, null(), 64, WEIGHTS, null(), null_mut())
    });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "deallocate null", || unsafe { sys::vg_deallocate(t, null()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "alloc out_ptr", || unsafe {
        sys::vg_alloc(t, 64, WEIGHTS, DEVICE, null(), null_mut())
    });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "free null", || unsafe { sys::vg_free(t, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "check_pointer out", || unsafe {
        sys::vg_check_pointer(0, fake(1), null_mut())
    });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "verify out", || unsafe { sys::vg_verify(t, 1, null_mut(), null_mut(), 0) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "device_count", || unsafe { sys::vg_device_count(null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "device_info", || unsafe { sys::vg_device_info_get(0, null_mut()) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "memory_info", || unsafe { sys::vg_memory_info(0, null_mut(), &mut n) });
    let mut data = [0u8; 8];
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "copy src", || unsafe {
        sys::vg_copy_to_device(t, fake(1) as *mut c_void, 0, null(), 8)
    });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "copy dst", || unsafe { sys::vg_copy_to_host(t, null_mut(), fake(1), 0, 8) });
    f.rejects(sys::VG_ERR_NULL_ARGUMENT, "copy dst device", || unsafe {
        sys::vg_copy_to_device(t, null_mut(), 0, data.as_mut_ptr() as *const c_void, 8)
    });
}

#[test]
fn zero_and_overflowing_sizes() {
    let f = Fixture::new();
    let mut ptr: *mut c_void = null_mut();
    f.rejects(sys::VG_ERR_INVALID_SIZE, "record 0", || f.record(fake(9), 0, WEIGHTS, null()));
    f.rejects(sys::VG_ERR_INVALID_SIZE, "record over max", || {
        f.record(fake(9), sys::VG_MAX_ALLOCATION_BYTES + 1, WEIGHTS, null())
    });
    f.rejects(sys::VG_ERR_INVALID_SIZE, "record u64::MAX", || f.record(fake(9), u64::MAX, WEIGHTS, null()));
    let near_end = (usize::MAX - 4095) as *const c_void;
    f.rejects(sys::VG_ERR_INVALID_SIZE, "record wrapping", || f.record(near_end, 1 << 20, WEIGHTS, null()));
    f.rejects(sys::VG_ERR_INVALID_SIZE, "adopt 0", || unsafe {
        sys::vg_adopt(f.tracker, fake(9), 0, KV, null(), null_mut())
    });
    f.rejects(sys::VG_ERR_INVALID_SIZE, "alloc 0", || unsafe {
        sys::vg_alloc(f.tracker, 0, WEIGHTS, DEVICE, null(), &mut ptr)
    });
    let pool = sys::VG_KIND_POOL as i32;
    f.rejects(sys::VG_ERR_INVALID_SIZE, "alloc 0 pool", || unsafe {
        sys::vg_alloc(f.tracker, 0, WEIGHTS, pool, null(), &mut ptr)
    });
    f.rejects(sys::VG_ERR_INVALID_SIZE, "alloc over max", || unsafe {
        sys::vg_alloc(f.tracker, sys::VG_MAX_ALLOCATION_BYTES + 1, WEIGHTS, DEVICE, null(), &mut ptr)
    });
    assert!(ptr.is_null(), "a rejected allocation wrote its out-parameter");
}

#[test]
fn unknown_pointer_changes_only_the_unknown_counter() {
    let f = Fixture::new();
    let before = f.usage();
    let status = unsafe { sys::vg_deallocate(f.tracker, fake(77)) };
    assert_eq!(status_name(status), "VG_ERR_UNKNOWN_POINTER");
    let after = f.usage();
    assert_eq!(after.unknown_deallocations, before.unknown_deallocations + 1, "T2 counts it");
    assert_eq!(vg_usage { unknown_deallocations: before.unknown_deallocations, ..after }, before);
    // A pointer inside a tracked allocation is not the allocation.
    let inside = (fake(1) as usize + 16) as *const c_void;
    assert_eq!(status_name(unsafe { sys::vg_deallocate(f.tracker, inside) }), "VG_ERR_UNKNOWN_POINTER");
    // vg_free of an untracked pointer is an unknown deallocation too, and frees nothing.
    let before = f.usage();
    let status = unsafe { sys::vg_free(f.tracker, fake(77) as *mut c_void) };
    assert_eq!(status_name(status), "VG_ERR_UNKNOWN_POINTER");
    assert_eq!(f.usage().unknown_deallocations, before.unknown_deallocations + 1);
    assert_eq!(f.usage().total_bytes, before.total_bytes);
    let mut data = [0u8; 8];
    f.rejects(sys::VG_ERR_UNKNOWN_POINTER, "copy to untracked", || unsafe {
        sys::vg_copy_to_device(f.tracker, fake(77) as *mut c_void, 0, data.as_mut_ptr() as *const c_void, 8)
    });
}

#[test]
fn double_deallocation_and_wrong_owner() {
    let f = Fixture::new();
    assert_eq!(unsafe { sys::vg_deallocate(f.tracker, fake(1)) }, sys::VG_OK);
    let usage = f.usage();
    assert_eq!((usage.total_bytes, usage.allocation_count), (8192, 1));
    let status = unsafe { sys::vg_deallocate(f.tracker, fake(1)) };
    assert_eq!(status_name(status), "VG_ERR_UNKNOWN_POINTER");
    assert!(last_error().contains("already freed"), "{}", last_error());
    assert_eq!((f.usage().total_bytes, f.usage().allocation_count), (8192, 1));
    // A recorded pointer is forgotten with vg_deallocate; vg_free would free memory it does not own.
    f.rejects(sys::VG_ERR_OWNERSHIP, "free recorded", || unsafe { sys::vg_free(f.tracker, fake(2) as *mut c_void) });
    f.rejects(sys::VG_ERR_ALREADY_TRACKED, "record twice", || f.record(fake(2), 64, WEIGHTS, null()));
}

#[test]
fn invalid_purpose_kind_and_mask() {
    let f = Fixture::new();
    let t = f.tracker;
    let mut ptr: *mut c_void = null_mut();
    let mut n = 0u64;
    let mut residency = sys::vg_residency::default();
    for purpose in [-1, 4, i32::MAX, i32::MIN] {
        f.rejects(sys::VG_ERR_INVALID_ENUM, "record purpose", || f.record(fake(9), 64, purpose, null()));
        f.rejects(sys::VG_ERR_INVALID_ENUM, "purpose bytes", || unsafe { sys::vg_purpose_bytes(t, purpose, &mut n) });
        f.rejects(sys::VG_ERR_INVALID_ENUM, "alloc purpose", || unsafe {
            sys::vg_alloc(t, 64, purpose, DEVICE, null(), &mut ptr)
        });
    }
    for kind in [-1, 5, i32::MAX] {
        f.rejects(sys::VG_ERR_INVALID_ENUM, "record kind", || unsafe {
            sys::vg_record(t, fake(9), 64, WEIGHTS, kind, null(), null_mut())
        });
        f.rejects(sys::VG_ERR_INVALID_ENUM, "alloc kind", || unsafe {
            sys::vg_alloc(t, 64, WEIGHTS, kind, null(), &mut ptr)
        });
    }
    let adopted = sys::VG_KIND_ADOPTED as i32;
    f.rejects(sys::VG_ERR_INVALID_ENUM, "alloc adopted", || unsafe {
        sys::vg_alloc(t, 64, WEIGHTS, adopted, null(), &mut ptr)
    });
    for mask in [0u32, 0x10, u32::MAX] {
        f.rejects(sys::VG_ERR_INVALID_ENUM, "verify mask", || unsafe {
            sys::vg_verify(t, mask, &mut residency, null_mut(), 0)
        });
        let mut count = 0u64;
        f.rejects(sys::VG_ERR_INVALID_ENUM, "snapshot_of mask", || unsafe {
            sys::vg_snapshot_of(t, mask, null_mut(), 0, &mut count)
        });
    }
    assert!(ptr.is_null());
}

#[test]
fn over_long_description() {
    let f = Fixture::new();
    let max = sys::VG_MAX_DESCRIPTION_BYTES as usize;
    let too_long = std::ffi::CString::new("x".repeat(max + 1)).unwrap();
    let huge = std::ffi::CString::new("y".repeat(1 << 20)).unwrap();
    let mut ptr: *mut c_void = null_mut();
    f.rejects(sys::VG_ERR_DESCRIPTION_TOO_LONG, "record", || f.record(fake(9), 64, WEIGHTS, too_long.as_ptr()));
    f.rejects(sys::VG_ERR_DESCRIPTION_TOO_LONG, "record 1 MiB", || f.record(fake(9), 64, WEIGHTS, huge.as_ptr()));
    f.rejects(sys::VG_ERR_DESCRIPTION_TOO_LONG, "adopt", || unsafe {
        sys::vg_adopt(f.tracker, fake(9), 64, KV, too_long.as_ptr(), null_mut())
    });
    f.rejects(sys::VG_ERR_DESCRIPTION_TOO_LONG, "alloc", || unsafe {
        sys::vg_alloc(f.tracker, 64, KV, DEVICE, too_long.as_ptr(), &mut ptr)
    });
    // Exactly at the limit is accepted and copied out whole.
    let at_limit = std::ffi::CString::new("z".repeat(max)).unwrap();
    assert_eq!(f.record(fake(9), 64, WEIGHTS, at_limit.as_ptr()), sys::VG_OK);
    let mut records = vec![sys::vg_allocation::default(); 4];
    let mut count = 0;
    assert_eq!(unsafe { sys::vg_snapshot(f.tracker, records.as_mut_ptr(), 4, &mut count) }, sys::VG_OK);
    let stored = unsafe { CStr::from_ptr(records[2].description.as_ptr()) };
    assert_eq!(stored.to_bytes().len(), max);
}

#[test]
fn too_small_buffers_say_what_they_need() {
    let f = Fixture::new();
    let mut records = vec![sys::vg_allocation::default(); 1];
    let mut count = 0u64;
    f.rejects(sys::VG_ERR_BUFFER_TOO_SMALL, "snapshot", || unsafe {
        sys::vg_snapshot(f.tracker, records.as_mut_ptr(), 1, &mut count)
    });
    assert_eq!(count, 2);
    assert_eq!(records[0].address, 0, "nothing is copied into a too-small buffer");
    let mut text = vec![0 as libc::c_char; 8];
    let mut needed = 0u64;
    f.rejects(sys::VG_ERR_BUFFER_TOO_SMALL, "report", || unsafe {
        sys::vg_report(f.tracker, text.as_mut_ptr(), 8, &mut needed)
    });
    assert!(needed > 8);
    text.resize(needed as usize, 0);
    assert_eq!(unsafe { sys::vg_report(f.tracker, text.as_mut_ptr(), needed, &mut needed) }, sys::VG_OK);
    let report = unsafe { CStr::from_ptr(text.as_ptr()) }.to_string_lossy().into_owned();
    assert!(report.contains("ModelWeights        4.00 KiB (4096 bytes)"), "{report}");
}

#[test]
fn copies_past_the_end_are_out_of_range() {
    let f = Fixture::new();
    let mut data = vec![0u8; 8192];
    let t = f.tracker;
    let dst = fake(1) as *mut c_void;
    f.rejects(sys::VG_ERR_OUT_OF_RANGE, "past end", || unsafe {
        sys::vg_copy_to_device(t, dst, 4000, data.as_ptr() as *const c_void, 100)
    });
    f.rejects(sys::VG_ERR_OUT_OF_RANGE, "offset past end", || unsafe {
        sys::vg_copy_to_host(t, data.as_mut_ptr() as *mut c_void, dst, 4097, 0)
    });
    f.rejects(sys::VG_ERR_OUT_OF_RANGE, "wrapping", || unsafe {
        sys::vg_copy_to_device(t, dst, u64::MAX, data.as_ptr() as *const c_void, 2)
    });
}

#[test]
fn invalid_device_ordinal() {
    let mut tracker = null_mut();
    let status = unsafe { sys::vg_tracker_create(-1, &mut tracker) };
    assert_eq!(status_name(status), "VG_ERR_INVALID_DEVICE");
    assert!(tracker.is_null());
    assert!(last_error().contains("device"), "{}", last_error());
}

#[test]
fn every_status_has_a_name() {
    let names: Vec<String> = (0..=20).map(status_name).collect();
    assert_eq!(names[0], "VG_OK");
    assert!(names[1..].iter().all(|n| n.starts_with("VG_ERR_")), "{names:?}");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    assert_eq!(status_name(21), "VG_STATUS_UNKNOWN");
    assert_eq!(unsafe { CStr::from_ptr(sys::vg_status_name(-1)) }.to_str().unwrap(), "VG_STATUS_UNKNOWN");
}

/// vg_check_allocation answers what vg_alloc would, in the same order, with no tracker and no
/// device (this machine may have none): the one place those arguments are judged.
#[test]
fn check_allocation_judges_the_arguments_of_vg_alloc_without_a_device() {
    let short = std::ffi::CString::new("kv").unwrap();
    let long = std::ffi::CString::new("x".repeat(sys::VG_MAX_DESCRIPTION_BYTES as usize + 1)).unwrap();
    let (weights, device) = (sys::VG_PURPOSE_MODEL_WEIGHTS as i32, sys::VG_KIND_DEVICE as i32);
    let check = |bytes: u64, purpose: i32, kind: i32, description: *const libc::c_char| {
        // SAFETY: description is NULL or NUL-terminated; nothing else is read.
        unsafe { sys::vg_check_allocation(bytes, purpose, kind, description) }
    };
    assert_eq!(check(64, weights, device, short.as_ptr()), sys::VG_OK);
    assert_eq!(check(64, weights, device, null()), sys::VG_OK, "no description is an empty one");
    assert_eq!(check(0, weights, device, short.as_ptr()), sys::VG_ERR_INVALID_SIZE);
    assert_eq!(check(sys::VG_MAX_ALLOCATION_BYTES + 1, weights, device, short.as_ptr()), sys::VG_ERR_INVALID_SIZE);
    assert_eq!(check(64, weights, device, long.as_ptr()), sys::VG_ERR_DESCRIPTION_TOO_LONG);
    assert_eq!(check(64, 9, device, short.as_ptr()), sys::VG_ERR_INVALID_ENUM);
    assert_eq!(check(64, weights, 9, short.as_ptr()), sys::VG_ERR_INVALID_ENUM);
    assert_eq!(check(64, weights, sys::VG_KIND_ADOPTED as i32, short.as_ptr()), sys::VG_ERR_INVALID_ENUM);
    // The order vg_alloc answers in: a bad size before an unallocatable kind.
    assert_eq!(check(0, weights, sys::VG_KIND_ADOPTED as i32, short.as_ptr()), sys::VG_ERR_INVALID_SIZE);
}

/// The library the crate links has no test hook: the bit that once asked a load to corrupt its own
/// staging is an unknown flag like any other, refused before any handle is used (so with no loader
/// and no GPU), and so is every other bit outside `VG_LOAD_VERIFY | VG_LOAD_EXPECTED`.
#[test]
fn load_flags_outside_the_abi_are_refused_before_any_handle() {
    let mut result = sys::vg_load_result::default();
    let mut load = |flags: u32| {
        let (loader, tracker, dst) = (null_mut(), null_mut(), null_mut());
        // SAFETY: every handle and array is NULL with a count of 0, which the core refuses before
        // reading anything; result is a valid out-pointer.
        unsafe { sys::vg_load_weights(loader, tracker, dst, 16, null(), 0, null(), 0, flags, null(), &mut result) }
    };
    for unknown in [0x100u32, 0x4, 0x8000_0000] {
        let status = load(sys::VG_LOAD_VERIFY | unknown);
        assert_eq!(status_name(status), "VG_ERR_INVALID_ENUM", "flag {unknown:#x}");
        assert!(last_error().contains(&format!("unknown load flags {unknown}")), "{}", last_error());
    }
    // The known flags pass that check and reach the handles.
    assert_eq!(status_name(load(sys::VG_LOAD_VERIFY | sys::VG_LOAD_EXPECTED)), "VG_ERR_NULL_ARGUMENT");
}

/// A load's deadline is judged with its flags, before any handle: zero is refused, any other
/// timeout passes on (to the NULL handles here).
#[test]
fn a_load_timeout_of_zero_is_refused_before_any_handle() {
    let mut result = sys::vg_load_result::default();
    let mut load = |timeout_ms: u64| {
        let (loader, tracker, dst) = (null_mut(), null_mut(), null_mut());
        let flags = sys::VG_LOAD_VERIFY;
        // SAFETY: every handle and array is NULL with a count of 0, which the core refuses before
        // reading anything; result is a valid out-pointer.
        unsafe {
            sys::vg_load_weights_within(
                loader,
                tracker,
                dst,
                16,
                null(),
                0,
                null(),
                0,
                flags,
                null(),
                timeout_ms,
                &mut result,
            )
        }
    };
    assert_eq!(status_name(load(0)), "VG_ERR_INVALID_SIZE");
    assert!(last_error().contains("load timeout of 0 ms"), "{}", last_error());
    for timeout_ms in [1, u64::from(sys::VG_LOAD_TIMEOUT_FLOOR_MS), u64::MAX] {
        assert_eq!(status_name(load(timeout_ms)), "VG_ERR_NULL_ARGUMENT", "{timeout_ms} ms");
    }
}
