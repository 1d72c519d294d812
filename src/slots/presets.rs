//! Presets: named workloads. A preset is what one application loads — its model slots with their
//! sizes — and the budget they are meant to fit. The library assumes none of them: a
//! [`SlotConfig::default`] has no budget of its own and expects no number of slots. `vramguard
//! serve` loads [`seed000`] unless it is given a workload file, and [`ModelSlotManager::new`]
//! (with its shorthands `with_budget` and `on_device`) is seed 000's bookkeeping manager.
//!
//! [`ModelSlotManager::new`]: super::ModelSlotManager::new
use std::fmt;

use serde::Serialize;

use super::config::SlotConfig;

/// Seed 000's budget: 8 GiB for its 13 models.
pub const SEED000_BUDGET_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// One slot of a preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresetSlot {
    /// The slot's name.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A named workload: the model slots it loads and the budget they are meant to fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// The preset's name, e.g. "seed000".
    pub name: &'static str,
    /// In load order.
    pub slots: Vec<PresetSlot>,
    /// The budget the slots are meant to fit, in bytes.
    pub budget_bytes: u64,
}

impl Preset {
    /// The bytes of every slot together.
    pub fn model_bytes(&self) -> u64 {
        self.slots.iter().fold(0u64, |sum, slot| sum.saturating_add(slot.bytes))
    }

    /// A slot manager's configuration for this preset: its budget, and its slots as the ones a
    /// report expects ("Loaded Models: 12/13"); everything else as [`SlotConfig::default`].
    pub fn slot_config(&self) -> SlotConfig {
        SlotConfig { budget_bytes: self.budget_bytes, expected_slots: self.slots.len(), ..SlotConfig::default() }
    }
}

/// Seed 000: the 13 embedders E1–E13 at the sizes of its manual test 1 (1.6 GB in all), named
/// "E1 Semantic" … "E13 KeywordSplade", within 8 GiB.
pub fn seed000() -> Preset {
    let slots = MODEL_SIZES.iter().map(|(e, bytes)| PresetSlot { name: e.to_string(), bytes: *bytes }).collect();
    Preset { name: "seed000", slots, budget_bytes: SEED000_BUDGET_BYTES }
}

/// One of the 13 embedding models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Embedder {
    /// E1, the semantic embedder (200 MB).
    Semantic,
    /// E2, the temporal-recent embedder (100 MB).
    TemporalRecent,
    /// E3, the temporal-periodic embedder (100 MB).
    TemporalPeriodic,
    /// E4, the temporal-positional embedder (100 MB).
    TemporalPositional,
    /// E5, the causal embedder (150 MB).
    Causal,
    /// E6, the sparse embedder (50 MB).
    Sparse,
    /// E7, the code embedder (300 MB).
    Code,
    /// E8, the graph embedder (75 MB).
    Graph,
    /// E9, the HDC embedder (50 MB).
    Hdc,
    /// E10, the multimodal embedder (150 MB).
    Multimodal,
    /// E11, the entity embedder (75 MB).
    Entity,
    /// E12, the late-interaction embedder (200 MB).
    LateInteraction,
    /// E13, the SPLADE keyword embedder (50 MB).
    KeywordSplade,
}

/// Seed 000's sizes (quantized models), 1.6 GB in all.
pub const MODEL_SIZES: [(Embedder, u64); 13] = [
    (Embedder::Semantic, 200_000_000),
    (Embedder::TemporalRecent, 100_000_000),
    (Embedder::TemporalPeriodic, 100_000_000),
    (Embedder::TemporalPositional, 100_000_000),
    (Embedder::Causal, 150_000_000),
    (Embedder::Sparse, 50_000_000),
    (Embedder::Code, 300_000_000),
    (Embedder::Graph, 75_000_000),
    (Embedder::Hdc, 50_000_000),
    (Embedder::Multimodal, 150_000_000),
    (Embedder::Entity, 75_000_000),
    (Embedder::LateInteraction, 200_000_000),
    (Embedder::KeywordSplade, 50_000_000),
];

impl Embedder {
    /// The number of embedders: 13.
    pub const COUNT: usize = 13;

    /// E1 … E13, in order.
    pub fn all() -> impl Iterator<Item = Embedder> {
        MODEL_SIZES.into_iter().map(|(e, _)| e)
    }

    /// "E1" … "E13".
    pub fn id(self) -> String {
        format!("E{}", self as usize + 1)
    }

    /// The preset size in bytes.
    pub fn preset_size_bytes(self) -> u64 {
        MODEL_SIZES[self as usize].1
    }

    /// Sum of the preset sizes.
    pub fn preset_total_bytes() -> u64 {
        MODEL_SIZES.iter().map(|(_, b)| b).sum()
    }
}

impl fmt::Display for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {self:?}", self.id())
    }
}
