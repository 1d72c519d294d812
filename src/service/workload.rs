//! What `vramguard serve` loads: by default the 13 embedders of seed 000 at their sizes, or a TOML
//! file naming slots, sizes, purposes and pins:
//!
//! ```toml
//! [[slot]]
//! name = "encoder"
//! bytes = 200_000_000
//! purpose = "ModelWeights"   # default; other purposes are plain tracked buffers
//! pinned = true              # default false; ModelWeights slots only
//! ```
//!
//! Names are 1 to 255 bytes without NUL; [`Workload::validate`] lists every rule.
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::purpose::Purpose;
use crate::slots::MODEL_SIZES;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSlot {
    pub name: String,
    pub bytes: u64,
    #[serde(default = "model_weights")]
    pub purpose: Purpose,
    #[serde(default)]
    pub pinned: bool,
}

fn model_weights() -> Purpose {
    Purpose::ModelWeights
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(rename = "slot", default)]
    pub slots: Vec<WorkloadSlot>,
}

impl Workload {
    /// Seed 000's 13 embedders, E1–E13, as model-weight slots.
    pub fn embedders() -> Workload {
        let slots = MODEL_SIZES
            .iter()
            .map(|(e, bytes)| WorkloadSlot {
                name: e.to_string(),
                bytes: *bytes,
                purpose: Purpose::ModelWeights,
                pinned: false,
            })
            .collect();
        Workload { slots }
    }

    pub fn parse(text: &str) -> Result<Workload> {
        let workload: Workload =
            toml::from_str(text).map_err(|e| Error::InvalidArgument(format!("workload file: {e}")))?;
        workload.validate()?;
        Ok(workload)
    }

    pub fn load(path: &Path) -> Result<Workload> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
        Workload::parse(&text)
    }

    /// Everything that can be known wrong without a device, so that a workload is refused whole
    /// before the device is opened or any slot is loaded: a name that is empty, holds a NUL byte
    /// (VRAM-E007) or is over 255 bytes (VRAM-E009: it names the slot's allocation, whose
    /// description the tracker caps at that length), given twice (VRAM-E007); a size of 0 or over
    /// 256 TiB (VRAM-E003); `pinned` on a slot that is not ModelWeights (VRAM-E007: only model
    /// slots can be pinned, and a pin silently ignored would promise what is not done).
    pub fn validate(&self) -> Result<()> {
        let mut names = std::collections::HashSet::new();
        for slot in &self.slots {
            validate_name(&slot.name)?;
            if slot.bytes == 0 || slot.bytes > crate::sys::VG_MAX_ALLOCATION_BYTES {
                return Err(Error::InvalidSize(format!(
                    "workload slot {:?} has {} bytes; a slot holds 1 byte to 256 TiB",
                    slot.name, slot.bytes
                )));
            }
            if slot.pinned && slot.purpose != Purpose::ModelWeights {
                return Err(Error::InvalidArgument(format!(
                    "workload slot {:?} is pinned but its purpose is {}; only ModelWeights slots can be pinned",
                    slot.name, slot.purpose
                )));
            }
            if !names.insert(slot.name.as_str()) {
                return Err(Error::InvalidArgument(format!("workload slot {:?} appears twice", slot.name)));
            }
        }
        Ok(())
    }

    /// Bytes of ModelWeights slots.
    pub fn model_bytes(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.purpose == Purpose::ModelWeights)
            .fold(0u64, |sum, s| sum.saturating_add(s.bytes))
    }

    pub fn total_bytes(&self) -> u64 {
        self.slots.iter().fold(0u64, |sum, s| sum.saturating_add(s.bytes))
    }
}

/// The longest slot name: the tracker's limit on an allocation's description, which the name is.
const MAX_SLOT_NAME_BYTES: usize = crate::sys::VG_MAX_DESCRIPTION_BYTES as usize;

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("a workload slot has an empty name".to_string()));
    }
    if name.contains('\0') {
        return Err(Error::InvalidArgument(format!("workload slot name {name:?} contains a NUL byte")));
    }
    if name.len() > MAX_SLOT_NAME_BYTES {
        let start: String = name.chars().take(32).collect();
        return Err(Error::DescriptionTooLong(format!(
            "workload slot name {start:?}… is {} bytes; at most {MAX_SLOT_NAME_BYTES}",
            name.len()
        )));
    }
    Ok(())
}
