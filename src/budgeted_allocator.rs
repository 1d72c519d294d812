//! B2: device allocation that checks the budget first. The bytes are charged before the device is
//! asked, and the charge is rolled back if the device refuses, so concurrent allocations never
//! exceed the budget and a refused one changes nothing.
use std::ops::Deref;

use crate::budget::{Budget, BudgetCharge};
use crate::buffer::DeviceBuffer;
use crate::error::{Error, OutOfMemory, Result};
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
    pub fn new(tracker: Tracker, budget: Budget) -> BudgetedAllocator {
        BudgetedAllocator { tracker, budget }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Device memory (`cudaMalloc`) for `purpose`, within the budget.
    pub fn allocate(&self, bytes: u64, purpose: Purpose, description: &str) -> Result<BudgetedBuffer> {
        self.allocate_kind(bytes, purpose, AllocationKind::Device, description)
    }

    pub fn allocate_kind(
        &self,
        bytes: u64,
        purpose: Purpose,
        kind: AllocationKind,
        description: &str,
    ) -> Result<BudgetedBuffer> {
        // Everything the core would reject is refused before the budget is touched.
        if bytes == 0 || bytes > crate::sys::VG_MAX_ALLOCATION_BYTES {
            return Err(Error::InvalidSize(format!("cannot allocate {bytes} bytes: 1 byte to 256 TiB")));
        }
        crate::tracker::description_cstring(description)?;
        if description.len() > crate::sys::VG_MAX_DESCRIPTION_BYTES as usize {
            return Err(Error::DescriptionTooLong(format!("{} bytes; at most 255", description.len())));
        }
        if kind == AllocationKind::Adopted {
            return Err(Error::InvalidArgument("kind Adopted is recorded with adopt(), not allocated".into()));
        }
        let charge = self.budget.reserve(bytes, purpose).map_err(|refusal| {
            Error::OutOfMemory(Box::new(OutOfMemory {
                device: self.tracker.device() as i32,
                source: refusal.source,
                requested: bytes,
                available: Some(refusal.available()),
                budget: Some(refusal.limit),
                allocated: refusal.used,
                loaded_models: None,
                usage: self.tracker.usage(),
                cause: String::new(),
            }))
        })?;
        let buffer = self.tracker.allocate_kind(bytes, purpose, kind, description).map_err(|error| match error {
            Error::OutOfMemory(mut oom) => {
                oom.budget = Some(self.budget.limit());
                Error::OutOfMemory(oom)
            }
            other => other,
        })?; // on failure the charge drops here: rolled back
        charge.commit();
        Ok(BudgetedBuffer { buffer, charge })
    }
}

impl BudgetedBuffer {
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
