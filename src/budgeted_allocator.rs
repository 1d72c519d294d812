//! B2: device allocation that checks the budget first. The bytes are charged before the device is
//! asked, and the charge is rolled back if the device refuses, so concurrent allocations never
//! exceed the budget and a refused one changes nothing.
use std::ops::Deref;

use crate::budget::{Budget, BudgetCharge};
use crate::buffer::DeviceBuffer;
use crate::error::{Error, Result};
use crate::purpose::{AllocationKind, Purpose};
use crate::tracker::Tracker;

/// A tracker's allocations, held to a budget.
#[derive(Debug, Clone)]
pub struct BudgetedAllocator {
    tracker: Tracker,
    budget: Budget,
}

/// Device memory charged to a budget: freed, then uncharged, on drop.
#[derive(Debug)]
pub struct BudgetedBuffer {
    // Field order is drop order: free the memory before returning its bytes to the budget.
    buffer: DeviceBuffer,
    charge: BudgetCharge,
}

impl BudgetedAllocator {
    /// Allocations through `tracker`, each charged to `budget` first.
    pub fn new(tracker: Tracker, budget: Budget) -> BudgetedAllocator {
        BudgetedAllocator { tracker, budget }
    }

    /// The tracker that allocates and records the memory.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The budget every allocation is charged to.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Device memory (`cudaMalloc`) for `purpose`, within the budget.
    pub fn allocate(&self, bytes: u64, purpose: Purpose, description: &str) -> Result<BudgetedBuffer> {
        self.allocate_kind(bytes, purpose, AllocationKind::Device, description)
    }

    /// Memory of `kind` for `purpose`, within the budget. What the core would refuse (`VRAM-E003`,
    /// `VRAM-E007`, `VRAM-E009`) is refused before the budget is charged; over the budget, or the
    /// device out of memory, is `VRAM-E002` with the budget's figures, and a refused allocation
    /// leaves the budget as it was.
    pub fn allocate_kind(
        &self,
        bytes: u64,
        purpose: Purpose,
        kind: AllocationKind,
        description: &str,
    ) -> Result<BudgetedBuffer> {
        // Everything the core would refuse is refused (by the core) before the budget is touched.
        crate::tracker::check_allocation(bytes, purpose, kind, description)?;
        let device = self.tracker.device() as i32;
        let charge = self
            .budget
            .reserve(bytes, purpose)
            .map_err(|refusal| refusal.out_of_memory(device, bytes, self.tracker.usage()))?;
        let buffer = self.tracker.allocate_kind(bytes, purpose, kind, description).map_err(|error| match error {
            Error::OutOfMemory(oom) => (*oom).with_budget(self.budget.limit()).into(),
            other => other,
        })?; // on failure the charge drops here: rolled back
        charge.commit();
        Ok(BudgetedBuffer { buffer, charge })
    }
}

impl BudgetedBuffer {
    /// The bytes held against the budget for this buffer.
    pub fn charge(&self) -> &BudgetCharge {
        &self.charge
    }

    /// The device memory, mutably (for copies into it).
    pub fn buffer_mut(&mut self) -> &mut DeviceBuffer {
        &mut self.buffer
    }
}

impl Deref for BudgetedBuffer {
    type Target = DeviceBuffer;

    fn deref(&self) -> &DeviceBuffer {
        &self.buffer
    }
}
