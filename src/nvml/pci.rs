//! PCI bus ids: the one name for a GPU that CUDA and NVML agree on (their device indices differ
//! under CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER).
use std::fmt;
use std::str::FromStr;

use super::NvmlUnavailable;

/// `domain:bus:device.function`, parsed from either CUDA's "0000:1B:00.0" or NVML's
/// "00000000:1B:00.0" so that the two compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciBusId {
    /// The PCI domain (segment).
    pub domain: u32,
    /// The bus number.
    pub bus: u8,
    /// 0..=31.
    pub device: u8,
    /// 0..=7.
    pub function: u8,
}

impl PciBusId {
    /// Hex fields, any case; a missing domain ("1B:00.0") is domain 0. Trailing NULs and
    /// whitespace (from fixed-size C buffers) are ignored.
    pub fn parse(text: &str) -> Result<PciBusId, NvmlUnavailable> {
        let bad = || NvmlUnavailable::BadPciBusId(text.to_owned());
        let trimmed = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        let (address, function) = trimmed.rsplit_once('.').ok_or_else(bad)?;
        let mut fields: Vec<&str> = address.split(':').collect();
        if fields.len() == 2 {
            fields.insert(0, "0");
        }
        let [domain, bus, device] = fields[..] else { return Err(bad()) };
        let id = PciBusId {
            domain: hex(domain, 8).ok_or_else(bad)?,
            bus: hex(bus, 2).ok_or_else(bad)? as u8,
            device: hex(device, 2).ok_or_else(bad)? as u8,
            function: hex(function, 1).ok_or_else(bad)? as u8,
        };
        if id.device > 31 || id.function > 7 {
            return Err(bad());
        }
        Ok(id)
    }

    /// NVML's `nvmlPciInfo_t::busId` form, "00000000:1B:00.0".
    pub fn nvml_form(&self) -> String {
        format!("{:08X}:{:02X}:{:02X}.{:X}", self.domain, self.bus, self.device, self.function)
    }

    /// CUDA's and NVML's legacy form, "0000:1B:00.0" (the domain widens when it needs to).
    pub fn legacy_form(&self) -> String {
        format!("{:04X}:{:02X}:{:02X}.{:X}", self.domain, self.bus, self.device, self.function)
    }
}

impl FromStr for PciBusId {
    type Err = NvmlUnavailable;
    fn from_str(text: &str) -> Result<PciBusId, NvmlUnavailable> {
        PciBusId::parse(text)
    }
}

impl fmt::Display for PciBusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.legacy_form())
    }
}

/// 1 to `max_digits` hex digits, nothing else (no sign, no "0x").
fn hex(field: &str, max_digits: usize) -> Option<u32> {
    let valid = (1..=max_digits).contains(&field.len()) && field.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        u32::from_str_radix(field, 16).ok()
    } else {
        None
    }
}
