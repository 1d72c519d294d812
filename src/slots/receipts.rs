//! Eviction receipts (issue 16, part 3): after slots of `Device` memory are evicted or unloaded,
//! the driver's free memory (`cudaMemGetInfo`) is read until it has risen by their bytes, within
//! the driver's granularity, or a deadline passes. The bytes confirmed are counted as reclaimed,
//! the rest as unreclaimed; a load that evicted waits for the receipt before it allocates, so that
//! it neither fails on memory the driver has not taken back yet nor evicts more to make up for it.
//!
//! A receipt is a difference of two readings of a device-wide figure, and that is all it proves:
//! the driver's free memory rose by at least the slots' bytes (less one granularity) between the
//! reading before their free and a reading after it. The manager takes its slots' device
//! allocations and frees under one lock, so no load or eviction of this manager runs between the
//! two readings; but the figure is the device's, not the slots'. A free elsewhere in the window —
//! another allocator of the process, another process, or slot memory of this manager whose last
//! user drops outside that lock — raises it too, and can confirm bytes that were never given back;
//! an allocation elsewhere can hide a rise, and the bytes are then counted unreclaimed. A
//! receipt is evidence that the driver took memory back, not proof that these bytes were it:
//! neither count errs in one direction only.
//!
//! Slots of `Pool` memory go back to vramguard's pool, which keeps them (its release threshold is
//! the maximum): the driver's figure does not move, so they get no receipt; the pool's reserve is
//! what the untracked-memory ledger accounts for.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::device::Device;

/// The driver's granularity: device allocations are made of 2 MiB pages, so free memory rises by
/// a multiple of 2 MiB, up to 2 MiB more than an allocation's bytes.
pub const RECEIPT_GRANULARITY: u64 = 2 << 20;

/// How long an eviction waits for its receipt unless configured otherwise
/// ([`SlotConfig::eviction_receipt_deadline`](super::SlotConfig::eviction_receipt_deadline)).
pub const DEFAULT_RECEIPT_DEADLINE: Duration = Duration::from_secs(1);

/// What one receipt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionReceipt {
    /// The bytes of the slots freed.
    pub bytes: u64,
    /// How much the driver's free memory rose from before the free to the last reading.
    pub free_rose_by: u64,
    /// The rise reached the bytes (less one granularity) within the deadline.
    pub reclaimed: bool,
    /// From the free to the confirmation, or to the deadline.
    pub waited: Duration,
}

/// Receipts of one manager, counted.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    reclaimed_bytes: AtomicU64,
    unreclaimed_bytes: AtomicU64,
    confirmed: AtomicU64,
    unconfirmed: AtomicU64,
}

/// The counters as [`SlotStats`](super::SlotStats) shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReceiptCounts {
    /// Evicted or unloaded bytes the driver's free memory was seen to take back.
    pub reclaimed_bytes: u64,
    /// Evicted or unloaded bytes it was not seen to take back within the deadline.
    pub unreclaimed_bytes: u64,
    /// Receipts that confirmed every byte.
    pub confirmed: u64,
    /// Receipts whose deadline passed first.
    pub unconfirmed: u64,
}

/// The driver's free memory on `device` now; `None` when it cannot be read (then no receipt).
pub(crate) fn free_bytes(device: u32) -> Option<u64> {
    Device::new(device).and_then(|d| d.memory_info()).ok().map(|m| m.free_bytes)
}

impl Receipts {
    /// Reads the driver's free memory until it is at least `before + bytes - granularity`, or
    /// `deadline` has passed since the free; counts the outcome and returns it.
    pub(crate) fn await_rise(&self, device: u32, before: u64, bytes: u64, deadline: Duration) -> EvictionReceipt {
        let freed_at = Instant::now();
        let want = bytes.saturating_sub(RECEIPT_GRANULARITY);
        let mut nap = Duration::from_micros(50);
        let (rose, reclaimed) = loop {
            let rose = free_bytes(device).map_or(0, |now| now.saturating_sub(before));
            if rose >= want {
                break (rose, true);
            }
            let waited = freed_at.elapsed();
            if waited >= deadline {
                break (rose, false);
            }
            std::thread::sleep(nap.min(deadline - waited));
            nap = (nap * 2).min(Duration::from_millis(10));
        };
        let receipt = EvictionReceipt { bytes, free_rose_by: rose, reclaimed, waited: freed_at.elapsed() };
        if reclaimed {
            self.reclaimed_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.confirmed.fetch_add(1, Ordering::Relaxed);
        } else {
            let seen = rose.min(bytes);
            self.reclaimed_bytes.fetch_add(seen, Ordering::Relaxed);
            self.unreclaimed_bytes.fetch_add(bytes - seen, Ordering::Relaxed);
            self.unconfirmed.fetch_add(1, Ordering::Relaxed);
        }
        crate::events::eviction_receipt(device, &receipt);
        receipt
    }

    pub(crate) fn counts(&self) -> ReceiptCounts {
        ReceiptCounts {
            reclaimed_bytes: self.reclaimed_bytes.load(Ordering::Relaxed),
            unreclaimed_bytes: self.unreclaimed_bytes.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
        }
    }
}
