//! The slice of the NVML C API that vramguard calls, written out by hand: NVML is loaded at run
//! time, so there is no header to generate bindings from and nothing to link against.
use std::ffi::{c_char, c_int, c_uint, c_void};

/// `nvmlReturn_t`: a C enum, so an `int`.
pub type NvmlReturn = c_int;
/// `nvmlDevice_t`: an opaque handle, valid until `nvmlShutdown`.
pub(crate) type NvmlDevice = *mut c_void;

pub const NVML_SUCCESS: NvmlReturn = 0;
pub const NVML_ERROR_INVALID_ARGUMENT: NvmlReturn = 2;
pub const NVML_ERROR_NOT_FOUND: NvmlReturn = 6;
/// The caller's array is too small; the count out-parameter says how many entries there are.
pub const NVML_ERROR_INSUFFICIENT_SIZE: NvmlReturn = 7;
/// `usedGpuMemory` when the driver cannot say (e.g. Windows WDDM): unknown, not zero.
pub const NVML_VALUE_NOT_AVAILABLE: u64 = u64::MAX;

/// `nvmlProcessInfo_t` as `nvmlDeviceGetComputeRunningProcesses_v3` fills it, and
/// `nvmlProcessInfo_v2_t` for `_v2`: the same layout (pid at 0, 4 bytes of padding, used memory
/// at 8, the MIG instance ids at 16 and 20; 24 bytes). `_v1`'s 16-byte struct is never used.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: c_uint,
    /// Bytes, or [`NVML_VALUE_NOT_AVAILABLE`].
    pub used_gpu_memory: u64,
    /// 0xFFFFFFFF unless MIG is enabled.
    pub gpu_instance_id: c_uint,
    /// 0xFFFFFFFF unless MIG is enabled.
    pub compute_instance_id: c_uint,
}

pub(crate) type InitFn = unsafe extern "C" fn() -> NvmlReturn;
pub(crate) type ShutdownFn = unsafe extern "C" fn() -> NvmlReturn;
pub(crate) type HandleByPciBusIdFn = unsafe extern "C" fn(*const c_char, *mut NvmlDevice) -> NvmlReturn;
pub(crate) type ComputeProcessesFn = unsafe extern "C" fn(NvmlDevice, *mut c_uint, *mut ProcessInfo) -> NvmlReturn;

/// The `nvmlReturn_t` name of `code`, for messages an operator can search for.
pub fn return_name(code: NvmlReturn) -> &'static str {
    match code {
        0 => "NVML_SUCCESS",
        1 => "NVML_ERROR_UNINITIALIZED",
        2 => "NVML_ERROR_INVALID_ARGUMENT",
        3 => "NVML_ERROR_NOT_SUPPORTED",
        4 => "NVML_ERROR_NO_PERMISSION",
        5 => "NVML_ERROR_ALREADY_INITIALIZED",
        6 => "NVML_ERROR_NOT_FOUND",
        7 => "NVML_ERROR_INSUFFICIENT_SIZE",
        8 => "NVML_ERROR_INSUFFICIENT_POWER",
        9 => "NVML_ERROR_DRIVER_NOT_LOADED",
        10 => "NVML_ERROR_TIMEOUT",
        11 => "NVML_ERROR_IRQ_ISSUE",
        12 => "NVML_ERROR_LIBRARY_NOT_FOUND",
        13 => "NVML_ERROR_FUNCTION_NOT_FOUND",
        14 => "NVML_ERROR_CORRUPTED_INFOROM",
        15 => "NVML_ERROR_GPU_IS_LOST",
        16 => "NVML_ERROR_RESET_REQUIRED",
        17 => "NVML_ERROR_OPERATING_SYSTEM",
        18 => "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
        19 => "NVML_ERROR_IN_USE",
        20 => "NVML_ERROR_MEMORY",
        21 => "NVML_ERROR_NO_DATA",
        999 => "NVML_ERROR_UNKNOWN",
        _ => "an unlisted NVML error",
    }
}
