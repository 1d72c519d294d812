//! M2: `DeviceBuffer`, tracked memory freed on Drop. It holds its tracker (and so the core's
//! tracker and memory pool) alive; Drop never panics.
use std::ffi::c_void;
use std::sync::Arc;

use crate::device::memory_info;
use crate::error::{check, last_error_message, Error, OutOfMemory, Result};
use crate::purpose::{AllocationKind, Purpose};
use crate::sys;
use crate::tracker::{description_cstring, Tracker, TrackerInner};

/// The allocation fast path: a description that fits the core's limit is NUL-terminated on the
/// stack, not in a heap `CString`.
fn with_c_description<T>(description: &str, call: impl FnOnce(*const libc::c_char) -> T) -> Result<T> {
    let bytes = description.as_bytes();
    if bytes.len() > sys::VG_MAX_DESCRIPTION_BYTES as usize {
        let text = description_cstring(description)?; // the core refuses it with its own code
        return Ok(call(text.as_ptr()));
    }
    if bytes.contains(&0) {
        return Err(Error::InvalidArgument("description contains a NUL byte".to_string()));
    }
    let mut text = [0u8; sys::VG_MAX_DESCRIPTION_BYTES as usize + 1];
    text[..bytes.len()].copy_from_slice(bytes);
    Ok(call(text.as_ptr().cast()))
}

/// Memory allocated through a tracker. Not `Clone`: one owner frees it, once.
///
/// # Freeing while the GPU still uses the memory
///
/// Drop frees through `vg_free`. Kinds `Device` and `Managed` are freed with `cudaFree`, which
/// "may perform implicit synchronization" and promises no more: complete or synchronise work that
/// uses the buffer first. Kind `Pool` is freed with `cudaFreeAsync` on the legacy default
/// stream of the buffer's device, so the pool may hand the memory to the next allocation as soon
/// as the work queued on that stream before the free is done. The legacy default stream first
/// waits for the earlier work of every *blocking* stream of the context (streams made with
/// `cudaStreamCreate`, and the per-thread default streams), so a kernel on one of those that still
/// reads or writes the buffer finishes before the memory is reused, also by vramguard: copies run
/// on that stream, and the weights loader waits for it before it writes. Work on a *non-blocking*
/// stream (`cudaStreamNonBlocking`), or in another context or process, is not waited for:
/// synchronise it before dropping the buffer.
///
/// Copies ([`DeviceBuffer::copy_from_host`], [`DeviceBuffer::copy_to_host`]) return once the
/// bytes are in their destination. The device checksum runs on vramguard's own non-blocking
/// stream, which waits for no other: what a kernel or an asynchronous copy of the caller's wrote
/// into the buffer must be synchronised before it is checksummed.
pub struct DeviceBuffer {
    tracker: Arc<TrackerInner>,
    device: u32,
    ptr: *mut c_void,
    bytes: u64,
    purpose: Purpose,
    kind: AllocationKind,
}

// SAFETY: the buffer is a device address plus a handle to a thread-safe tracker; moving it to or
// sharing it with another thread touches no thread-local state.
unsafe impl Send for DeviceBuffer {}
unsafe impl Sync for DeviceBuffer {}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("device", &self.device)
            .field("ptr", &self.ptr)
            .field("bytes", &self.bytes)
            .field("purpose", &self.purpose)
            .field("kind", &self.kind)
            .finish()
    }
}

impl DeviceBuffer {
    pub(crate) fn new(
        tracker: &Tracker,
        bytes: u64,
        purpose: Purpose,
        kind: AllocationKind,
        description: &str,
    ) -> Result<DeviceBuffer> {
        let inner = tracker.inner();
        let mut ptr = std::ptr::null_mut();
        // SAFETY: live tracker, valid out-pointer, a NUL-terminated description.
        let status = with_c_description(description, |text| unsafe {
            sys::vg_alloc(inner.raw(), bytes, purpose.to_raw(), kind.to_raw(), text, &mut ptr)
        })?;
        if status == sys::VG_ERR_OUT_OF_MEMORY {
            // The first layer that sees the device's refusal with the figures to explain it: it
            // becomes an out-of-memory error here, with the CUDA call that failed as its cause.
            let cause = last_error_message();
            let available = memory_info(tracker.device()).ok().map(|m| m.free_bytes);
            crate::events::vram_oom(tracker.device(), bytes, available);
            let oom = OutOfMemory::device(tracker.device() as i32, bytes, available, tracker.usage(), cause);
            return Err(Error::OutOfMemory(Box::new(oom)));
        }
        check(status)?;
        crate::events::vram_allocate(tracker.device(), bytes, purpose, kind);
        Ok(DeviceBuffer { tracker: Arc::clone(inner), device: tracker.device(), ptr, bytes, purpose, kind })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether the buffer has no bytes: never, since the core refuses 0-byte allocations.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// What the memory is for, as given when it was allocated.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// How the memory was allocated (`Device`, `Pool`, `Managed` or `PinnedHost`).
    pub fn kind(&self) -> AllocationKind {
        self.kind
    }

    /// The ordinal of the GPU whose tracker allocated it.
    pub fn device(&self) -> u32 {
        self.device
    }

    /// The core's tracker handle this buffer was allocated through (for the C ABI calls that
    /// need it, such as the checksum's).
    pub(crate) fn tracker_raw(&self) -> *mut sys::vg_tracker {
        self.tracker.raw()
    }

    /// The device address, for kernels and libraries. It stays valid while `self` lives.
    pub fn as_ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Copies `data` into the buffer at byte `offset`.
    pub fn copy_from_host(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        // SAFETY: data is a valid host slice; the core checks offset + len against the allocation.
        check(unsafe {
            sys::vg_copy_to_device(self.tracker.raw(), self.ptr, offset, data.as_ptr().cast(), data.len() as u64)
        })
    }

    /// Copies from the buffer at byte `offset` into `out`.
    pub fn copy_to_host(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        // SAFETY: out is a valid, writable host slice; the core checks the range.
        check(unsafe {
            sys::vg_copy_to_host(self.tracker.raw(), out.as_mut_ptr().cast(), self.ptr, offset, out.len() as u64)
        })
    }

    /// Reads the whole buffer back.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.bytes as usize];
        self.copy_to_host(0, &mut out)?;
        Ok(out)
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr came from vg_alloc on this tracker and is freed exactly once, here.
        let status = unsafe { sys::vg_free(self.tracker.raw(), self.ptr) };
        if status != sys::VG_OK {
            self.tracker.note_drop_failure();
            return;
        }
        if tracing::enabled!(tracing::Level::INFO) {
            let mut remaining = 0;
            // SAFETY: live tracker, valid out-pointer.
            unsafe { sys::vg_total_bytes(self.tracker.raw(), &mut remaining) };
            crate::events::vram_deallocate(self.device, self.bytes, remaining);
        }
    }
}
