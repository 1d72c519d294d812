//! Reservations (B4, seed 004): admit an operation's memory before it runs, hold it with a guard.
//! `request_allocation` admits an operation's bytes against a [`Budget`] — the budget's
//! reserve-then-commit is the one enforcement — and returns a guard that holds them until it
//! drops. Levels are the crate's one level type ([`AlertLevel`](crate::monitor::AlertLevel),
//! decided exactly in integers); cleanup callbacks are a contained callback list.
mod limits;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use serde::Serialize;

use crate::budget::{Budget, BudgetCharge};
use crate::callbacks::Callbacks;
use crate::error::{Error, Result};
use crate::pressure::{AlertThresholds, Threshold};
use crate::purpose::Purpose;
use crate::usage::Usage;

pub use limits::{MemoryLimits, ReservationLevel};

#[derive(Debug, Clone)]
struct ReservationInfo {
    operation_id: String,
    bytes: u64,
    since: Instant,
}

#[derive(Default)]
struct Counters {
    granted: AtomicU64,
    refused: AtomicU64,
    cleanups: AtomicU64,
}

struct GuardInner {
    limits: MemoryLimits,
    /// Warning and critical, from `limits`.
    levels: AlertThresholds,
    /// Above this, cleanup callbacks run before a reservation is admitted.
    cleanup_above: Threshold,
    budget: Budget,
    live: Mutex<HashMap<u64, ReservationInfo>>,
    next_id: AtomicU64,
    /// Called with the bytes wanted; what each returns (the bytes it freed) is not needed.
    cleanup: Callbacks<u64>,
    counters: Counters,
}

/// Admits operations' memory against a budget. Cloning shares it.
#[derive(Clone)]
pub struct MemoryGuard {
    inner: Arc<GuardInner>,
}

/// Bytes of the budget held for one operation until dropped.
#[must_use = "the reservation is released as soon as the guard drops"]
#[derive(Debug)]
pub struct AllocationGuard {
    id: u64,
    operation_id: String,
    charge: BudgetCharge,
    guard: Weak<GuardInner>,
}

/// A live reservation, copied out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reservation {
    /// The operation the bytes were reserved for.
    pub operation_id: String,
    /// The bytes reserved.
    pub bytes: u64,
    /// Seconds since the reservation was admitted.
    pub age_secs: f64,
}

/// Where a [`MemoryGuard`] stands: its budget, its live reservations and its counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReservationStats {
    /// The budget's limit in bytes.
    pub limit: u64,
    /// Bytes charged to the budget (reservations, plus allocations when the budget is shared).
    pub used: u64,
    /// Bytes held by the live reservations.
    pub reserved: u64,
    /// Number of live reservations.
    pub reservation_count: usize,
    /// `used / limit`, from 0 to 1.
    pub usage_ratio: f64,
    /// Normal, Warning or Critical against the thresholds.
    pub level: ReservationLevel,
    /// Reservations admitted since the guard was made.
    pub granted: u64,
    /// Reservations refused since the guard was made.
    pub refused: u64,
    /// Times the cleanup callbacks ran.
    pub cleanups: u64,
    /// Cleanup callbacks that panicked; the panic was contained.
    pub callback_panics: u64,
}

impl MemoryGuard {
    /// A guard with its own budget of `limits.max_total` bytes.
    pub fn new(limits: MemoryLimits) -> Result<MemoryGuard> {
        let levels = limits.thresholds()?;
        let budget = Budget::new(limits.max_total)?;
        Ok(Self::build(limits, levels, budget))
    }

    /// A guard over a shared budget (for example a [`BudgetedAllocator`](crate::BudgetedAllocator)'s):
    /// reservations and allocations draw from the same bytes. `limits.max_total` is ignored.
    pub fn with_budget(limits: MemoryLimits, budget: Budget) -> Result<MemoryGuard> {
        let limits = MemoryLimits { max_total: budget.limit(), ..limits };
        let levels = limits.thresholds()?;
        Ok(Self::build(limits, levels, budget))
    }

    fn build(limits: MemoryLimits, levels: AlertThresholds, budget: Budget) -> MemoryGuard {
        MemoryGuard {
            inner: Arc::new(GuardInner {
                cleanup_above: limits.cleanup(),
                limits,
                levels,
                budget,
                live: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                cleanup: Callbacks::new(),
                counters: Counters::default(),
            }),
        }
    }

    /// The limits, with `max_total` set to the budget's limit.
    pub fn limits(&self) -> &MemoryLimits {
        &self.inner.limits
    }

    /// The budget reservations are charged to (the guard's own, or the shared one).
    pub fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    /// Reserves `bytes` for `operation_id` (as IntermediateBuffers). Refused with
    /// [`Error::OperationTooLarge`] over the per-operation maximum, or [`Error::OutOfMemory`] when
    /// the budget cannot hold it even after cleanup; a refusal holds nothing.
    pub fn request_allocation(&self, operation_id: &str, bytes: u64) -> Result<AllocationGuard> {
        let result = self.admit(operation_id, bytes);
        let counter = if result.is_ok() { &self.inner.counters.granted } else { &self.inner.counters.refused };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn admit(&self, operation_id: &str, bytes: u64) -> Result<AllocationGuard> {
        let inner = &*self.inner;
        if bytes == 0 {
            return Err(Error::InvalidSize(format!("operation {operation_id:?} reserves zero bytes")));
        }
        if bytes > inner.limits.max_per_operation {
            return Err(Error::OperationTooLarge {
                operation: operation_id.to_string(),
                requested: bytes,
                limit: inner.limits.max_per_operation,
            });
        }
        if inner.cleanup_above.exceeded_by(inner.budget.used().saturating_add(bytes), inner.budget.limit()) {
            self.run_cleanup(bytes);
        }
        let charge = inner.budget.charge(bytes, Purpose::IntermediateBuffers).map_err(|refusal| {
            let usage = Usage { total_bytes: refusal.used, ..inner.budget.usage() };
            refusal.out_of_memory(-1, bytes, usage).with_cause(format!("reservation for operation {operation_id:?}"))
        })?;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let info = ReservationInfo { operation_id: operation_id.to_string(), bytes, since: Instant::now() };
        inner.live.lock().unwrap_or_else(|p| p.into_inner()).insert(id, info);
        Ok(AllocationGuard { id, operation_id: operation_id.to_string(), charge, guard: Arc::downgrade(&self.inner) })
    }

    /// Registers a cleanup: called with the bytes wanted when a reservation would pass the
    /// cleanup threshold; returns the bytes it freed (for example by evicting idle model slots).
    pub fn on_cleanup(&self, callback: impl Fn(u64) -> u64 + Send + Sync + 'static) {
        self.inner.cleanup.add(move |wanted: &u64| {
            callback(*wanted);
        });
    }

    fn run_cleanup(&self, wanted: u64) {
        self.inner.counters.cleanups.fetch_add(1, Ordering::Relaxed);
        self.inner.cleanup.fire(&wanted);
    }

    /// Reserves the operation's estimate, runs it, and releases the reservation afterwards.
    pub fn execute_with_memory_guard<O: MemoryAwareOperation>(
        &self,
        operation: &O,
        operation_id: &str,
    ) -> Result<O::Output, O::Error> {
        let reservation = self.request_allocation(operation_id, operation.estimate_memory_usage())?;
        operation.execute(&reservation)
    }

    /// Where the budget stands against the warning and critical thresholds, exactly.
    pub fn level(&self) -> ReservationLevel {
        self.inner.levels.level_of(self.inner.budget.used(), self.inner.budget.limit())
    }

    /// Bytes charged to the budget as a fraction of its limit, from 0 to 1.
    pub fn usage_ratio(&self) -> f64 {
        self.inner.budget.used() as f64 / self.inner.budget.limit() as f64
    }

    /// Live reservations, oldest first.
    pub fn reservations(&self) -> Vec<Reservation> {
        let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<(u64, Reservation)> = live
            .iter()
            .map(|(id, r)| {
                let reservation = Reservation {
                    operation_id: r.operation_id.clone(),
                    bytes: r.bytes,
                    age_secs: r.since.elapsed().as_secs_f64(),
                };
                (*id, reservation)
            })
            .collect();
        list.sort_by_key(|(id, _)| *id);
        list.into_iter().map(|(_, r)| r).collect()
    }

    /// A copy of the guard's figures and counters now.
    pub fn stats(&self) -> ReservationStats {
        let (reserved, count) = {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            (live.values().map(|r| r.bytes).sum(), live.len())
        };
        let c = &self.inner.counters;
        ReservationStats {
            limit: self.inner.budget.limit(),
            used: self.inner.budget.used(),
            reserved,
            reservation_count: count,
            usage_ratio: self.usage_ratio(),
            level: self.level(),
            granted: c.granted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            cleanups: c.cleanups.load(Ordering::Relaxed),
            callback_panics: self.inner.cleanup.panics(),
        }
    }
}

/// An operation that estimates its memory before it runs: the estimate is reserved first, and
/// the operation runs only once it is admitted
/// ([`MemoryGuard::execute_with_memory_guard`]).
pub trait MemoryAwareOperation {
    /// What the operation returns.
    type Output;
    /// The operation's error; a refused reservation converts into it.
    type Error: From<crate::Error>;

    /// Bytes the operation will need at most.
    fn estimate_memory_usage(&self) -> u64;

    /// Runs with the reservation held.
    fn execute(&self, reservation: &AllocationGuard) -> Result<Self::Output, Self::Error>;
}

impl AllocationGuard {
    /// The bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.charge.bytes()
    }

    /// The operation it was made for.
    pub fn operation_id(&self) -> &str {
        &self.operation_id
    }
}

impl Drop for AllocationGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.guard.upgrade() {
            inner.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        }
        // The charge drops after this: the bytes return to the budget.
    }
}
