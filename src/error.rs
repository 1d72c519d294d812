//! Errors with stable codes (ERR1, ERR2): each says what happened, carries the figures that matter,
//! and tells the operator what to do next.
use std::ffi::CStr;

pub use crate::out_of_memory::{LoadedModels, OomSource, OutOfMemory};
use crate::sys;

/// The result type of every fallible vramguard call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure vramguard reports. `code()` is stable across releases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No CUDA driver or no GPU: vramguard never falls back to the CPU.
    #[error("[VRAM-E001] no usable GPU: {0}")]
    NoDevice(String),
    /// The device (or the host, for pinned memory) or a [`Budget`](crate::Budget) could not give the
    /// bytes asked for; the [`OutOfMemory`] carries the requested and available bytes and the
    /// per-purpose breakdown.
    #[error("[VRAM-E002] {0}")]
    OutOfMemory(Box<OutOfMemory>),
    /// A size the call cannot take: zero bytes, over the core's maximum allocation (256 TiB), or one
    /// that wraps.
    #[error("[VRAM-E003] invalid size: {0}")]
    InvalidSize(String),
    /// A pointer this tracker does not hold: never recorded, or already freed.
    #[error("[VRAM-E004] unknown pointer: {0}")]
    UnknownPointer(String),
    /// A pointer recorded a second time.
    #[error("[VRAM-E005] already tracked: {0}")]
    AlreadyTracked(String),
    /// Freeing a recorded or adopted pointer, or forgetting one of vramguard's own allocations.
    #[error("[VRAM-E006] wrong owner: {0}")]
    Ownership(String),
    /// An argument out of its domain: a NULL or out-of-range enum at the C ABI, too small a buffer,
    /// or a configuration value the validating function names in the message.
    #[error("[VRAM-E007] invalid argument: {0}")]
    InvalidArgument(String),
    /// A copy or range that reaches past the end of its allocation.
    #[error("[VRAM-E008] out of range: {0}")]
    OutOfRange(String),
    /// An allocation description over 255 bytes.
    #[error("[VRAM-E009] description too long: {0}")]
    DescriptionTooLong(String),
    /// A device ordinal at or above the number of visible GPUs, or the wrong device for the call.
    #[error("[VRAM-E010] invalid device: {0}")]
    InvalidDevice(String),
    /// Any other CUDA runtime error; the message names it and the call that failed.
    #[error("[VRAM-E011] CUDA error: {0}")]
    Cuda(String),
    /// An unexpected failure inside vramguard: a bug.
    #[error("[VRAM-E012] internal error: {0}")]
    Internal(String),
    /// A reservation larger than the per-operation limit,
    /// [`MemoryLimits::max_per_operation`](crate::reservation::MemoryLimits::max_per_operation).
    #[error(
        "[VRAM-E013] operation {operation:?} asks for {requested} bytes; the per-operation limit is {limit} bytes"
    )]
    OperationTooLarge {
        /// The operation id the reservation was asked for.
        operation: String,
        /// The bytes it asked for.
        requested: u64,
        /// The per-operation limit, in bytes.
        limit: u64,
    },
    /// No model slot of that name.
    #[error("[VRAM-E014] unknown model slot: {0}")]
    UnknownSlot(String),
    /// A model slot allocated a second time.
    #[error("[VRAM-E015] model slot already allocated: {0}")]
    SlotExists(String),
    /// A model slot that is pinned or in use.
    #[error("[VRAM-E016] model slot is busy: {0}")]
    SlotBusy(String),
    /// A file could not be read or written (a weights file, a post-mortem dump), or an address
    /// could not be listened on; the message names it and the I/O error.
    #[error("[VRAM-E017] I/O error: {0}")]
    Io(String),
    /// A CUDA error that corrupts the process's context (an illegal address, a failed launch,
    /// an uncorrectable ECC error, ...): every later CUDA call fails the same way, and only a
    /// new process can use the GPU again.
    #[error("[VRAM-E018] unrecoverable CUDA error: {0}")]
    CudaSticky(String),
    /// The GPU did not finish in time (a hung or saturated device); nothing was waited for past
    /// the deadline.
    #[error("[VRAM-E019] timed out: {0}")]
    Timeout(String),
    /// A model weights file that is not a well-formed safetensors file, or exceeds the
    /// `weights::WeightLimits`: `tensor` is the first offending tensor's name, escaped and cut
    /// (`None` when the problem is the file's), `reason` what is wrong.
    #[error("[VRAM-E020] invalid weights file {file:?}{}: {reason}", tensor_clause(.tensor))]
    InvalidWeights {
        /// The file's path, as given.
        file: String,
        /// The first offending tensor's name, escaped and cut; `None` when the file is at fault.
        tensor: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Weights that did not arrive intact: the device checksum of a slot's loaded bytes differs
    /// from the host hash of the bytes read (or from the checksum expected). The slot was freed.
    #[error("[VRAM-E021] weights corrupted on the way to the device: {0}")]
    WeightsCorrupted(String),
    /// A weights file changed between its validation and the end of its load: another size,
    /// modification time or inode, or it ended early while being read. The slot was freed.
    #[error("[VRAM-E022] weights file changed during the load: {0}")]
    WeightsFileChanged(String),
    /// The GPU cannot read the memory: pageable host memory, another GPU's memory, pinned host
    /// memory not mapped into the device, or a freed or wild address.
    #[error("[VRAM-E023] memory the GPU cannot read: {0}")]
    NotReadable(String),
}

/// `, tensor "NAME"` for a message, or nothing.
fn tensor_clause(tensor: &Option<String>) -> String {
    tensor.as_ref().map_or(String::new(), |name| format!(", tensor \"{name}\""))
}

impl Error {
    /// The stable code, `VRAM-E0NN`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoDevice(_) => "VRAM-E001",
            Error::OutOfMemory(_) => "VRAM-E002",
            Error::InvalidSize(_) => "VRAM-E003",
            Error::UnknownPointer(_) => "VRAM-E004",
            Error::AlreadyTracked(_) => "VRAM-E005",
            Error::Ownership(_) => "VRAM-E006",
            Error::InvalidArgument(_) => "VRAM-E007",
            Error::OutOfRange(_) => "VRAM-E008",
            Error::DescriptionTooLong(_) => "VRAM-E009",
            Error::InvalidDevice(_) => "VRAM-E010",
            Error::Cuda(_) => "VRAM-E011",
            Error::Internal(_) => "VRAM-E012",
            Error::OperationTooLarge { .. } => "VRAM-E013",
            Error::UnknownSlot(_) => "VRAM-E014",
            Error::SlotExists(_) => "VRAM-E015",
            Error::SlotBusy(_) => "VRAM-E016",
            Error::Io(_) => "VRAM-E017",
            Error::CudaSticky(_) => "VRAM-E018",
            Error::Timeout(_) => "VRAM-E019",
            Error::InvalidWeights { .. } => "VRAM-E020",
            Error::WeightsCorrupted(_) => "VRAM-E021",
            Error::WeightsFileChanged(_) => "VRAM-E022",
            Error::NotReadable(_) => "VRAM-E023",
        }
    }

    /// One sentence on what to do next.
    pub fn remediation(&self) -> &'static str {
        match self {
            Error::NoDevice(_) => {
                "Run on a host with an NVIDIA GPU and driver (check `nvidia-smi`); vramguard never falls back to the CPU."
            }
            Error::OutOfMemory(_) => {
                "Free or evict model slots, lower the batch or KV-cache size, or move the model to a GPU with more free memory."
            }
            Error::InvalidSize(_) => "Pass a size between 1 byte and 256 TiB.",
            Error::UnknownPointer(_) => {
                "Free each allocation exactly once, through the tracker that made or recorded it."
            }
            Error::AlreadyTracked(_) => "Record each pointer once; deallocate it before recording it again.",
            Error::Ownership(_) => {
                "Free vramguard's own allocations by dropping them; forget recorded or adopted pointers with deallocate()."
            }
            Error::InvalidArgument(_) => "Check the argument against the API documentation.",
            Error::OutOfRange(_) => "Keep copies within the allocation: offset + length <= size.",
            Error::DescriptionTooLong(_) => "Shorten the description to at most 255 bytes.",
            Error::InvalidDevice(_) => "Use a device ordinal below the number of visible GPUs (CUDA_VISIBLE_DEVICES).",
            Error::Cuda(_) => "See the CUDA error named in the message; check the driver with `nvidia-smi`.",
            Error::Internal(_) => "This is a bug in vramguard: please report it with the message.",
            Error::OperationTooLarge { .. } => {
                "Split the operation into smaller ones, or raise MemoryLimits::max_per_operation."
            }
            Error::UnknownSlot(_) => "Allocate the slot first; check the name against loaded_slots().",
            Error::SlotExists(_) => "Deallocate the slot before allocating it again, or touch() it to use it.",
            Error::SlotBusy(_) => {
                "Wait until the slot is idle (no use guard, not pinned, past its minimum residency), or unpin it."
            }
            Error::Io(_) => {
                "Check the file, directory or address in the message: that it exists, that this process may read or write it, and that the disk has space."
            }
            Error::CudaSticky(_) => {
                "Restart the process (the orchestrator does so when /health/live fails); if it recurs, check the GPU with `nvidia-smi -q` (ECC, Xid errors)."
            }
            Error::Timeout(_) => {
                "Check whether another kernel holds the GPU (`nvidia-smi`); raise the deadline if the device is only busy."
            }
            Error::InvalidWeights { .. } => {
                "Replace the weights file named in the message (re-export or re-download it: the tensor named is the first that fails), or raise the WeightLimits bound it exceeds."
            }
            Error::WeightsCorrupted(_) => {
                "Load again; if it recurs, suspect host memory or the PCIe link (check `nvidia-smi -q` for replays and the kernel log for memory errors)."
            }
            Error::WeightsFileChanged(_) => {
                "Do not rewrite weights files in place while they load: write a new file and rename it over the old one, then load again."
            }
            Error::NotReadable(_) => {
                "Keep model weights in device memory of the tracker's GPU (or memory mapped into it); re-load them if they were adopted from host memory or another GPU."
            }
        }
    }

    /// True for errors of the GPU itself rather than of the one allocation a call was about: a
    /// sticky CUDA error, a deadline the GPU did not meet, no GPU or no such GPU. A health check
    /// fails on these; any other error leaves only that allocation unjudged.
    pub fn is_device_wide(&self) -> bool {
        matches!(self, Error::CudaSticky(_) | Error::Timeout(_) | Error::NoDevice(_) | Error::InvalidDevice(_))
    }

    /// True when retrying (after freeing memory or fixing the call) can succeed in this process.
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, Error::NoDevice(_) | Error::Internal(_) | Error::CudaSticky(_))
    }

    /// A short snake_case name of the variant, for logs and JSON (`out_of_memory`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoDevice(_) => "no_device",
            Error::OutOfMemory(_) => "out_of_memory",
            Error::InvalidSize(_) => "invalid_size",
            Error::UnknownPointer(_) => "unknown_pointer",
            Error::AlreadyTracked(_) => "already_tracked",
            Error::Ownership(_) => "ownership",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::OutOfRange(_) => "out_of_range",
            Error::DescriptionTooLong(_) => "description_too_long",
            Error::InvalidDevice(_) => "invalid_device",
            Error::Cuda(_) => "cuda",
            Error::Internal(_) => "internal",
            Error::OperationTooLarge { .. } => "operation_too_large",
            Error::UnknownSlot(_) => "unknown_slot",
            Error::SlotExists(_) => "slot_exists",
            Error::SlotBusy(_) => "slot_busy",
            Error::Io(_) => "io",
            Error::CudaSticky(_) => "cuda_sticky",
            Error::Timeout(_) => "timeout",
            Error::InvalidWeights { .. } => "invalid_weights",
            Error::WeightsCorrupted(_) => "weights_corrupted",
            Error::WeightsFileChanged(_) => "weights_file_changed",
            Error::NotReadable(_) => "not_readable",
        }
    }

    /// ERR2: the error as JSON: code, kind, message, recoverable, remediation, and the figures.
    pub fn to_json(&self) -> serde_json::Value {
        let details = match self {
            Error::OutOfMemory(oom) => oom.json_details(),
            Error::OperationTooLarge { operation, requested, limit } => serde_json::json!({
                "operation": operation, "requested_bytes": requested, "limit_bytes": limit,
            }),
            Error::InvalidWeights { file, tensor, reason } => serde_json::json!({
                "file": file, "tensor": tensor, "reason": reason,
            }),
            _ => serde_json::Value::Null,
        };
        serde_json::json!({
            "code": self.code(),
            "kind": self.kind(),
            "message": self.to_string(),
            "recoverable": self.is_recoverable(),
            "remediation": self.remediation(),
            "details": details,
        })
    }

    /// Maps a C ABI status to its error, with this thread's last-error message.
    /// `VG_ERR_OUT_OF_MEMORY` comes only from `vg_alloc`, whose one caller
    /// (`DeviceBuffer::new`) turns it into [`Error::OutOfMemory`] with the figures before it
    /// gets here; should it arrive here, it is the CUDA error it was.
    pub(crate) fn from_status(status: sys::vg_status) -> Error {
        let message = last_error_message();
        match status {
            sys::VG_ERR_NO_DEVICE => Error::NoDevice(message),
            sys::VG_ERR_INVALID_SIZE => Error::InvalidSize(message),
            sys::VG_ERR_UNKNOWN_POINTER => Error::UnknownPointer(message),
            sys::VG_ERR_ALREADY_TRACKED => Error::AlreadyTracked(message),
            sys::VG_ERR_OWNERSHIP => Error::Ownership(message),
            sys::VG_ERR_NULL_ARGUMENT | sys::VG_ERR_INVALID_ENUM | sys::VG_ERR_BUFFER_TOO_SMALL => {
                Error::InvalidArgument(message)
            }
            sys::VG_ERR_OUT_OF_RANGE => Error::OutOfRange(message),
            sys::VG_ERR_DESCRIPTION_TOO_LONG => Error::DescriptionTooLong(message),
            sys::VG_ERR_INVALID_DEVICE => Error::InvalidDevice(message),
            sys::VG_ERR_CUDA | sys::VG_ERR_OUT_OF_MEMORY => Error::Cuda(message),
            sys::VG_ERR_CUDA_STICKY => Error::CudaSticky(message),
            sys::VG_ERR_TIMEOUT => Error::Timeout(message),
            sys::VG_ERR_IO => Error::Io(message),
            sys::VG_ERR_FILE_CHANGED => Error::WeightsFileChanged(message),
            sys::VG_ERR_WEIGHTS_CORRUPTED => Error::WeightsCorrupted(message),
            sys::VG_ERR_NOT_READABLE => Error::NotReadable(message),
            _ => Error::Internal(format!("status {status}: {message}")),
        }
    }
}

/// This thread's last C ABI error message (the failing call and its CUDA error, if any).
pub(crate) fn last_error_message() -> String {
    // SAFETY: vg_last_error never returns NULL and the string lives until the next call on this
    // thread; it is copied at once.
    unsafe { CStr::from_ptr(sys::vg_last_error()) }.to_string_lossy().into_owned()
}

/// Turns a C ABI status into a `Result`.
pub(crate) fn check(status: sys::vg_status) -> Result<()> {
    if status == sys::VG_OK {
        Ok(())
    } else {
        Err(Error::from_status(status))
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
