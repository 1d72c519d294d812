//! The tracker's counters (T4): totals, per-purpose figures and peaks, read in O(1).
use crate::purpose::Purpose;
use crate::sys;

/// Bytes and allocations held for one purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurposeUsage {
    /// Bytes of the live allocations of this purpose.
    pub bytes: u64,
    /// Number of live allocations of this purpose.
    pub count: u64,
    /// The most bytes this purpose has held at once.
    pub peak_bytes: u64,
}

/// A copy of the tracker's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of every live allocation.
    pub total_bytes: u64,
    /// Number of live allocations.
    pub allocation_count: u64,
    /// The most bytes held at once, all purposes together.
    pub peak_total_bytes: u64,
    /// Indexed in the order of [`Purpose::ALL`]; use [`Usage::purpose`].
    pub by_purpose: [PurposeUsage; 4],
    /// Records ever made, including those freed or forgotten since.
    pub lifetime_allocations: u64,
    /// Deallocations of pointers that were not tracked (T2).
    pub unknown_deallocations: u64,
}

impl Usage {
    /// The figures of one purpose.
    pub fn purpose(&self, purpose: Purpose) -> PurposeUsage {
        self.by_purpose[purpose.index()]
    }

    /// Bytes of the live allocations of one purpose.
    pub fn bytes(&self, purpose: Purpose) -> u64 {
        self.purpose(purpose).bytes
    }

    /// (purpose, bytes) for every purpose, in a fixed order.
    pub fn breakdown(&self) -> [(Purpose, u64); 4] {
        Purpose::ALL.map(|p| (p, self.bytes(p)))
    }

    pub(crate) fn from_raw(raw: &sys::vg_usage) -> Usage {
        let mut by_purpose = [PurposeUsage::default(); 4];
        for (i, slot) in by_purpose.iter_mut().enumerate() {
            *slot = PurposeUsage {
                bytes: raw.purpose_bytes[i],
                count: raw.purpose_count[i],
                peak_bytes: raw.peak_purpose_bytes[i],
            };
        }
        Usage {
            total_bytes: raw.total_bytes,
            allocation_count: raw.allocation_count,
            peak_total_bytes: raw.peak_total_bytes,
            by_purpose,
            lifetime_allocations: raw.lifetime_allocations,
            unknown_deallocations: raw.unknown_deallocations,
        }
    }
}
