//! vramguard: account for every byte of VRAM a GPU inference worker holds, by purpose, and prove
//! that its model data lives in device memory — never silently in host or unified memory.
//!
//! ```no_run
//! use vramguard::{Device, Purpose, PurposeSet};
//!
//! # fn main() -> vramguard::Result<()> {
//! let gpu = Device::new(0)?;                       // VRAM-E001 when there is no GPU
//! let tracker = gpu.tracker()?;
//! let mut weights = tracker.allocate(1 << 20, Purpose::ModelWeights, "layer 0")?;
//! weights.copy_from_host(0, &vec![7u8; 1 << 20])?;
//! assert_eq!(tracker.bytes_for(Purpose::ModelWeights), 1 << 20);
//! assert!(tracker.verify(PurposeSet::ALL)?.resident);
//! drop(weights);                                   // freed and un-recorded
//! assert_eq!(tracker.total_bytes(), 0);
//! # Ok(()) }
//! ```
//!
//! # One concept, one name per layer
//!
//! | concept | C++ core (`cuda/include/vramguard/`) | C ABI (`vramguard.h`) | Rust |
//! |---|---|---|---|
//! | the records of one device's allocations | `VramTracker` | `vg_tracker*` (owns a `VramTracker`) | [`Tracker`] (shares one `vg_tracker`, kept alive by its buffers) |
//! | an owned allocation | `DeviceMemory` | `vg_alloc` / `vg_free` | [`DeviceBuffer`] |
//! | forgetting a pointer someone else frees | `VramTracker::record_deallocation` | `vg_forget` | [`Tracker::forget`] |
//! | is the memory in device memory? | `ResidencyCheck` | `vg_verify`, `vg_check_pointer` | [`Tracker::verify`], [`check_pointer`] |
//! | weights files into a model slot, verified | `WeightsLoader` | `vg_loader*`, `vg_load_weights` | [`loader::WeightsLoader`], [`slots::ModelSlotManager::load_weights`] |
//!
//! "Health" is only the Rust service above them: [`health::HealthMonitor`] runs the residency
//! check periodically and [`server::HealthServer`] serves `/health`. The requirement ids in
//! comments (T1, H2, ERR3, ...) are defined in `docs/requirements.md`.
#![deny(unsafe_op_in_unsafe_fn)]

mod budget;
mod budgeted_allocator;
mod buffer;
mod callbacks;
mod checksum;
pub mod cli;
mod device;
mod error;
pub mod events;
pub mod format;
pub mod health;
pub mod loader;
pub mod monitor;
pub mod nvml;
mod out_of_memory;
mod periodic;
mod pressure;
mod purpose;
pub mod reservation;
mod residency;
pub mod server;
pub mod service;
pub mod slots;
pub mod sys;
mod tracker;
mod usage;
pub mod weights;

pub use budget::{Budget, BudgetBuilder, BudgetCharge, Refusal};
pub use budgeted_allocator::{BudgetedAllocator, BudgetedBuffer};
pub use buffer::DeviceBuffer;
pub use checksum::{host_checksum, Checksum, DEFAULT_CHECKSUM_DEADLINE};
pub use device::{device_count, Device, DeviceInfo, MemoryInfo};
pub use error::{Error, LoadedModels, OomSource, OutOfMemory, Result};
pub use periodic::PeriodicTask;
pub use pressure::{utilization_percent, Level, MemoryPressure, PressureThresholds, Thresholds};
pub use purpose::{AllocationKind, Purpose, PurposeSet};
pub use residency::{check_pointer, MemoryType, PointerCheck, ResidencyReport, Violation, ViolationReason};
pub use tracker::{Allocation, Tracker};
pub use usage::{PurposeUsage, Usage};
