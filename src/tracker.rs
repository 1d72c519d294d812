//! A cloneable, `Send + Sync` handle to one device's allocation tracker (T1–T7).
use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::buffer::DeviceBuffer;
use crate::error::{check, Error, Result};
use crate::purpose::{AllocationKind, Purpose, PurposeSet};
use crate::sys;
use crate::usage::Usage;

/// One live allocation, copied out of the tracker (never a reference into live state, T5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The record's id: unique within the tracker, never reused.
    pub id: u64,
    /// The first byte's address (device, managed or host, by kind).
    pub address: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// What the memory is for.
    pub purpose: Purpose,
    /// How it was allocated, or `Adopted` for another allocator's memory.
    pub kind: AllocationKind,
    /// The ordinal of the tracker's GPU.
    pub device: i32,
    /// Allocated by vramguard (freed when its buffer drops) rather than recorded or adopted.
    pub owned: bool,
    /// When the allocation was recorded.
    pub recorded_at: SystemTime,
    /// The caller's description (at most 255 bytes).
    pub description: String,
}

pub(crate) struct TrackerInner {
    raw: NonNull<sys::vg_tracker>,
    device: u32,
    drop_failures: AtomicU64,
}

// SAFETY: the core's tracker is internally synchronised (sharded locks, atomic counters); every
// C ABI function may be called from any thread.
unsafe impl Send for TrackerInner {}
unsafe impl Sync for TrackerInner {}

impl Drop for TrackerInner {
    fn drop(&mut self) {
        // SAFETY: raw came from vg_tracker_create and is destroyed exactly once. Buffers hold an
        // Arc to this inner value, so none outlives it.
        let _ = unsafe { sys::vg_tracker_destroy(self.raw.as_ptr()) };
    }
}

impl TrackerInner {
    pub(crate) fn raw(&self) -> *mut sys::vg_tracker {
        self.raw.as_ptr()
    }

    pub(crate) fn note_drop_failure(&self) {
        self.drop_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Tracks every allocation on one GPU by purpose. Cloning is cheap and shares the tracker.
/// Creating one needs no GPU; allocating through it does.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<TrackerInner>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").field("device", &self.inner.device).finish_non_exhaustive()
    }
}

pub(crate) fn description_cstring(description: &str) -> Result<CString> {
    CString::new(description).map_err(|_| Error::InvalidArgument("description contains a NUL byte".to_string()))
}

/// What [`Tracker::allocate_kind`] would refuse in these arguments, asked of the core (which owns
/// those checks) without a tracker or a device: for layers that must refuse before doing
/// something of their own (a budget charge, a whole workload).
pub(crate) fn check_allocation(bytes: u64, purpose: Purpose, kind: AllocationKind, description: &str) -> Result<()> {
    let description = description_cstring(description)?;
    // SAFETY: a NUL-terminated description; the call reads nothing else.
    check(unsafe { sys::vg_check_allocation(bytes, purpose.to_raw(), kind.to_raw(), description.as_ptr()) })
}

/// Calls a C function that copies text into a caller buffer, growing the buffer until it fits.
pub(crate) fn read_text(mut call: impl FnMut(*mut libc::c_char, u64, &mut u64) -> sys::vg_status) -> Result<String> {
    let mut needed = 0u64;
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let status = call(buffer.as_mut_ptr().cast(), buffer.len() as u64, &mut needed);
        if status == sys::VG_ERR_BUFFER_TOO_SMALL && needed > buffer.len() as u64 {
            buffer.resize(needed as usize + 256, 0);
            continue;
        }
        check(status)?;
        let text = CStr::from_bytes_until_nul(&buffer)
            .map_err(|_| Error::Internal("report text is not NUL-terminated".to_string()))?;
        return Ok(text.to_string_lossy().into_owned());
    }
}

impl Tracker {
    /// A tracker for the GPU with this ordinal.
    pub fn new(device: u32) -> Result<Tracker> {
        let ordinal = i32::try_from(device)
            .map_err(|_| Error::InvalidDevice(format!("device ordinal {device} is out of range")))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        check(unsafe { sys::vg_tracker_create(ordinal, &mut raw) })?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::Internal("vg_tracker_create returned NULL".into()))?;
        Ok(Tracker { inner: Arc::new(TrackerInner { raw, device, drop_failures: AtomicU64::new(0) }) })
    }

    /// The ordinal of the GPU this tracker is for.
    pub fn device(&self) -> u32 {
        self.inner.device
    }

    pub(crate) fn inner(&self) -> &Arc<TrackerInner> {
        &self.inner
    }

    /// Allocates `bytes` of device memory (`cudaMalloc`) for `purpose`.
    pub fn allocate(&self, bytes: u64, purpose: Purpose, description: &str) -> Result<DeviceBuffer> {
        DeviceBuffer::new(self, bytes, purpose, AllocationKind::Device, description)
    }

    /// Allocates with an explicit kind. `Managed` and `PinnedHost` are RAM-fallback kinds that
    /// residency checks report as violations; `Adopted` cannot be allocated.
    pub fn allocate_kind(
        &self,
        bytes: u64,
        purpose: Purpose,
        kind: AllocationKind,
        description: &str,
    ) -> Result<DeviceBuffer> {
        DeviceBuffer::new(self, bytes, purpose, kind, description)
    }

    /// Records memory the caller allocated itself (bookkeeping only). Returns the record's id.
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // the pointer is only recorded, never dereferenced
    pub fn record(
        &self,
        ptr: *const c_void,
        bytes: u64,
        purpose: Purpose,
        kind: AllocationKind,
        description: &str,
    ) -> Result<u64> {
        let description = description_cstring(description)?;
        let mut id = 0;
        // SAFETY: the tracker is live; the core never dereferences ptr while recording.
        check(unsafe {
            sys::vg_record(self.inner.raw(), ptr, bytes, purpose.to_raw(), kind.to_raw(), description.as_ptr(), &mut id)
        })?;
        Ok(id)
    }

    /// T7: records a pointer made by another allocator (a framework's tensor) with a purpose, so
    /// that it is counted and residency-checked. vramguard never frees it.
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // the pointer is only recorded, never dereferenced
    pub fn adopt(&self, ptr: *const c_void, bytes: u64, purpose: Purpose, description: &str) -> Result<u64> {
        let description = description_cstring(description)?;
        let mut id = 0;
        // SAFETY: as in record.
        check(unsafe { sys::vg_adopt(self.inner.raw(), ptr, bytes, purpose.to_raw(), description.as_ptr(), &mut id) })?;
        Ok(id)
    }

    /// Forgets the record of a recorded or adopted pointer; frees nothing (its owner frees it,
    /// before or after). An unknown pointer is [`Error::UnknownPointer`] and changes nothing but
    /// the `unknown_deallocations` counter. vramguard's own allocations are freed by dropping
    /// them: forgetting one is [`Error::Ownership`].
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // the pointer is only recorded, never dereferenced
    pub fn forget(&self, ptr: *const c_void) -> Result<()> {
        // SAFETY: the tracker is live.
        check(unsafe { sys::vg_forget(self.inner.raw(), ptr) })
    }

    /// The old name of [`forget`](Self::forget): it never freed anything.
    #[deprecated(since = "0.2.0", note = "use `forget`: this forgets a record, it frees nothing")]
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn deallocate(&self, ptr: *const c_void) -> Result<()> {
        self.forget(ptr)
    }

    /// All counters at once: one consistent read of every counter (counts are summed over the
    /// shards, so this costs a few hundred ns; the single-value reads below are one load each).
    pub fn usage(&self) -> Usage {
        let mut raw = sys::vg_usage::default();
        // SAFETY: live tracker, valid out-pointer: the call cannot fail.
        let status = unsafe { sys::vg_usage_get(self.inner.raw(), &mut raw) };
        debug_assert_eq!(status, sys::VG_OK);
        Usage::from_raw(&raw)
    }

    /// Bytes of every live allocation: one atomic load in the core.
    pub fn total_bytes(&self) -> u64 {
        let mut bytes = 0;
        // SAFETY: live tracker, valid out-pointer: the call cannot fail.
        let status = unsafe { sys::vg_total_bytes(self.inner.raw(), &mut bytes) };
        debug_assert_eq!(status, sys::VG_OK);
        bytes
    }

    /// Number of live allocations, all purposes together.
    pub fn allocation_count(&self) -> u64 {
        let mut count = 0;
        // SAFETY: as in total_bytes.
        let status = unsafe { sys::vg_allocation_count(self.inner.raw(), &mut count) };
        debug_assert_eq!(status, sys::VG_OK);
        count
    }

    /// Bytes of the live allocations of one purpose: one atomic load in the core.
    pub fn bytes_for(&self, purpose: Purpose) -> u64 {
        let mut bytes = 0;
        // SAFETY: as in total_bytes; a Purpose is always a valid vg_purpose.
        let status = unsafe { sys::vg_purpose_bytes(self.inner.raw(), purpose.to_raw(), &mut bytes) };
        debug_assert_eq!(status, sys::VG_OK);
        bytes
    }

    /// Buffers whose free failed when they were dropped (Drop reports here instead of panicking).
    pub fn drop_failures(&self) -> u64 {
        self.inner.drop_failures.load(Ordering::Relaxed)
    }

    /// Copies of the live allocations, oldest first.
    pub fn snapshot(&self) -> Result<Vec<Allocation>> {
        // SAFETY (of the call): `out` has room for `capacity` entries (see copy_records).
        self.copy_records(|out, capacity, count| unsafe { sys::vg_snapshot(self.inner.raw(), out, capacity, count) })
    }

    /// Copies of the live allocations of `purposes`, oldest first: a recent view, read one shard at
    /// a time (unlike [`Tracker::snapshot`], not consistent with [`Tracker::usage`] while others
    /// record), that costs nothing for the allocations of other purposes.
    pub fn snapshot_of(&self, purposes: PurposeSet) -> Result<Vec<Allocation>> {
        // SAFETY (of the call): `out` has room for `capacity` entries (see copy_records).
        self.copy_records(|out, capacity, count| unsafe {
            sys::vg_snapshot_of(self.inner.raw(), purposes.bits(), out, capacity, count)
        })
    }

    /// Runs a copy of records into a vector, growing it until the records fit.
    fn copy_records(
        &self,
        mut copy: impl FnMut(*mut sys::vg_allocation, u64, &mut u64) -> sys::vg_status,
    ) -> Result<Vec<Allocation>> {
        let mut records: Vec<sys::vg_allocation> = Vec::new();
        loop {
            let mut count = 0u64;
            // The core writes at most `capacity` entries and reports how many in count.
            let status = copy(records.as_mut_ptr(), records.capacity() as u64, &mut count);
            if status == sys::VG_ERR_BUFFER_TOO_SMALL {
                records.reserve(count as usize + count as usize / 8 + 16);
                continue;
            }
            check(status)?;
            // SAFETY: the core initialised `count` entries.
            unsafe { records.set_len(count as usize) };
            break;
        }
        records.iter().map(allocation_from_raw).collect()
    }

    /// The tracker's memory pool (where its `Pool` allocations come from): the bytes it holds from
    /// the driver and the bytes allocated from it now, `(reserved, used)`; `(0, 0)` before the
    /// first `Pool` allocation made it. The difference is the pool's cache of freed blocks: device
    /// memory of this process that no allocation tracks.
    pub fn pool_usage(&self) -> Result<(u64, u64)> {
        let (mut reserved, mut used) = (0u64, 0u64);
        // SAFETY: a live tracker and valid out-pointers.
        check(unsafe { sys::vg_pool_usage(self.inner.raw(), &mut reserved, &mut used) })?;
        Ok((reserved, used))
    }

    /// Human-readable usage report (T5).
    pub fn report(&self) -> Result<String> {
        let raw = self.inner.raw();
        // SAFETY: live tracker; buffer and capacity come from read_text.
        read_text(|out, capacity, needed| unsafe { sys::vg_report(raw, out, capacity, needed) })
    }
}

fn allocation_from_raw(raw: &sys::vg_allocation) -> Result<Allocation> {
    // SAFETY: the core NUL-terminates the description inside its fixed-size array.
    let description = unsafe { CStr::from_ptr(raw.description.as_ptr()) }.to_string_lossy().into_owned();
    Ok(Allocation {
        id: raw.id,
        address: raw.address as usize,
        bytes: raw.bytes,
        purpose: Purpose::from_raw(raw.purpose)?,
        kind: AllocationKind::from_raw(raw.kind)?,
        device: raw.device,
        owned: raw.owned != 0,
        recorded_at: UNIX_EPOCH + Duration::from_nanos(raw.recorded_at_unix_ns),
        description,
    })
}
