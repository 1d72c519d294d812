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
//! # A short tour
//!
//! The concepts in the order a user meets them.
//!
//! 1. **A GPU and its tracker.** [`Device::new`] opens a GPU (`VRAM-E001` when there is none:
//!    vramguard never falls back to the CPU) and [`Device::info`] says what it is. A [`Tracker`]
//!    records every allocation on that device by purpose. It is a cheap, cloneable, `Send + Sync`
//!    handle, and its figures ([`Tracker::total_bytes`], [`Tracker::bytes_for`],
//!    [`Tracker::usage`]) are sums of per-thread counter stripes, never a walk of the allocations.
//! 2. **Allocating by purpose.** [`Tracker::allocate`] returns a [`DeviceBuffer`] of device memory
//!    recorded with its [`Purpose`] (model weights, KV cache, intermediate buffers) and freed when
//!    it drops. [`Tracker::allocate_kind`] picks the [`AllocationKind`]: `Pool` is the fast path;
//!    `Managed` and `PinnedHost` are the RAM-fallback kinds, made only when named, so that
//!    residency detection can be tested on real memory. Memory another allocator made is counted
//!    with [`Tracker::adopt`] and never freed by vramguard.
//! 3. **Residency.** [`Tracker::verify`] classifies every allocation of a [`PurposeSet`] with
//!    `cudaPointerGetAttributes` (success is not residency: the memory type, the host mapping and
//!    the device are checked) and returns a [`ResidencyReport`] listing each [`Violation`];
//!    [`check_pointer`] classifies one pointer.
//! 4. **Budgets.** A [`Budget`] is a byte limit, optionally per purpose, that threads charging at
//!    once never exceed; its fill level is a [`MemoryPressure`]. A [`BudgetedAllocator`] charges the
//!    budget before it asks the device and gives the charge back when the device refuses.
//!    [`reservation::MemoryGuard`] admits an operation's bytes against a budget before it runs.
//! 5. **Model slots and their weights.** [`slots::ModelSlotManager`] keeps named models within a
//!    budget and evicts idle, least recently used slots by fit plan; pinning and a minimum
//!    residency keep it from thrashing. [`weights`] validates safetensors files before any of their
//!    bytes is read, and [`loader`] uploads them into a slot through pinned staging, verified on
//!    the way; [`ModelSlotManager::load_weights`](slots::ModelSlotManager::load_weights) does it all
//!    in one call.
//! 6. **Integrity.** [`DeviceBuffer::checksum`] is a 128-bit [`Checksum`] computed on the GPU at
//!    memory bandwidth, and [`host_checksum`] the same function on the CPU. The checksum verified
//!    when a slot is loaded is its reference:
//!    [`ModelSlotManager::verify_integrity`](slots::ModelSlotManager::verify_integrity) finds the
//!    slots whose bytes changed since.
//! 7. **The health service.** [`health::HealthMonitor`] runs the residency and integrity checks
//!    periodically and caches a [`health::HealthReport`]; [`server::HealthServer`] serves it at
//!    `/health`, `/health/live`, `/health/ready` and `/metrics` without calling CUDA; and
//!    [`service::Service`] puts a device, a workload of slots, the monitor and the server together:
//!    it is what `vramguard serve` ([`cli::serve`]) runs. Allocations, checks, evictions and
//!    status changes are logged as structured [`events`].
//! 8. **The GPU monitor and NVML.** [`monitor::GpuMonitor`] watches each device's memory, everyone's
//!    use included, against warning and critical thresholds, and at critical asks a
//!    [`monitor::Unloader`] (a slot manager) for memory back. [`nvml`] reads this process's VRAM as
//!    the driver accounts it, to set beside what the tracker counts.
//! 9. **Errors.** Every failure is an [`Error`] with a stable code, `VRAM-E001` to `VRAM-E023`
//!    ([`Error::code`]), a sentence on what to do next ([`Error::remediation`]) and, for out of
//!    memory, the figures that explain it ([`OutOfMemory`]).
//!
//! # One concept, one name per layer
//!
//! | concept | C++ core (`cuda/include/vramguard/`) | C ABI (`vramguard.h`) | Rust |
//! |---|---|---|---|
//! | the records of one device's allocations | `VramTracker` | `vg_tracker*` (owns a `VramTracker`) | [`Tracker`] (shares one `vg_tracker`, kept alive by its buffers) |
//! | an owned allocation | `DeviceMemory` | `vg_alloc` / `vg_free` | [`DeviceBuffer`] |
//! | forgetting a pointer someone else frees | `VramTracker::record_deallocation` | `vg_forget` | [`Tracker::forget`] |
//! | is the memory in device memory? | `ResidencyCheck` | `vg_verify`, `vg_check_pointer` | [`Tracker::verify`], [`check_pointer`] |
//! | a checksum of the bytes | `device_checksum`, `host_checksum` | `vg_checksum_device`, `vg_checksum_host` | [`DeviceBuffer::checksum`], [`host_checksum`] |
//! | weights files into a model slot, verified | `WeightsLoader` | `vg_loader*`, `vg_load_weights*` | [`loader::WeightsLoader`], [`slots::ModelSlotManager::load_weights`] |
//!
//! Budgets, slots, reservations, the monitors and the service exist only in Rust. "Health" is only
//! the Rust service above them: [`health::HealthMonitor`] runs the residency check periodically and
//! [`server::HealthServer`] serves `/health`. The requirement ids in comments (T1, H2, ERR3, ...)
//! are defined in `docs/requirements.md`.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

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
pub mod witness;

pub use budget::{Budget, BudgetBuilder, BudgetCharge, Refusal};
pub use budgeted_allocator::{BudgetedAllocator, BudgetedBuffer};
pub use buffer::DeviceBuffer;
pub use checksum::{host_checksum, Checksum, DEFAULT_CHECKSUM_DEADLINE};
pub use device::{device_count, Device, DeviceInfo, MemoryInfo};
pub use error::{Error, LoadedModels, OomSource, OutOfMemory, Result};
pub use periodic::PeriodicTask;
pub use pressure::{utilization_percent, Level, MemoryPressure, PressureThresholds, Thresholds};
pub use purpose::{AllocationKind, Purpose, PurposeSet};
pub use residency::{
    check_pointer, MemoryType, PointerCheck, ResidencyReport, SweepSample, Violation, ViolationReason,
};
pub use tracker::{Allocation, Tracker};
pub use usage::{PurposeUsage, Usage};
