//! Model slots (L1–L5): named models within a budget, least-recently-used eviction by fit plan,
//! pinning and minimum residency against thrashing, retry after device out-of-memory.
mod clock;
mod config;
mod embedder;
mod events;
mod fit_plan;
mod health_view;
mod manager;
mod slot;
mod slot_use;
mod unloader;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{DeviceBacking, SlotConfig, DEFAULT_UNLOAD_MIN_RESIDENCY, MODEL_BUDGET_BYTES};
pub use embedder::{Embedder, MODEL_SIZES};
pub use events::{Eviction, EvictionReason, IntegrityViolation, LoadOutcome, SlotStats};
pub use fit_plan::plan as fit_plan;
pub use manager::ModelSlotManager;
pub use slot::{ModelSlot, SlotKey};
pub use slot_use::SlotUse;
