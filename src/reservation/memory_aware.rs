//! Operations that estimate their memory before they run: the estimate is reserved first, and the
//! operation runs only once it is admitted.
use super::guard::{AllocationGuard, MemoryGuard};

pub trait MemoryAwareOperation {
    type Output;
    type Error: From<crate::Error>;

    /// Bytes the operation will need at most.
    fn estimate_memory_usage(&self) -> u64;

    /// Runs with the reservation held.
    fn execute(&self, reservation: &AllocationGuard) -> Result<Self::Output, Self::Error>;
}

impl MemoryGuard {
    /// Reserves the operation's estimate, runs it, and releases the reservation afterwards.
    pub fn execute_with_memory_guard<O: MemoryAwareOperation>(
        &self,
        operation: &O,
        operation_id: &str,
    ) -> Result<O::Output, O::Error> {
        let reservation = self.request_allocation(operation_id, operation.estimate_memory_usage())?;
        operation.execute(&reservation)
    }
}
