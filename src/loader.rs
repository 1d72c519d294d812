//! Uploading validated weights into device memory (W1, I1): the Rust face of the core's weights
//! loader (`cuda/include/vramguard/weights_loader.hpp`).
//!
//! A [`WeightsLoader`] holds pinned staging memory (128 MiB by default, allocated once) and one
//! CUDA stream per reader thread. [`WeightsLoader::load`] places every tensor of a
//! [`WeightsSet`] in one device allocation at 256-byte aligned offsets
//! ([`WeightsSet::layout`]), zeroes the padding, reads the files in parallel into staging,
//! hashes each chunk on the host while it is in cache, copies it asynchronously, and finally
//! compares the device checksum of the whole image with the host hash: a mismatch is
//! [`Error::WeightsCorrupted`] (`VRAM-E021`). The verified checksum is what the slot's periodic
//! integrity check compares against afterwards.
//!
//! Most callers never make a loader: [`ModelSlotManager::load_weights`](crate::slots::ModelSlotManager::load_weights)
//! makes one per manager on first use, fits, allocates and loads a slot in one call.
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::buffer::DeviceBuffer;
use crate::checksum::Checksum;
use crate::error::{check, Error, Result};
use crate::sys;
use crate::weights::{Dtype, WeightsSet, SLOT_ALIGNMENT};

/// How a loader is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Pinned host memory for staging, all readers together (128 MiB by default: with 16 readers,
    /// two 4 MiB slots each, as fast as any larger staging on the H200, BENCHMARKS.md). Each
    /// reader has two slots of `staging_bytes / (2 × readers)` bytes, rounded down to whole MiB.
    pub staging_bytes: u64,
    /// Reader threads; 0 (the default): one per hardware thread, at most 16.
    pub readers: u32,
    /// How long one load may take, counted from the call (waiting for another load of the
    /// loader, reading, copying, the device checksum) before it fails with `VRAM-E019`: a GPU
    /// that is hung or held by other work never holds the caller longer. `None` (the default):
    /// the core's, 60 s plus 10 s per GiB of image (`VG_LOAD_TIMEOUT_FLOOR_MS`,
    /// `VG_LOAD_TIMEOUT_MS_PER_GIB`), about a tenth of a GB/s, far below the slowest load measured
    /// (one verifying reader, 0.85 GB/s). Zero is refused; a fraction of a millisecond counts as a
    /// whole one.
    pub load_timeout: Option<Duration>,
}

/// 128 MiB: the default pinned staging of one loader.
pub const DEFAULT_STAGING_BYTES: u64 = 128 << 20;

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { staging_bytes: DEFAULT_STAGING_BYTES, readers: 0, load_timeout: None }
    }
}

/// A load timeout in whole milliseconds, as the C ABI takes it: zero refused, anything else
/// rounded up.
fn timeout_ms(timeout: Duration) -> Result<u64> {
    if timeout.is_zero() {
        return Err(Error::InvalidSize("a load timeout of 0 ms".into()));
    }
    Ok(u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// What a load compares the device's bytes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Hash the bytes read on the host, compare with the device checksum (the default).
    #[default]
    HostHash,
    /// Compare with a checksum known for these files (a previous verified load of the same file
    /// identities): no host hashing.
    Expected(Checksum),
    /// Compare nothing; the device checksum still becomes the integrity reference.
    Unverified,
}

/// One tensor of a loaded slot: where it lives on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotTensor {
    /// The name from the file (untrusted text: print it with [`crate::weights::shown_name`]).
    pub name: String,
    /// The element type, e.g. `F16`.
    #[serde(serialize_with = "serialize_dtype")]
    pub dtype: Dtype,
    /// The dimensions; `[]` is a scalar.
    pub shape: Vec<u64>,
    /// Offset in the slot's allocation (a multiple of 256).
    pub offset: u64,
    /// The tensor's size in bytes (without padding).
    pub bytes: u64,
    /// Device address of the first byte (`slot base + offset`).
    pub device_ptr: u64,
    /// Index of the file it came from, into [`LoadedWeights::files`].
    pub file: usize,
}

fn serialize_dtype<S: serde::Serializer>(dtype: &Dtype, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{dtype:?}"))
}

/// What one load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// The device checksum of the slot's image: its integrity reference.
    pub checksum: Checksum,
    /// Whether the checksum was compared with the host hash or an expected value.
    pub verified: bool,
    /// Tensor bytes copied (without padding).
    pub bytes: u64,
    /// The slot's image: tensors and padding.
    pub image_bytes: u64,
    /// How long the load took (serialised as seconds).
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64())
}

impl LoadReport {
    /// Tensor bytes per second of the whole load, in GB/s (10^9 bytes).
    pub fn gb_per_second(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs / 1e9
        } else {
            0.0
        }
    }
}

/// A slot's weights once loaded: its files, its tensor table and how the load went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedWeights {
    /// The files, in the order loaded.
    pub files: Vec<PathBuf>,
    /// Where each tensor lives on the device, files in order, each file's tensors in file order.
    pub tensors: Vec<SlotTensor>,
    /// How the load went: checksum, verification, bytes and time.
    pub report: LoadReport,
}

impl LoadedWeights {
    /// The tensor called `name`, if the slot has it.
    pub fn tensor(&self, name: &str) -> Option<&SlotTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Pinned staging and reader streams for uploading weights to one device. Thread-safe; loads
/// through one loader run one at a time.
#[derive(Debug)]
pub struct WeightsLoader {
    raw: NonNull<sys::vg_loader>,
    info: sys::vg_loader_info,
    /// `LoaderConfig::load_timeout` in milliseconds; `None`: the core's default for each image.
    timeout_ms: Option<u64>,
    kept: KeptUntilIdle,
}

/// What [`WeightsLoader::keep_until_idle`] holds: the owners of memory that work a failed load
/// left running on the GPU may still write.
#[derive(Default)]
struct KeptUntilIdle(Mutex<Vec<Box<dyn Send>>>);

impl std::fmt::Debug for KeptUntilIdle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("KeptUntilIdle").field("kept", &kept).finish()
    }
}

impl KeptUntilIdle {
    fn keep(&self, owner: Box<dyn Send>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(owner);
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Everything kept, handed out to be dropped (outside the lock: a drop frees device memory).
    fn take(&self) -> Vec<Box<dyn Send>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

// SAFETY: the core's loader is thread-safe (a mutex serialises loads; progress is atomic), and
// the handle is freed once, by Drop.
unsafe impl Send for WeightsLoader {}
unsafe impl Sync for WeightsLoader {}

impl WeightsLoader {
    /// Allocates the staging memory and streams on `device`. `VRAM-E003` for less than 1 MiB per
    /// staging slot, over 64 readers or a load timeout of zero (these before any device is
    /// touched); `VRAM-E001` without a GPU; `VRAM-E011` when the host cannot pin the memory.
    pub fn new(device: u32, config: &LoaderConfig) -> Result<WeightsLoader> {
        if config.staging_bytes == 0 {
            return Err(Error::InvalidSize("a loader's staging of 0 bytes".into()));
        }
        let timeout_ms = config.load_timeout.map(timeout_ms).transpose()?;
        let options = sys::vg_loader_options { staging_bytes: config.staging_bytes, readers: config.readers };
        let device = i32::try_from(device).map_err(|_| Error::InvalidDevice(format!("device {device}")))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid options and out-pointer.
        check(unsafe { sys::vg_loader_create(device, &options, &mut raw) })?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::Internal("vg_loader_create returned NULL".into()))?;
        let mut info = sys::vg_loader_info::default();
        // SAFETY: a live loader and a valid out-pointer.
        check(unsafe { sys::vg_loader_info_get(raw.as_ptr(), &mut info) })?;
        Ok(WeightsLoader { raw, info, timeout_ms, kept: KeptUntilIdle::default() })
    }

    /// The CUDA ordinal of the loader's device.
    pub fn device(&self) -> u32 {
        self.info.device as u32
    }

    /// Reader threads (each with its own CUDA stream).
    pub fn readers(&self) -> u32 {
        self.info.readers
    }

    /// One staging slot (each reader has two).
    pub fn chunk_bytes(&self) -> u64 {
        self.info.chunk_bytes
    }

    /// The pinned host memory the loader holds.
    pub fn staging_bytes(&self) -> u64 {
        self.info.staging_bytes
    }

    /// Bytes read and queued by the running load, of its total (for a progress bar; any thread).
    pub fn progress(&self) -> (u64, u64) {
        let (mut done, mut total) = (0, 0);
        // SAFETY: a live loader and valid out-pointers.
        let status = unsafe { sys::vg_loader_progress(self.raw.as_ptr(), &mut done, &mut total) };
        if status == sys::VG_OK {
            (done, total)
        } else {
            (0, 0)
        }
    }

    /// Whether no load runs and no failed load left work running on the GPU (see
    /// [`load`](Self::load)); never waits. When idle, drops what
    /// [`keep_until_idle`](Self::keep_until_idle) kept. An error means the loader's streams cannot
    /// be queried (a broken context).
    pub fn is_idle(&self) -> Result<bool> {
        let mut idle = 0;
        // SAFETY: a live loader and a valid out-pointer.
        check(unsafe { sys::vg_loader_idle(self.raw.as_ptr(), &mut idle) })?;
        if idle != 0 {
            drop(self.kept.take());
        }
        Ok(idle != 0)
    }

    /// Keeps `owner` (what owns the memory a failed load was filling: its buffer, or a slot held
    /// in use) until the loader is idle, then drops it: at the next [`load`](Self::load) or
    /// [`is_idle`](Self::is_idle) that finds the loader idle, or when the loader is dropped idle.
    /// A loader dropped while work is left running never drops it: the memory stays allocated
    /// to the end of the process, as the loader's staging does.
    pub fn keep_until_idle<T: Send + 'static>(&self, owner: T) {
        self.kept.keep(Box::new(owner));
    }

    /// Loads every tensor of `set` into `buffer` (which must be on the loader's device and hold the
    /// set's layout, [`WeightsSet::layout`] with [`SLOT_ALIGNMENT`]), verified as `verification`
    /// says, and returns the slot's tensor table. Errors: `VRAM-E021` (corrupted on the way),
    /// `VRAM-E022` (a file changed since it was validated), `VRAM-E017` (a file cannot be read),
    /// `VRAM-E008` (the buffer is too small), `VRAM-E010` (another device), `VRAM-E019` (the
    /// load's timeout passed: the GPU busy or hung, or the files read too slowly; see
    /// [`LoaderConfig::load_timeout`]). It never returns later than that timeout. On error the
    /// buffer's bytes are undefined.
    ///
    /// When it returns, nothing of the load runs on the GPU any more, unless
    /// [`is_idle`](Self::is_idle) says otherwise, which only `VRAM-E019` or a CUDA error can
    /// leave: the load's copies may then still write the buffer (and read the staging). The
    /// device's legacy default stream waits for that work, so a `Pool` buffer may be dropped at
    /// once (the pool hands its block out again only after the work); a buffer of another kind
    /// must live until the loader is idle: hand it to [`keep_until_idle`](Self::keep_until_idle).
    /// The next load waits for the work before it touches the staging.
    ///
    /// The load writes the buffer only after the work queued so far on the legacy default stream
    /// of its device is done (and through it, the earlier work of every blocking stream): a `Pool`
    /// block freed by its previous owner while a kernel still read it is not overwritten under
    /// that kernel (see [`DeviceBuffer`]).
    pub fn load(&self, set: &WeightsSet, buffer: &DeviceBuffer, verification: Verification) -> Result<LoadedWeights> {
        if !self.kept.is_empty() {
            let _ = self.is_idle(); // drops what was kept, once the work it waited for is over
        }
        let layout = set.layout(SLOT_ALIGNMENT)?;
        if layout.total_bytes == 0 {
            return Err(Error::InvalidSize("the weights set has no tensor bytes to load".into()));
        }
        // Paths travel as C strings; a NUL inside one cannot name a file.
        let paths = set
            .files()
            .iter()
            .map(|f| {
                std::ffi::CString::new(f.path().as_os_str().as_encoded_bytes())
                    .map_err(|_| Error::InvalidArgument(format!("weights path {:?} contains a NUL byte", f.path())))
            })
            .collect::<Result<Vec<_>>>()?;
        let files: Vec<sys::vg_weights_file> = set
            .files()
            .iter()
            .zip(&paths)
            .map(|(file, path)| {
                let identity = file.identity();
                sys::vg_weights_file {
                    path: path.as_ptr(),
                    size: identity.len,
                    mtime_ns: identity.mtime_ns(),
                    inode: identity.inode,
                    dev: identity.dev,
                }
            })
            .collect();
        let copies: Vec<sys::vg_weights_copy> = layout
            .tensors
            .iter()
            .map(|placed| sys::vg_weights_copy {
                file: placed.file as u32,
                file_offset: set.files()[placed.file].tensors()[placed.tensor].range.start,
                bytes: placed.bytes,
                device_offset: placed.offset,
            })
            .collect();
        let (flags, expected) = match verification {
            Verification::HostHash => (sys::VG_LOAD_VERIFY, None),
            Verification::Expected(sum) => (sys::VG_LOAD_EXPECTED, Some(sys::vg_checksum { lo: sum.lo, hi: sum.hi })),
            Verification::Unverified => (0, None),
        };
        let mut result = sys::vg_load_result::default();
        let (loader, tracker, dst) = (self.raw.as_ptr(), buffer.tracker_raw(), buffer.as_ptr());
        let (file_list, file_count) = (files.as_ptr(), files.len() as u64);
        let (copy_list, copy_count) = (copies.as_ptr(), copies.len() as u64);
        let expected = expected.as_ref().map_or(std::ptr::null(), |e| e as *const sys::vg_checksum);
        let image_bytes = layout.total_bytes;
        // SAFETY: every pointer is valid for the call (paths outlive it, the arrays have the
        // lengths passed), the buffer is a live tracked allocation of its tracker.
        check(unsafe {
            match self.timeout_ms {
                Some(timeout_ms) => sys::vg_load_weights_within(
                    loader,
                    tracker,
                    dst,
                    image_bytes,
                    file_list,
                    file_count,
                    copy_list,
                    copy_count,
                    flags,
                    expected,
                    timeout_ms,
                    &mut result,
                ),
                None => sys::vg_load_weights(
                    loader,
                    tracker,
                    dst,
                    image_bytes,
                    file_list,
                    file_count,
                    copy_list,
                    copy_count,
                    flags,
                    expected,
                    &mut result,
                ),
            }
        })?;
        let base = buffer.as_ptr() as u64;
        let tensors = layout
            .tensors
            .iter()
            .map(|placed| {
                let info = &set.files()[placed.file].tensors()[placed.tensor];
                SlotTensor {
                    name: info.name.clone(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    offset: placed.offset,
                    bytes: placed.bytes,
                    device_ptr: base + placed.offset,
                    file: placed.file,
                }
            })
            .collect();
        Ok(LoadedWeights {
            files: set.files().iter().map(|f| f.path().to_path_buf()).collect(),
            tensors,
            report: LoadReport {
                checksum: Checksum::from(result.checksum),
                verified: result.compared != 0,
                bytes: result.bytes_copied,
                image_bytes: layout.total_bytes,
                duration: Duration::from_secs_f64(result.seconds.max(0.0)),
            },
        })
    }
}

impl Drop for WeightsLoader {
    fn drop(&mut self) {
        // Memory that work left running may still write is never freed under it.
        if !matches!(self.is_idle(), Ok(true)) {
            std::mem::forget(self.kept.take());
        }
        // SAFETY: the handle is live and dropped once; the call never unwinds.
        let _ = unsafe { sys::vg_loader_destroy(self.raw.as_ptr()) };
    }
}

#[cfg(test)]
#[path = "loader_tests.rs"]
mod tests;
