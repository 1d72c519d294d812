//! Model slots (L1–L5): named models within a budget, least-recently-used eviction by fit plan,
//! pinning and minimum residency against thrashing, retry after device out-of-memory.
//!
//! Files by concept: `manager` is the [`ModelSlotManager`] and its slot table; `slot` one slot's
//! memory and everything that holds it (the [`SlotUse`] guard among them); `fit_plan` which slots
//! to evict; `events` what the manager reports; `config` and `clock` how it behaves; `presets`
//! named workloads (seed 000's 13 embedders). The budget is a [`Budget`](crate::Budget) (its
//! reserve-then-commit is the one enforcement), callbacks a contained list. The manager depends on
//! neither the GPU monitor nor the health service: their adapters live with their traits
//! (`monitor::Unloader`, `health::SlotView`).
mod clock;
mod config;
mod events;
mod fit_plan;
mod manager;
pub mod presets;
pub mod receipts;
mod slot;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{DeviceBacking, SlotConfig, DEFAULT_UNLOAD_MIN_RESIDENCY};
pub use events::{Eviction, EvictionReason, IntegrityViolation, LoadOutcome, SlotStats, WeightsLoaded};
pub use fit_plan::{plan as fit_plan, plan_room as fit_plan_room};
pub use manager::{ModelSlotManager, WeightsLoadOptions};
/// Seed 000's embedders and their sizes, also under [`presets`] (where new code should name them).
pub use presets::{Embedder, MODEL_SIZES};
pub use slot::{ModelSlot, SlotKey, SlotUse};

/// Seed 000's 8 GiB budget, once the library's default.
#[deprecated(note = "seed 000's budget is a preset now: `slots::presets::seed000().budget_bytes`")]
pub const MODEL_BUDGET_BYTES: u64 = presets::SEED000_BUDGET_BYTES;
