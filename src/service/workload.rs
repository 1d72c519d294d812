//! What `vramguard serve` loads: by default seed 000's preset (its 13 embedders at their sizes), or
//! a TOML file naming slots, sizes or weights files, purposes and pins:
//!
//! ```toml
//! [[slot]]
//! name = "encoder"
//! files = ["encoder-00001-of-00002.safetensors", "encoder-00002-of-00002.safetensors"]
//! pinned = true              # default false; ModelWeights slots only
//!
//! [[slot]]
//! name = "reserve"
//! bytes = 200_000_000        # a slot of uninitialised memory instead of files
//! purpose = "ModelWeights"   # default; other purposes are plain tracked buffers (bytes only)
//! ```
//!
//! A slot with `files` is loaded from them and verified ([`ModelSlotManager::load_weights`]);
//! relative paths are relative to the workload file's directory. Names are 1 to 255 bytes without
//! NUL; [`Workload::validate`] lists every rule.
//!
//! [`ModelSlotManager::load_weights`]: crate::slots::ModelSlotManager::load_weights
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::purpose::{AllocationKind, Purpose};
use crate::slots::presets::{self, Preset};
use crate::weights::{WeightLimits, WeightsSet};

/// One `[[slot]]` entry of a workload: a model slot of a size or of weights files, or a plain
/// tracked buffer of another purpose.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSlot {
    /// The slot's name, also its allocation's description (1 to 255 bytes, no NUL).
    pub name: String,
    /// The size of a slot of uninitialised memory; `None` for a slot loaded from `files`.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Safetensors files whose tensors fill the slot; empty for a slot of `bytes`.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// What the memory is for: ModelWeights (the default) makes a model slot; any other purpose a
    /// plain tracked buffer of `bytes`.
    #[serde(default = "model_weights")]
    pub purpose: Purpose,
    /// Never evicted (ModelWeights slots only); false by default.
    #[serde(default)]
    pub pinned: bool,
}

fn model_weights() -> Purpose {
    Purpose::ModelWeights
}

/// What `vramguard serve` loads: the slots of a workload file, or of a preset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The `[[slot]]` entries, in load order.
    #[serde(rename = "slot", default)]
    pub slots: Vec<WorkloadSlot>,
}

impl Workload {
    /// Seed 000's 13 embedders, E1–E13, as model-weight slots ([`presets::seed000`]).
    pub fn embedders() -> Workload {
        Workload::from_preset(&presets::seed000())
    }

    /// A preset's slots as unpinned model-weight slots, in its order.
    pub fn from_preset(preset: &Preset) -> Workload {
        let slots = preset
            .slots
            .iter()
            .map(|slot| WorkloadSlot {
                name: slot.name.clone(),
                bytes: Some(slot.bytes),
                files: Vec::new(),
                purpose: Purpose::ModelWeights,
                pinned: false,
            })
            .collect();
        Workload { slots }
    }

    /// Parses and validates a workload from TOML text; relative weights paths stay relative to the
    /// working directory. `VRAM-E007` for text that is not a workload, and whatever
    /// [`Workload::validate`] refuses.
    pub fn parse(text: &str) -> Result<Workload> {
        let workload: Workload =
            toml::from_str(text).map_err(|e| Error::InvalidArgument(format!("workload file: {e}")))?;
        workload.validate()?;
        Ok(workload)
    }

    /// Reads and validates a workload file; relative weights paths are taken from its directory.
    pub fn load(path: &Path) -> Result<Workload> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
        let mut workload: Workload =
            toml::from_str(&text).map_err(|e| Error::InvalidArgument(format!("workload file: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for slot in &mut workload.slots {
            for file in &mut slot.files {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        workload.validate()?;
        Ok(workload)
    }

    /// Everything that can be known wrong without a device, so that a workload is refused whole
    /// before the device is opened or any slot is loaded: a name that is empty, holds a NUL byte
    /// (VRAM-E007) or is over 255 bytes (VRAM-E009: it names the slot's allocation, whose
    /// description the tracker caps at that length), given twice (VRAM-E007); a size of 0 or over
    /// 256 TiB (VRAM-E003); `pinned` on a slot that is not ModelWeights (VRAM-E007: only model
    /// slots can be pinned, and a pin silently ignored would promise what is not done). A slot
    /// with `files` has no `bytes` and is ModelWeights (VRAM-E007), and each of its files is
    /// validated as a safetensors file (VRAM-E020, VRAM-E017), headers only.
    pub fn validate(&self) -> Result<()> {
        let mut names = std::collections::HashSet::new();
        for slot in &self.slots {
            validate_name(&slot.name)?;
            if slot.files.is_empty() {
                let bytes = slot.bytes.ok_or_else(|| {
                    Error::InvalidArgument(format!("workload slot {:?} has neither bytes nor files", slot.name))
                })?;
                // The name is the allocation's description: its length and the size are the
                // core's to judge, asked without a device.
                crate::tracker::check_allocation(bytes, slot.purpose, AllocationKind::Device, &slot.name)?;
            } else {
                if slot.bytes.is_some() || slot.purpose != Purpose::ModelWeights {
                    return Err(Error::InvalidArgument(format!(
                        "workload slot {:?} has files: its size comes from them (no bytes), and it holds ModelWeights",
                        slot.name
                    )));
                }
                crate::tracker::check_allocation(1, slot.purpose, AllocationKind::Device, &slot.name)?;
                WeightsSet::open_all(&slot.files, &WeightLimits::default())?;
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

    /// Bytes of ModelWeights slots given by size (slots loaded from files count 0 here: their
    /// size is known once their files are opened).
    pub fn model_bytes(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.purpose == Purpose::ModelWeights)
            .fold(0u64, |sum, s| sum.saturating_add(s.bytes.unwrap_or(0)))
    }

    /// Bytes of every slot given by size, whatever its purpose (slots loaded from files count 0).
    pub fn total_bytes(&self) -> u64 {
        self.slots.iter().fold(0u64, |sum, s| sum.saturating_add(s.bytes.unwrap_or(0)))
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("a workload slot has an empty name".to_string()));
    }
    if name.contains('\0') {
        return Err(Error::InvalidArgument(format!("workload slot name {name:?} contains a NUL byte")));
    }
    Ok(())
}
