//! Errors with stable codes (E1, E2): each says what happened, carries the figures that matter,
//! and tells the operator what to do next.
use std::ffi::CStr;
use std::fmt;

use crate::format::bytes_human;
use crate::purpose::Purpose;
use crate::sys;
use crate::usage::Usage;

/// The result type of every fallible vramguard call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Figures attached to an out-of-memory error (E1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfMemory {
    pub device: i32,
    pub requested: u64,
    /// Free device memory reported by the driver after the failure, when it could be read.
    pub available: Option<u64>,
    /// What this tracker holds, by purpose.
    pub usage: Usage,
    /// The driver's own message (e.g. `cudaMalloc(...) failed: cudaErrorMemoryAllocation`).
    pub cause: String,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GPU{} out of memory: requested {}", self.device, bytes_human(self.requested))?;
        match self.available {
            Some(available) => write!(f, ", available {}", bytes_human(available))?,
            None => write!(f, ", available unknown")?,
        }
        write!(f, ", tracked {} (", bytes_human(self.usage.total_bytes))?;
        for (i, purpose) in Purpose::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{purpose}: {}", bytes_human(self.usage.bytes(*purpose)))?;
        }
        write!(f, "); {}", self.cause)
    }
}

/// Every failure vramguard reports. `code()` is stable across releases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("[VRAM-E001] no usable GPU: {0}")]
    NoDevice(String),
    #[error("[VRAM-E002] {0}")]
    OutOfMemory(Box<OutOfMemory>),
    #[error("[VRAM-E003] invalid size: {0}")]
    InvalidSize(String),
    #[error("[VRAM-E004] unknown pointer: {0}")]
    UnknownPointer(String),
    #[error("[VRAM-E005] already tracked: {0}")]
    AlreadyTracked(String),
    #[error("[VRAM-E006] wrong owner: {0}")]
    Ownership(String),
    #[error("[VRAM-E007] invalid argument: {0}")]
    InvalidArgument(String),
    #[error("[VRAM-E008] out of range: {0}")]
    OutOfRange(String),
    #[error("[VRAM-E009] description too long: {0}")]
    DescriptionTooLong(String),
    #[error("[VRAM-E010] invalid device: {0}")]
    InvalidDevice(String),
    #[error("[VRAM-E011] CUDA error: {0}")]
    Cuda(String),
    #[error("[VRAM-E012] internal error: {0}")]
    Internal(String),
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
        }
    }

    /// True when retrying (after freeing memory or fixing the call) can succeed in this process.
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, Error::NoDevice(_) | Error::Internal(_))
    }

    /// Maps a C ABI status to its error, with this thread's last-error message.
    pub(crate) fn from_status(status: sys::vg_status) -> Error {
        // SAFETY: vg_last_error never returns NULL and the string lives until the next call on
        // this thread; it is copied at once.
        let message = unsafe { CStr::from_ptr(sys::vg_last_error()) }.to_string_lossy().into_owned();
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
            _ => Error::Internal(format!("status {status}: {message}")),
        }
    }
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
