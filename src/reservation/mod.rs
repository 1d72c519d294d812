//! Reservations (B4, seed 004): admit an operation's memory before it runs, hold it with a guard.
mod guard;
mod limits;
mod memory_aware;

pub use guard::{AllocationGuard, MemoryGuard, Reservation, ReservationStats};
pub use limits::{MemoryLimits, ReservationLevel};
pub use memory_aware::MemoryAwareOperation;
