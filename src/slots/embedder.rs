//! The 13 embedders of seed 000 (E1–E13) and the sizes of its manual test 1: the default workload.
use std::fmt;

use serde::Serialize;

/// One of the 13 embedding models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Embedder {
    Semantic,
    TemporalRecent,
    TemporalPeriodic,
    TemporalPositional,
    Causal,
    Sparse,
    Code,
    Graph,
    Hdc,
    Multimodal,
    Entity,
    LateInteraction,
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
