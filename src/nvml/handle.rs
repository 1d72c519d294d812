//! NVML, loaded and initialised: the calls vramguard needs, resolved once.
use std::ffi::CString;
use std::ptr;

use super::error::NvmlUnavailable;
use super::ffi::{
    ComputeProcessesFn, HandleByPciBusIdFn, InitFn, NvmlDevice, ProcessInfo, ShutdownFn, NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND, NVML_SUCCESS,
};
use super::library::Library;
use super::pci::PciBusId;
use super::process::{find_process, ProcessVram};
use super::sizing::collect_sized;

/// The library the driver installs; the unversioned name exists only with development packages.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// An initialised NVML. Drop calls `nvmlShutdown` (NVML counts inits, so several may coexist)
/// and then closes the library.
#[derive(Debug)]
pub struct Nvml {
    shutdown: ShutdownFn,
    handle_by_pci_bus_id: HandleByPciBusIdFn,
    compute_processes: ComputeProcessesFn,
    /// Which `nvmlDeviceGetComputeRunningProcesses` was found, for messages.
    compute_processes_name: &'static str,
    /// Declared last: dropped after Drop::drop has called shutdown through it.
    library: Library,
}

// SAFETY: NVML documents every entry point as thread-safe; Nvml holds only function pointers
// into the library and the library handle (itself Send + Sync).
unsafe impl Send for Nvml {}
// SAFETY: as above; &Nvml only calls thread-safe NVML functions.
unsafe impl Sync for Nvml {}

impl Nvml {
    /// The driver's NVML. Fails where there is no driver, never panics.
    pub fn load() -> Result<Nvml, NvmlUnavailable> {
        Nvml::load_from(NVML_LIBRARY)
    }

    /// NVML from `library` (a name for the loader's search, or a path).
    pub fn load_from(library: &str) -> Result<Nvml, NvmlUnavailable> {
        let library = Library::open(library)?;
        // SAFETY: InitFn is nvmlInit_v2's C signature, nvmlReturn_t (void).
        let init: InitFn = unsafe { library.function(c"nvmlInit_v2") }?;
        // SAFETY: ShutdownFn is nvmlShutdown's C signature, nvmlReturn_t (void).
        let shutdown: ShutdownFn = unsafe { library.function(c"nvmlShutdown") }?;
        // SAFETY: HandleByPciBusIdFn is (const char*, nvmlDevice_t*) -> nvmlReturn_t, as declared.
        let handle_by_pci_bus_id: HandleByPciBusIdFn =
            unsafe { library.function(c"nvmlDeviceGetHandleByPciBusId_v2") }?;
        let (compute_processes, compute_processes_name) = compute_processes(&library)?;
        // SAFETY: nvmlInit_v2 takes no arguments and may be called from any thread.
        let code = unsafe { init() };
        if code != NVML_SUCCESS {
            return Err(NvmlUnavailable::Call { function: "nvmlInit_v2", code });
        }
        Ok(Nvml { shutdown, handle_by_pci_bus_id, compute_processes, compute_processes_name, library })
    }

    /// The library this NVML came from.
    pub fn library(&self) -> &str {
        self.library.name()
    }

    /// The compute processes NVML lists on the GPU at `pci_bus_id`.
    pub fn processes(&self, pci_bus_id: &str) -> Result<Vec<ProcessInfo>, NvmlUnavailable> {
        let device = self.device(pci_bus_id)?;
        let query = |count: &mut u32, buffer: &mut [ProcessInfo]| {
            let array = if buffer.is_empty() { ptr::null_mut() } else { buffer.as_mut_ptr() };
            // SAFETY: device is a live handle (NVML stays initialised while self lives), count
            // is valid, and array holds *count entries or is null with *count == 0.
            unsafe { (self.compute_processes)(device, count, array) }
        };
        collect_sized(query).map_err(|code| NvmlUnavailable::Call { function: self.compute_processes_name, code })
    }

    /// Bytes NVML says `pid` holds on the GPU at `pci_bus_id`; `Ok(None)` when NVML works but
    /// has no figure for it (not listed, or NVML_VALUE_NOT_AVAILABLE).
    pub fn process_used_bytes(&self, pci_bus_id: &str, pid: u32) -> Result<Option<u64>, NvmlUnavailable> {
        Ok(find_process(&self.processes(pci_bus_id)?, pid).bytes())
    }

    /// As [`Nvml::process_used_bytes`], with the reason when it is unknown.
    pub fn process_vram(&self, pci_bus_id: &str, pid: u32) -> ProcessVram {
        match self.processes(pci_bus_id) {
            Ok(list) => find_process(&list, pid),
            Err(why) => ProcessVram::Unknown(why.to_string()),
        }
    }

    /// NVML's handle for the GPU at `pci_bus_id`, tried in NVML's form and then CUDA's.
    fn device(&self, pci_bus_id: &str) -> Result<NvmlDevice, NvmlUnavailable> {
        let id = PciBusId::parse(pci_bus_id)?;
        for form in [id.nvml_form(), id.legacy_form()] {
            let Ok(form) = CString::new(form) else { continue };
            let mut device: NvmlDevice = ptr::null_mut();
            // SAFETY: form is NUL-terminated and device a valid out-pointer, both live for the call.
            let code = unsafe { (self.handle_by_pci_bus_id)(form.as_ptr(), &mut device) };
            match code {
                NVML_SUCCESS if !device.is_null() => return Ok(device),
                NVML_SUCCESS | NVML_ERROR_NOT_FOUND | NVML_ERROR_INVALID_ARGUMENT => continue,
                code => return Err(NvmlUnavailable::Call { function: "nvmlDeviceGetHandleByPciBusId_v2", code }),
            }
        }
        Err(NvmlUnavailable::NoSuchDevice(id.to_string()))
    }
}

/// `nvmlDeviceGetComputeRunningProcesses_v3` (driver 510 and later), else `_v2`: both fill the
/// same 24-byte struct ([`ProcessInfo`]). `_v1`'s 16-byte struct is never used.
fn compute_processes(library: &Library) -> Result<(ComputeProcessesFn, &'static str), NvmlUnavailable> {
    for name in [c"nvmlDeviceGetComputeRunningProcesses_v3", c"nvmlDeviceGetComputeRunningProcesses_v2"] {
        // SAFETY: ComputeProcessesFn is (nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*) ->
        // nvmlReturn_t, the signature of both versions.
        if let Ok(function) = unsafe { library.function::<ComputeProcessesFn>(name) } {
            return Ok((function, name.to_str().unwrap_or("nvmlDeviceGetComputeRunningProcesses")));
        }
    }
    Err(NvmlUnavailable::MissingSymbol {
        library: library.name().to_owned(),
        symbol: "nvmlDeviceGetComputeRunningProcesses_v3 or _v2",
    })
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: nvmlInit_v2 succeeded for this value, so this shutdown balances it; the library
        // is still open (fields drop after this body).
        unsafe { (self.shutdown)() };
    }
}
