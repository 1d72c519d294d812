//! This process's device memory as the driver accounts it (H4, H3), from NVML.
//!
//! What NVML gives: for each GPU, the processes with a CUDA context on it and the bytes the driver
//! charges each (`nvmlDeviceGetComputeRunningProcesses_v3`). The tracker counts what went through
//! vramguard; NVML's per-process figure covers everything, the CUDA context and other allocators
//! included. GPUs are matched by PCI bus id, because NVML's indices are not CUDA's (they differ
//! under CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER).
//!
//! NVML comes from the `nvml-wrapper` crate, which loads `libnvidia-ml.so.1` at run time (nothing
//! is linked, so vramguard builds and runs where there is no driver). It is loaded and
//! initialised once per process, on first use ([`shared`]), never per call.
//!
//! The answer is [`ProcessVram::Unknown`], with the reason and never a guessed figure, when the
//! library is missing or lacks a function (a driver older than R510), `nvmlInit` fails (no driver
//! loaded, no permission), the CUDA device cannot be opened or NVML has no GPU at its PCI bus id,
//! our PID is not in NVML's list (a container's PID namespace, where NVML lists host PIDs; or no
//! CUDA context yet), or NVML lists us without a figure (`NVML_VALUE_NOT_AVAILABLE`).
mod pci;

pub use nvml_wrapper::enums::device::UsedGpuMemory;
pub use nvml_wrapper::struct_wrappers::device::ProcessInfo;
pub use pci::PciBusId;

use std::ffi::OsStr;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use nvml_wrapper::error::NvmlError;

use crate::device::Device;

/// The library the driver installs; the unversioned name exists only with development packages.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

const INIT: &str = "nvmlInit_v2";
const HANDLE_BY_PCI_BUS_ID: &str = "nvmlDeviceGetHandleByPciBusId_v2";
const COMPUTE_PROCESSES: &str = "nvmlDeviceGetComputeRunningProcesses_v3";
const DEVICE_COUNT: &str = "nvmlDeviceGetCount_v2";

/// Why NVML could not answer. Every variant ends in "unknown", never in a guessed figure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmlUnavailable {
    /// The library cannot be loaded: no NVIDIA driver on this machine, or not in the loader's path.
    #[error("{library} cannot be loaded: {reason}")]
    Library {
        /// The library's name or path, as tried.
        library: String,
        /// The loader's error.
        reason: String,
    },
    /// The library is too old (or not NVML) for a function vramguard needs.
    #[error("{library} has no {symbol}")]
    MissingSymbol {
        /// The library's name or path.
        library: String,
        /// The function it lacks, e.g. `nvmlDeviceGetComputeRunningProcesses_v3`.
        symbol: &'static str,
    },
    /// An NVML call returned an error.
    #[error("{function} failed: {reason}")]
    Call {
        /// The NVML function that failed.
        function: &'static str,
        /// NVML's error.
        reason: String,
    },
    /// NVML knows no GPU at this PCI bus id.
    #[error("NVML has no GPU at PCI bus id {0}")]
    NoSuchDevice(String),
    /// Not `domain:bus:device.function` in hexadecimal.
    #[error("malformed PCI bus id {0:?}")]
    BadPciBusId(String),
}

impl NvmlUnavailable {
    /// nvml-wrapper's `error` from calling `function` in `library`.
    fn new(library: &str, function: &'static str, error: NvmlError) -> NvmlUnavailable {
        match error {
            NvmlError::LibloadingError(error) => {
                NvmlUnavailable::Library { library: library.to_owned(), reason: error.to_string() }
            }
            NvmlError::FailedToLoadSymbol(_) => {
                NvmlUnavailable::MissingSymbol { library: library.to_owned(), symbol: function }
            }
            error => NvmlUnavailable::Call { function, reason: error.to_string() },
        }
    }
}

/// An initialised NVML and the library it came from. Drop calls `nvmlShutdown` (NVML counts
/// inits, so several may coexist).
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
    library: String,
}

impl fmt::Debug for Nvml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nvml").field("library", &self.library).finish_non_exhaustive()
    }
}

impl Nvml {
    /// The driver's NVML. Fails where there is no driver, never panics.
    pub fn load() -> Result<Nvml, NvmlUnavailable> {
        Nvml::load_from(NVML_LIBRARY)
    }

    /// NVML from `library` (a name for the loader's search, or a path).
    pub fn load_from(library: &str) -> Result<Nvml, NvmlUnavailable> {
        let nvml = nvml_wrapper::Nvml::builder().lib_path(OsStr::new(library)).init();
        let nvml = nvml.map_err(|error| NvmlUnavailable::new(library, INIT, error))?;
        Ok(Nvml { nvml, library: library.to_owned() })
    }

    /// The library this NVML came from.
    pub fn library(&self) -> &str {
        &self.library
    }

    /// The host's GPUs, all of them: NVML does not read `CUDA_VISIBLE_DEVICES`, so this is what
    /// the machine has, not what this process may use.
    pub fn device_count(&self) -> Result<u32, NvmlUnavailable> {
        self.nvml.device_count().map_err(|error| NvmlUnavailable::new(&self.library, DEVICE_COUNT, error))
    }

    /// NVML's handle for the GPU at `pci_bus_id` (CUDA's or NVML's form), tried in NVML's form
    /// and then in the legacy one.
    pub fn device(&self, pci_bus_id: &str) -> Result<nvml_wrapper::Device<'_>, NvmlUnavailable> {
        let id = PciBusId::parse(pci_bus_id)?;
        for form in [id.nvml_form(), id.legacy_form()] {
            match self.nvml.device_by_pci_bus_id(form) {
                Ok(device) => return Ok(device),
                Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
                Err(error) => return Err(NvmlUnavailable::new(&self.library, HANDLE_BY_PCI_BUS_ID, error)),
            }
        }
        Err(NvmlUnavailable::NoSuchDevice(id.to_string()))
    }

    /// The compute processes NVML lists on the GPU at `pci_bus_id`.
    pub fn processes(&self, pci_bus_id: &str) -> Result<Vec<ProcessInfo>, NvmlUnavailable> {
        let device = self.device(pci_bus_id)?;
        retry_while_growing(|| device.running_compute_processes())
            .map_err(|error| NvmlUnavailable::new(&self.library, COMPUTE_PROCESSES, error))
    }

    /// Bytes NVML says `pid` holds on the GPU at `pci_bus_id`, or why that is unknown.
    pub fn process_vram(&self, pci_bus_id: &str, pid: u32) -> ProcessVram {
        match self.processes(pci_bus_id) {
            Ok(list) => find_process(&list, pid),
            Err(why) => ProcessVram::Unknown(why.to_string()),
        }
    }
}

/// Calls of the process list before giving up on one that keeps growing.
const ATTEMPTS: usize = 5;

/// Runs `call` again while it fails with NVML_ERROR_INSUFFICIENT_SIZE, at most [`ATTEMPTS`] times:
/// nvml-wrapper sizes the list from a first count plus 5 entries, and more processes than that
/// may start between its two calls.
fn retry_while_growing<T>(mut call: impl FnMut() -> Result<T, NvmlError>) -> Result<T, NvmlError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(NvmlError::InsufficientSize(_)) if attempt < ATTEMPTS => attempt += 1,
            answer => return answer,
        }
    }
}

/// Device memory this process holds on one GPU, as the driver accounts it (H4): everything
/// the process holds there, tracked or not (context, libraries' pools, other allocators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessVram {
    /// The bytes the driver charges this process on the GPU.
    Known(u64),
    /// Why the driver's figure cannot be had.
    Unknown(String),
}

impl ProcessVram {
    /// The figure, or `None` when it is unknown.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            ProcessVram::Known(bytes) => Some(*bytes),
            ProcessVram::Unknown(_) => None,
        }
    }
}

/// Our entry in `list`. Entries of one PID in different MIG instances are added; a repeated
/// (pid, instance) entry counts once. A figure only when NVML gives one for `pid`, never 0.
pub fn find_process(list: &[ProcessInfo], pid: u32) -> ProcessVram {
    let mut seen: Vec<(Option<u32>, Option<u32>)> = Vec::new();
    let mut total: u64 = 0;
    for entry in list.iter().filter(|entry| entry.pid == pid) {
        let instance = (entry.gpu_instance_id, entry.compute_instance_id);
        if seen.contains(&instance) {
            continue;
        }
        seen.push(instance);
        match entry.used_gpu_memory {
            UsedGpuMemory::Used(bytes) => total = total.saturating_add(bytes),
            UsedGpuMemory::Unavailable => {
                return ProcessVram::Unknown(format!(
                    "NVML lists pid {pid} but without a memory figure (NVML_VALUE_NOT_AVAILABLE)"
                ))
            }
        }
    }
    if seen.is_empty() {
        return ProcessVram::Unknown(not_listed(list, pid, in_own_pid_namespace()));
    }
    ProcessVram::Known(total)
}

/// Why our PID is missing: in a container the driver lists PIDs of another namespace.
pub fn not_listed(list: &[ProcessInfo], pid: u32, own_pid_namespace: Option<bool>) -> String {
    let mut pids: Vec<String> = list.iter().take(8).map(|entry| entry.pid.to_string()).collect();
    if list.len() > pids.len() {
        pids.push("...".into());
    }
    let listed = if pids.is_empty() { "no process".to_owned() } else { format!("pids [{}]", pids.join(", ")) };
    let why = match own_pid_namespace {
        Some(true) => "; this process runs in its own PID namespace (a container), where NVML's PIDs are not ours",
        Some(false) => "; this process has no CUDA context on the GPU yet, or the driver hides it",
        None => "",
    };
    format!("pid {pid} is not in NVML's compute-process list for this GPU (it lists {listed}){why}")
}

/// Whether this process runs outside the initial PID namespace (Linux), or None when that cannot
/// be read. The initial namespace's inode is fixed by the kernel (PROC_PID_INIT_INO).
pub fn in_own_pid_namespace() -> Option<bool> {
    const PROC_PID_INIT_INO: &str = "pid:[4026531836]";
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(link.to_str()? != PROC_PID_INIT_INO)
}

static SHARED: OnceLock<Result<Nvml, NvmlUnavailable>> = OnceLock::new();
/// PCI bus id per CUDA ordinal: fixed for the life of the process, and reading it goes through
/// cudaGetDeviceProperties, which is too slow to repeat on every check.
static PCI_BUS_IDS: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// The process-wide NVML, loaded on first use, or why there is none. A failure is remembered
/// too: no driver now means no driver for this process. Never shut down (it lives until the
/// process exits).
pub fn shared() -> Result<&'static Nvml, NvmlUnavailable> {
    SHARED.get_or_init(Nvml::load).as_ref().map_err(Clone::clone)
}

/// The PCI bus id of CUDA device `ordinal`.
fn pci_bus_id(ordinal: u32) -> crate::Result<String> {
    let mut cache = PCI_BUS_IDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, id)) = cache.iter().find(|(device, _)| *device == ordinal) {
        return Ok(id.clone());
    }
    let id = Device::new(ordinal)?.info()?.pci_bus_id;
    cache.push((ordinal, id.clone()));
    Ok(id)
}

/// This process's VRAM on CUDA device `device`, or why it is unknown. Cheap after the first
/// call; safe from any thread; never panics.
pub fn process_vram(device: u32) -> ProcessVram {
    catch_unwind(AssertUnwindSafe(|| {
        let nvml = match shared() {
            Ok(nvml) => nvml,
            Err(why) => return ProcessVram::Unknown(format!("NVML unavailable: {why}")),
        };
        let pci_bus_id = match pci_bus_id(device) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A process list that gives `answers` in turn, counting calls.
    fn fake(
        answers: Vec<Result<usize, NvmlError>>,
        calls: &mut usize,
    ) -> impl FnMut() -> Result<usize, NvmlError> + '_ {
        let mut answers = answers.into_iter();
        move || {
            *calls += 1;
            answers.next().expect("an answer per call")
        }
    }

    #[test]
    fn a_list_that_grew_between_calls_is_read_again() {
        let mut calls = 0;
        let answers = vec![Err(NvmlError::InsufficientSize(None)), Ok(12)];
        assert!(matches!(retry_while_growing(fake(answers, &mut calls)), Ok(12)));
        assert_eq!(calls, 2);
    }

    #[test]
    fn a_list_that_keeps_growing_gives_up_after_bounded_retries() {
        let mut calls = 0;
        let answers = (0..10).map(|_| Err(NvmlError::InsufficientSize(None))).collect();
        assert!(matches!(retry_while_growing(fake(answers, &mut calls)), Err(NvmlError::InsufficientSize(_))));
        assert_eq!(calls, ATTEMPTS);
    }

    #[test]
    fn other_errors_and_success_stop_at_once() {
        let mut calls = 0;
        assert!(matches!(
            retry_while_growing(fake(vec![Err(NvmlError::NotSupported)], &mut calls)),
            Err(NvmlError::NotSupported)
        ));
        assert!(matches!(retry_while_growing(fake(vec![Ok(0)], &mut calls)), Ok(0)));
        assert_eq!(calls, 2);
    }

    #[test]
    fn nvml_wrapper_errors_keep_their_meaning() {
        let missing = NvmlUnavailable::new(NVML_LIBRARY, COMPUTE_PROCESSES, NvmlError::FailedToLoadSymbol("x".into()));
        assert_eq!(missing.to_string(), "libnvidia-ml.so.1 has no nvmlDeviceGetComputeRunningProcesses_v3");
        let failed = NvmlUnavailable::new(NVML_LIBRARY, INIT, NvmlError::DriverNotLoaded);
        assert_eq!(failed.to_string(), "nvmlInit_v2 failed: NVIDIA driver is not loaded");
    }
}
