//! B4: reservations. `request_allocation` admits an operation's memory against the budget and
//! returns a guard that holds those bytes until it drops.
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use serde::Serialize;

use crate::budget::{Budget, BudgetCharge};
use crate::error::{Error, OutOfMemory, Result};
use crate::purpose::Purpose;
use crate::usage::Usage;

use super::limits::{MemoryLimits, ReservationLevel};

type CleanupCallback = Arc<dyn Fn(u64) -> u64 + Send + Sync>;

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
    callback_panics: AtomicU64,
}

struct GuardInner {
    limits: MemoryLimits,
    budget: Budget,
    live: Mutex<HashMap<u64, ReservationInfo>>,
    next_id: AtomicU64,
    cleanup: RwLock<Vec<CleanupCallback>>,
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
    pub operation_id: String,
    pub bytes: u64,
    pub age_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReservationStats {
    pub limit: u64,
    /// Bytes charged to the budget (reservations, plus allocations when the budget is shared).
    pub used: u64,
    pub reserved: u64,
    pub reservation_count: usize,
    pub usage_ratio: f64,
    pub level: ReservationLevel,
    pub granted: u64,
    pub refused: u64,
    pub cleanups: u64,
    pub callback_panics: u64,
}

impl MemoryGuard {
    /// A guard with its own budget of `limits.max_total` bytes.
    pub fn new(limits: MemoryLimits) -> Result<MemoryGuard> {
        limits.validate()?;
        let budget = Budget::new(limits.max_total)?;
        Ok(Self::build(limits, budget))
    }

    /// A guard over a shared budget (for example a [`BudgetedAllocator`](crate::BudgetedAllocator)'s):
    /// reservations and allocations draw from the same bytes. `limits.max_total` is ignored.
    pub fn with_budget(limits: MemoryLimits, budget: Budget) -> Result<MemoryGuard> {
        let limits = MemoryLimits { max_total: budget.limit(), ..limits };
        limits.validate()?;
        Ok(Self::build(limits, budget))
    }

    fn build(limits: MemoryLimits, budget: Budget) -> MemoryGuard {
        MemoryGuard {
            inner: Arc::new(GuardInner {
                limits,
                budget,
                live: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                cleanup: RwLock::new(Vec::new()),
                counters: Counters::default(),
            }),
        }
    }

    pub fn limits(&self) -> &MemoryLimits {
        &self.inner.limits
    }

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
        let after = inner.budget.used().saturating_add(bytes) as f64 / inner.budget.limit() as f64;
        if after > inner.limits.cleanup_threshold {
            self.run_cleanup(bytes);
        }
        let charge = inner.budget.charge(bytes, Purpose::IntermediateBuffers).map_err(|refusal| {
            let mut usage = Usage { total_bytes: refusal.used, ..Usage::default() };
            usage.by_purpose = Purpose::ALL
                .map(|p| crate::usage::PurposeUsage { bytes: inner.budget.used_by(p), ..Default::default() });
            Error::OutOfMemory(Box::new(OutOfMemory {
                device: -1,
                source: refusal.source,
                requested: bytes,
                available: Some(refusal.available()),
                budget: Some(refusal.limit),
                allocated: refusal.used,
                loaded_models: None,
                usage,
                cause: format!("reservation for operation {operation_id:?}"),
            }))
        })?;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let info = ReservationInfo { operation_id: operation_id.to_string(), bytes, since: Instant::now() };
        inner.live.lock().unwrap_or_else(|p| p.into_inner()).insert(id, info);
        Ok(AllocationGuard { id, operation_id: operation_id.to_string(), charge, guard: Arc::downgrade(&self.inner) })
    }

    /// Registers a cleanup: called with the bytes wanted when a reservation would pass the
    /// cleanup threshold; returns the bytes it freed (for example by evicting idle model slots).
    pub fn on_cleanup(&self, callback: impl Fn(u64) -> u64 + Send + Sync + 'static) {
        self.inner.cleanup.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(callback));
    }

    fn run_cleanup(&self, wanted: u64) {
        self.inner.counters.cleanups.fetch_add(1, Ordering::Relaxed);
        let callbacks = self.inner.cleanup.read().unwrap_or_else(|p| p.into_inner()).clone();
        for callback in callbacks {
            if catch_unwind(AssertUnwindSafe(|| callback(wanted))).is_err() {
                self.inner.counters.callback_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn level(&self) -> ReservationLevel {
        let ratio = self.usage_ratio();
        if ratio >= self.inner.limits.critical_threshold {
            ReservationLevel::Critical
        } else if ratio >= self.inner.limits.warning_threshold {
            ReservationLevel::Warning
        } else {
            ReservationLevel::Normal
        }
    }

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
            callback_panics: c.callback_panics.load(Ordering::Relaxed),
        }
    }
}

impl AllocationGuard {
    pub fn bytes(&self) -> u64 {
        self.charge.bytes()
    }

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
