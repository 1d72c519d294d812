//! B2, B3: a byte budget with optional per-purpose budgets. A charge is a reserve-then-commit on
//! atomic counters — compare-and-swap, never above the limit, rolled back when a later step fails —
//! so that any number of threads charging at once never exceed it.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, OomSource, OutOfMemory, Result};
use crate::pressure::{utilization_percent, MemoryPressure, PressureThresholds};
use crate::purpose::Purpose;
use crate::usage::{PurposeUsage, Usage};

struct BudgetInner {
    limit: u64,
    purpose_limits: [Option<u64>; 4],
    used: AtomicU64,
    purpose_used: [AtomicU64; 4],
    peak: AtomicU64,
    thresholds: PressureThresholds,
}

/// A shared budget. Cloning shares it.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<BudgetInner>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget").field("limit", &self.limit()).field("used", &self.used()).finish()
    }
}

/// Why a charge was refused: which limit, and how much room it had left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused: the total budget or one purpose's.
    pub source: OomSource,
    /// That limit, in bytes.
    pub limit: u64,
    /// The bytes already charged against it when the charge was refused.
    pub used: u64,
}

impl Refusal {
    /// The room the refusing limit had left: `limit - used`.
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// This refusal as the out-of-memory error of a request for `requested` bytes on `device` (-1
    /// when no device backs the budget), with `usage` as the breakdown by purpose: what was
    /// available, the limit that refused and what it held. The one place a refusal becomes an
    /// error, for every budget's user.
    pub fn out_of_memory(&self, device: i32, requested: u64, usage: Usage) -> OutOfMemory {
        OutOfMemory::new(device, self.source, requested, usage)
            .with_available(Some(self.available()))
            .with_budget(self.limit)
            .with_allocated(self.used)
    }
}

/// Builds a [`Budget`].
#[derive(Debug, Clone)]
pub struct BudgetBuilder {
    limit: u64,
    purpose_limits: [Option<u64>; 4],
    thresholds: PressureThresholds,
}

impl BudgetBuilder {
    /// B3: at most `bytes` for `purpose`, inside the total.
    pub fn purpose_limit(mut self, purpose: Purpose, bytes: u64) -> BudgetBuilder {
        self.purpose_limits[purpose.index()] = Some(bytes);
        self
    }

    /// The pressure thresholds of [`Budget::pressure`] (the defaults otherwise).
    pub fn thresholds(mut self, thresholds: PressureThresholds) -> BudgetBuilder {
        self.thresholds = thresholds;
        self
    }

    /// The budget. `VRAM-E007` for a total or a per-purpose limit of 0 bytes.
    pub fn build(self) -> Result<Budget> {
        if self.limit == 0 {
            return Err(Error::InvalidArgument("a budget must be at least 1 byte".into()));
        }
        self.build_allowing_zero()
    }

    /// A zero budget refuses every charge; the slot manager's `with_budget(0)` is one.
    pub(crate) fn build_allowing_zero(self) -> Result<Budget> {
        if let Some((i, _)) = self.purpose_limits.iter().enumerate().find(|(_, l)| **l == Some(0)) {
            return Err(Error::InvalidArgument(format!("the {} budget must be at least 1 byte", Purpose::ALL[i])));
        }
        Ok(Budget {
            inner: Arc::new(BudgetInner {
                limit: self.limit,
                purpose_limits: self.purpose_limits,
                used: AtomicU64::new(0),
                purpose_used: Default::default(),
                peak: AtomicU64::new(0),
                thresholds: self.thresholds,
            }),
        })
    }
}

impl Budget {
    /// A budget of `limit` bytes with the default pressure thresholds and no per-purpose limits.
    pub fn new(limit: u64) -> Result<Budget> {
        Budget::builder(limit).build()
    }

    /// A builder for a budget of `limit` bytes, for per-purpose limits or other thresholds.
    pub fn builder(limit: u64) -> BudgetBuilder {
        BudgetBuilder { limit, purpose_limits: [None; 4], thresholds: PressureThresholds::default() }
    }

    /// The total, in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// The bytes charged now, all purposes together.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// The most bytes ever charged at once (by committed charges).
    pub fn peak(&self) -> u64 {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// The bytes that can still be charged: `limit - used`.
    pub fn available(&self) -> u64 {
        self.limit().saturating_sub(self.used())
    }

    /// The limit of `purpose`, if it has one of its own.
    pub fn purpose_limit(&self, purpose: Purpose) -> Option<u64> {
        self.inner.purpose_limits[purpose.index()]
    }

    /// The bytes charged now for `purpose`.
    pub fn used_by(&self, purpose: Purpose) -> u64 {
        self.inner.purpose_used[purpose.index()].load(Ordering::Acquire)
    }

    /// The bytes charged now, in all and by purpose (no counts: a budget counts bytes only).
    pub fn usage(&self) -> Usage {
        Usage {
            total_bytes: self.used(),
            by_purpose: Purpose::ALL.map(|p| PurposeUsage { bytes: self.used_by(p), ..PurposeUsage::default() }),
            ..Usage::default()
        }
    }

    /// The thresholds that map utilization to a [`MemoryPressure`] level.
    pub fn thresholds(&self) -> PressureThresholds {
        self.inner.thresholds
    }

    /// `used` as a percentage of `limit`.
    pub fn utilization_percent(&self) -> f64 {
        utilization_percent(self.used(), self.limit())
    }

    /// The pressure level at the current utilization.
    pub fn pressure(&self) -> MemoryPressure {
        self.inner.thresholds.level_of(self.used(), self.limit())
    }

    /// The pressure there would be with `extra` more bytes charged.
    pub fn pressure_with(&self, extra: u64) -> MemoryPressure {
        self.inner.thresholds.level_of(self.used().saturating_add(extra), self.limit())
    }

    /// Charges `bytes` for `purpose`, or refuses and changes nothing. The charge is returned on
    /// drop unless the caller keeps it.
    pub fn charge(&self, bytes: u64, purpose: Purpose) -> std::result::Result<BudgetCharge, Refusal> {
        let charge = self.reserve(bytes, purpose)?;
        charge.commit();
        Ok(charge)
    }

    /// Reserves without touching the peak: for a charge that a later step (the device) may still
    /// refuse. [`BudgetCharge::commit`] records the peak once that step succeeded.
    pub(crate) fn reserve(&self, bytes: u64, purpose: Purpose) -> std::result::Result<BudgetCharge, Refusal> {
        let inner = &*self.inner;
        let limit = inner.limit;
        inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(bytes).filter(|n| *n <= limit))
            .map_err(|used| Refusal { source: OomSource::Budget, limit, used })?;
        if let Some(purpose_limit) = inner.purpose_limits[purpose.index()] {
            let counter = &inner.purpose_used[purpose.index()];
            if let Err(used) = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|n| *n <= purpose_limit)
            }) {
                inner.used.fetch_sub(bytes, Ordering::AcqRel); // roll back the total
                return Err(Refusal { source: OomSource::PurposeBudget(purpose), limit: purpose_limit, used });
            }
        } else {
            inner.purpose_used[purpose.index()].fetch_add(bytes, Ordering::AcqRel);
        }
        Ok(BudgetCharge { budget: self.clone(), bytes, purpose })
    }

    fn release(&self, bytes: u64, purpose: Purpose) {
        self.inner.purpose_used[purpose.index()].fetch_sub(bytes, Ordering::AcqRel);
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes held against a [`Budget`] until dropped.
#[must_use = "dropping a charge returns its bytes to the budget at once"]
#[derive(Debug)]
pub struct BudgetCharge {
    budget: Budget,
    bytes: u64,
    purpose: Purpose,
}

impl BudgetCharge {
    /// The bytes this charge holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The purpose it was charged for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The budget it holds them against.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Counts this charge in the budget's peak (a reservation that became an allocation).
    pub(crate) fn commit(&self) {
        let inner = &self.budget.inner;
        inner.peak.fetch_max(inner.used.load(Ordering::Acquire), Ordering::Relaxed);
    }
}

impl Drop for BudgetCharge {
    fn drop(&mut self) {
        self.budget.release(self.bytes, self.purpose);
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
