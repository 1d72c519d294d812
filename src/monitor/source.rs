//! Where the monitor reads device memory from. A trait, so that the monitor's policy (levels,
//! alerts, history, unloading) can be tested with scripted figures; the real source asks the
//! driver.
use crate::device::{device_count, Device, MemoryInfo};
use crate::error::Result;

/// Free and total memory per device.
pub trait MemorySource: Send + Sync {
    /// The memory of one device right now.
    fn read(&self, device: u32) -> Result<MemoryInfo>;
    /// The devices to watch.
    fn devices(&self) -> Result<Vec<u32>>;
}

/// The driver's figures (`cudaMemGetInfo`) for every visible GPU. Without a GPU every call is
/// [`crate::Error::NoDevice`] (VRAM-E001): the monitor never reports a fake device.
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaMemorySource;

impl MemorySource for CudaMemorySource {
    fn read(&self, device: u32) -> Result<MemoryInfo> {
        Device::new(device)?.memory_info()
    }

    fn devices(&self) -> Result<Vec<u32>> {
        Ok((0..device_count()?).collect())
    }
}
