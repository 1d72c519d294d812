//! This process's device memory as the driver accounts it (H4, H3), from NVML.
//!
//! The tracker counts what went through vramguard; the driver also charges the process for its
//! CUDA context and for other allocators. NVML's per-process figure covers all of it. NVML is
//! `dlopen`ed at run time, so vramguard builds and runs on machines without a driver, and GPUs
//! are matched by PCI bus id because NVML's indices are not CUDA's. Where the figure cannot be
//! had (no driver, old driver, our PID not in NVML's list as in a container) the answer is
//! [`ProcessVram::Unknown`] with the reason, never a guess.
mod error;
mod ffi;
mod handle;
mod library;
mod pci;
mod process;
mod shared;
mod sizing;

pub use error::NvmlUnavailable;
pub use ffi::{
    return_name, NvmlReturn, ProcessInfo, NVML_ERROR_INSUFFICIENT_SIZE, NVML_SUCCESS, NVML_VALUE_NOT_AVAILABLE,
};
pub use handle::{Nvml, NVML_LIBRARY};
pub use pci::PciBusId;
pub use process::{find_process, in_own_pid_namespace, not_listed, ProcessVram};
pub use shared::shared;
pub use sizing::collect_sized;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// This process's VRAM on CUDA device `device`, or why it is unknown. Cheap after the first
/// call; safe from any thread; never panics.
pub fn process_vram(device: u32) -> ProcessVram {
    catch_unwind(AssertUnwindSafe(|| {
        let nvml = match shared() {
            Ok(nvml) => nvml,
            Err(why) => return ProcessVram::Unknown(format!("NVML unavailable: {why}")),
        };
        let pci_bus_id = match shared::pci_bus_id(device) {
            Ok(id) => id,
            Err(why) => return ProcessVram::Unknown(format!("CUDA device {device}: {why}")),
        };
        nvml.process_vram(&pci_bus_id, std::process::id())
    }))
    .unwrap_or_else(|_| ProcessVram::Unknown("internal error while asking NVML (a panic, caught)".into()))
}

/// H4: this process's VRAM on `device` (CUDA ordinal), or None = unknown, never guessed.
pub fn process_vram_bytes(device: u32) -> Option<u64> {
    process_vram(device).bytes()
}
