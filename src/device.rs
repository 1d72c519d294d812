//! GPUs: how many, what they are, how much memory they have free. No GPU is an error (ERR5), never
//! a fallback to the CPU.
use std::ffi::CStr;

use crate::error::{check, Error, Result};
use crate::sys;
use crate::tracker::Tracker;

/// Free and total device memory as the driver reports it (`cudaMemGetInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Memory the driver could still allocate on the device.
    pub free_bytes: u64,
    /// The device's whole memory.
    pub total_bytes: u64,
}

impl MemoryInfo {
    /// Device-wide used memory, `total - free`: this process's and every other's.
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes - self.free_bytes
    }
}

/// What a GPU is (H5: integrated and unified-memory devices are reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The CUDA ordinal (as numbered under `CUDA_VISIBLE_DEVICES`).
    pub ordinal: u32,
    /// The product name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability as (major, minor), e.g. (9, 0).
    pub compute_capability: (i32, i32),
    /// Shares physical memory with the host: "device" memory is host RAM.
    pub integrated: bool,
    /// Supports managed (unified) memory, `cudaMallocManaged`.
    pub managed_memory: bool,
    /// Can access managed memory concurrently with the host.
    pub concurrent_managed_access: bool,
    /// Can access pageable host memory directly (HMM/ATS): unified with the host.
    pub pageable_memory_access: bool,
    /// Supports stream-ordered allocation from memory pools (needed by kind `Pool`).
    pub memory_pools: bool,
    /// PCI bus id as CUDA writes it ("0000:1B:00.0"). NVML and nvidia-smi number GPUs
    /// differently from CUDA ordinals (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER); this matches them.
    pub pci_bus_id: String,
    /// Free and total memory when the information was read.
    pub memory: MemoryInfo,
}

impl DeviceInfo {
    /// True when device memory and host memory are not separate (integrated or HMM/ATS).
    pub fn unified_memory(&self) -> bool {
        self.integrated || self.pageable_memory_access
    }
}

/// Number of visible GPUs. Without a driver or a GPU: [`Error::NoDevice`].
pub fn device_count() -> Result<u32> {
    let mut count = 0i32;
    // SAFETY: a valid out-pointer.
    check(unsafe { sys::vg_device_count(&mut count) })?;
    Ok(count as u32)
}

/// One GPU, known to exist when the value was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Device {
    ordinal: u32,
}

impl Device {
    /// Fails fast with [`Error::NoDevice`] when there is no driver or GPU, and with
    /// [`Error::InvalidDevice`] when `ordinal` is not below the device count.
    pub fn new(ordinal: u32) -> Result<Device> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(Error::InvalidDevice(format!("device {ordinal} does not exist ({count} visible)")));
        }
        Ok(Device { ordinal })
    }

    /// Every visible GPU.
    pub fn all() -> Result<Vec<Device>> {
        Ok((0..device_count()?).map(|ordinal| Device { ordinal }).collect())
    }

    /// The CUDA ordinal of this GPU.
    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// What the GPU is and how much memory it has free now. `VRAM-E001` without a driver,
    /// `VRAM-E011` when CUDA fails to answer.
    pub fn info(&self) -> Result<DeviceInfo> {
        let mut raw = sys::vg_device_info::default();
        // SAFETY: a valid out-pointer.
        check(unsafe { sys::vg_device_info_get(self.ordinal as i32, &mut raw) })?;
        // SAFETY: the core NUL-terminates name within its fixed-size array.
        let name = unsafe { CStr::from_ptr(raw.name.as_ptr()) }.to_string_lossy().into_owned();
        // SAFETY: the core zero-fills the struct and writes at most 31 bytes into the 32-byte
        // pci_bus_id, so it is NUL-terminated within its array.
        let pci_bus_id = unsafe { CStr::from_ptr(raw.pci_bus_id.as_ptr()) }.to_string_lossy().into_owned();
        Ok(DeviceInfo {
            ordinal: self.ordinal,
            name,
            compute_capability: (raw.compute_major, raw.compute_minor),
            integrated: raw.integrated != 0,
            managed_memory: raw.managed_memory != 0,
            concurrent_managed_access: raw.concurrent_managed_access != 0,
            pageable_memory_access: raw.pageable_memory_access != 0,
            memory_pools: raw.memory_pools != 0,
            pci_bus_id,
            memory: MemoryInfo { free_bytes: raw.free_bytes, total_bytes: raw.total_bytes },
        })
    }

    /// Free and total memory now (`cudaMemGetInfo`). `VRAM-E001` without a driver, `VRAM-E011` when
    /// CUDA fails to answer.
    pub fn memory_info(&self) -> Result<MemoryInfo> {
        memory_info(self.ordinal)
    }

    /// A new tracker for this GPU.
    pub fn tracker(&self) -> Result<Tracker> {
        Tracker::new(self.ordinal)
    }
}

pub(crate) fn memory_info(ordinal: u32) -> Result<MemoryInfo> {
    let (mut free_bytes, mut total_bytes) = (0u64, 0u64);
    // SAFETY: valid out-pointers.
    check(unsafe { sys::vg_memory_info(ordinal as i32, &mut free_bytes, &mut total_bytes) })?;
    Ok(MemoryInfo { free_bytes, total_bytes })
}
