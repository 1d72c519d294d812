//! One NVML per process, loaded on first use: the health monitor asks on every check, and
//! dlopen plus nvmlInit each time would cost far more than the query.
use std::sync::{Mutex, OnceLock};

use super::error::NvmlUnavailable;
use super::handle::Nvml;
use crate::device::Device;

static SHARED: OnceLock<Result<Nvml, NvmlUnavailable>> = OnceLock::new();
/// PCI bus id per CUDA ordinal: fixed for the life of the process, and reading it goes through
/// cudaGetDeviceProperties, which is too slow to repeat on every check.
static PCI_BUS_IDS: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// The process-wide NVML, or why there is none. A failure is remembered too: no driver now
/// means no driver for this process. Never shut down (it lives until the process exits).
pub fn shared() -> Result<&'static Nvml, NvmlUnavailable> {
    SHARED.get_or_init(Nvml::load).as_ref().map_err(Clone::clone)
}

/// The PCI bus id of CUDA device `ordinal`.
pub(crate) fn pci_bus_id(ordinal: u32) -> crate::Result<String> {
    let mut cache = PCI_BUS_IDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, id)) = cache.iter().find(|(device, _)| *device == ordinal) {
        return Ok(id.clone());
    }
    let id = Device::new(ordinal)?.info()?.pci_bus_id;
    cache.push((ordinal, id.clone()));
    Ok(id)
}
