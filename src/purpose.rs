//! What an allocation is for (T1) and how it was made (M3).
use std::fmt;

use crate::error::{Error, Result};
use crate::sys;

/// What an allocation holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Purpose {
    /// A model's parameters: the data that must stay resident.
    ModelWeights,
    /// The attention key/value cache of running requests.
    KVCache,
    /// Activations and scratch memory of a forward pass.
    IntermediateBuffers,
    /// Memory recorded without a known purpose.
    Unknown,
}

impl Purpose {
    /// Every purpose, in the order of the core's indices (and of
    /// [`Usage::by_purpose`](crate::Usage::by_purpose)).
    pub const ALL: [Purpose; 4] =
        [Purpose::ModelWeights, Purpose::KVCache, Purpose::IntermediateBuffers, Purpose::Unknown];

    pub(crate) fn to_raw(self) -> i32 {
        (match self {
            Purpose::ModelWeights => sys::VG_PURPOSE_MODEL_WEIGHTS,
            Purpose::KVCache => sys::VG_PURPOSE_KV_CACHE,
            Purpose::IntermediateBuffers => sys::VG_PURPOSE_INTERMEDIATE_BUFFERS,
            Purpose::Unknown => sys::VG_PURPOSE_UNKNOWN,
        }) as i32
    }

    pub(crate) fn from_raw(raw: i32) -> Result<Purpose> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.to_raw() == raw)
            .ok_or_else(|| Error::Internal(format!("core returned purpose {raw}")))
    }

    pub(crate) fn index(self) -> usize {
        self.to_raw() as usize
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::ModelWeights => "ModelWeights",
            Purpose::KVCache => "KVCache",
            Purpose::IntermediateBuffers => "IntermediateBuffers",
            Purpose::Unknown => "Unknown",
        })
    }
}

impl std::str::FromStr for Purpose {
    type Err = Error;

    /// A purpose by its name as [`Display`](fmt::Display) writes it (`ModelWeights`, `KVCache`,
    /// `IntermediateBuffers`, `Unknown`); anything else is VRAM-E007.
    fn from_str(name: &str) -> Result<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.to_string() == name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown purpose {name:?}; one of ModelWeights, KVCache, IntermediateBuffers, Unknown"
            ))
        })
    }
}

/// How the memory was allocated. `Managed` and `PinnedHost` are what a RAM fallback produces:
/// they exist so that residency detection can be tested on real memory, and are never chosen
/// unless asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AllocationKind {
    /// `cudaMalloc`.
    Device,
    /// `cudaMallocAsync` on the tracker's CUDA memory pool: the fast path for serving loops.
    Pool,
    /// `cudaMallocManaged`: unified memory, may live in host RAM.
    Managed,
    /// `cudaMallocHost`: page-locked host RAM.
    PinnedHost,
    /// Made by another allocator and recorded with `Tracker::adopt`; never freed by vramguard.
    Adopted,
}

impl AllocationKind {
    /// Every kind, in the order of the core's values.
    pub const ALL: [AllocationKind; 5] = [
        AllocationKind::Device,
        AllocationKind::Pool,
        AllocationKind::Managed,
        AllocationKind::PinnedHost,
        AllocationKind::Adopted,
    ];

    pub(crate) fn to_raw(self) -> i32 {
        (match self {
            AllocationKind::Device => sys::VG_KIND_DEVICE,
            AllocationKind::Pool => sys::VG_KIND_POOL,
            AllocationKind::Managed => sys::VG_KIND_MANAGED,
            AllocationKind::PinnedHost => sys::VG_KIND_PINNED_HOST,
            AllocationKind::Adopted => sys::VG_KIND_ADOPTED,
        }) as i32
    }

    pub(crate) fn from_raw(raw: i32) -> Result<AllocationKind> {
        AllocationKind::ALL
            .into_iter()
            .find(|k| k.to_raw() == raw)
            .ok_or_else(|| Error::Internal(format!("core returned kind {raw}")))
    }
}

impl fmt::Display for AllocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocationKind::Device => "Device",
            AllocationKind::Pool => "Pool",
            AllocationKind::Managed => "Managed",
            AllocationKind::PinnedHost => "PinnedHost",
            AllocationKind::Adopted => "Adopted",
        })
    }
}

/// A set of purposes, e.g. the ones whose allocations must be resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurposeSet(u32);

impl PurposeSet {
    /// Every purpose.
    pub const ALL: PurposeSet = PurposeSet(sys::VG_PURPOSE_MASK_ALL);

    /// The set of the purposes listed.
    pub fn of(purposes: &[Purpose]) -> PurposeSet {
        PurposeSet(purposes.iter().fold(0, |mask, p| mask | (1 << p.index())))
    }

    /// Whether `purpose` is in the set.
    pub fn contains(self, purpose: Purpose) -> bool {
        self.0 & (1 << purpose.index()) != 0
    }

    pub(crate) fn bits(self) -> u32 {
        self.0
    }
}
