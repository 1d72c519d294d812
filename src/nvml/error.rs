//! Why NVML could not answer. Every variant ends in "unknown", never in a guessed figure.
use super::ffi::{return_name, NvmlReturn};

/// NVML is missing, incomplete, failed, or does not know the GPU asked about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmlUnavailable {
    /// `dlopen` failed: no NVIDIA driver on this machine, or not in the loader's path.
    #[error("{library} cannot be loaded: {reason}")]
    Library { library: String, reason: String },
    /// The library is too old (or not NVML) for a function vramguard needs.
    #[error("{library} has no {symbol}")]
    MissingSymbol { library: String, symbol: &'static str },
    /// An NVML call returned an error.
    #[error("{function} failed: {} ({code})", return_name(*code))]
    Call { function: &'static str, code: NvmlReturn },
    /// NVML knows no GPU at this PCI bus id.
    #[error("NVML has no GPU at PCI bus id {0}")]
    NoSuchDevice(String),
    /// Not `domain:bus:device.function` in hexadecimal.
    #[error("malformed PCI bus id {0:?}")]
    BadPciBusId(String),
}
