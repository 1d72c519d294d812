//! A fit plan before loading (`GET /plan?bytes=N[&purpose=P]`, `vramguard plan BYTES`): would
//! `N` more bytes fit, which slots would the fit plan evict and in what order, and what margin
//! would be left — answered from the cached health report, changing nothing.
//!
//! The answer applies the slot manager's own rule ([`fit_plan_room`](crate::slots::fit_plan_room)) to the figures of the
//! last check: the budget, the slots that were evictable then (least recently used first) and the
//! device's free memory. It is as fresh as the report (`as_of_unix_secs`); a load made later plans
//! again against the live state.
use serde::Serialize;

use crate::purpose::Purpose;
use crate::slots::fit_plan_room;

use super::report::HealthReport;

/// The answer to "would `bytes` of `purpose` fit now?".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitPlan {
    /// The bytes asked about.
    pub bytes: u64,
    /// Their purpose: ModelWeights is a model slot (budget and eviction apply); any other purpose
    /// is a plain tracked buffer, judged against the device alone.
    pub purpose: Purpose,
    /// Whether the request would fit, after the evictions listed.
    pub fits: bool,
    /// The slots the plan would evict, in eviction order (empty when none need to go, or when it
    /// does not fit).
    pub evict: Vec<String>,
    /// Their bytes together.
    pub evict_bytes: u64,
    /// The slots' budget (absent for a worker without one).
    pub budget_limit_bytes: Option<u64>,
    /// What the budget would have left after the evictions and the load (absent when it does not
    /// fit or there is no budget).
    pub budget_left_bytes: Option<u64>,
    /// The device's free memory at the check (total - used).
    pub device_free_bytes: u64,
    /// What the device would have left after the evictions and the load (absent when it does not
    /// fit).
    pub device_left_bytes: Option<u64>,
    /// Why it does not fit (absent when it fits).
    pub reason: Option<String>,
    /// When the figures were taken: the last completed check (absent before the first).
    pub as_of_unix_secs: Option<f64>,
}

impl FitPlan {
    /// The plan for `bytes` of `purpose` against `report`.
    pub fn for_report(report: &HealthReport, bytes: u64, purpose: Purpose) -> FitPlan {
        let device_free = report.device.total_bytes.saturating_sub(report.device.used_bytes);
        let mut plan = FitPlan {
            bytes,
            purpose,
            fits: false,
            evict: Vec::new(),
            evict_bytes: 0,
            budget_limit_bytes: report.budget.as_ref().map(|b| b.limit_bytes),
            budget_left_bytes: None,
            device_free_bytes: device_free,
            device_left_bytes: None,
            reason: None,
            as_of_unix_secs: report.last_check_unix_secs,
        };
        let budget = report.budget.as_ref().filter(|_| purpose == Purpose::ModelWeights);
        if let Some(budget) = budget {
            let candidates: Vec<_> = report.slots.iter().filter(|s| s.evictable).collect();
            let sizes: Vec<u64> = candidates.iter().map(|s| s.size_bytes).collect();
            let (limit, used) = (budget.limit_bytes, budget.allocated_bytes);
            let Some(chosen) = fit_plan_room(limit, used, budget.below_critical_bytes, bytes, &sizes) else {
                plan.reason = Some(if bytes > limit {
                    format!("{bytes} bytes are more than the whole budget of {limit} bytes")
                } else {
                    let idle: u64 = sizes.iter().sum();
                    let need = used.saturating_add(bytes).saturating_sub(limit);
                    format!(
                        "the budget has {} bytes left and the evictable slots hold {idle}: {need} more are needed \
                         (pinned, in-use and recently loaded slots are not evicted)",
                        limit.saturating_sub(used)
                    )
                });
                return plan;
            };
            plan.evict = chosen.iter().map(|&i| candidates[i].name.clone()).collect();
            plan.evict_bytes = chosen.iter().map(|&i| sizes[i]).sum();
            plan.budget_left_bytes =
                Some(limit.saturating_sub(used.saturating_sub(plan.evict_bytes).saturating_add(bytes)));
        }
        let free_after_evictions = device_free.saturating_add(plan.evict_bytes);
        if bytes > free_after_evictions {
            plan.evict.clear();
            plan.evict_bytes = 0;
            plan.budget_left_bytes = None;
            plan.reason = Some(format!(
                "the device has {device_free} bytes free ({free_after_evictions} after the evictions the budget needs): \
                 {bytes} do not fit"
            ));
            return plan;
        }
        plan.fits = true;
        plan.device_left_bytes = Some(free_after_evictions - bytes);
        plan
    }
}
