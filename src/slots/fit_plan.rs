//! L3: which idle slots to evict so that a request fits. The plan is the smallest set — fewest
//! slots — and, among sets that small, the one whose members are least recently used. When even
//! every idle slot would not free enough, there is no plan and nothing is evicted.

/// Chooses from `candidates` (sizes, least recently used first) a set freeing at least `need`
/// bytes. Returns indices into `candidates`, oldest first; `Some(vec![])` when `need` is 0.
pub fn plan(candidates: &[u64], need: u64) -> Option<Vec<usize>> {
    if need == 0 {
        return Some(Vec::new());
    }
    let mut by_size: Vec<u64> = candidates.to_vec();
    by_size.sort_unstable_by(|a, b| b.cmp(a));
    // Fewest slots: the k largest cover the need.
    let mut covered = 0u64;
    let k = by_size.iter().position(|size| {
        covered = covered.saturating_add(*size);
        covered >= need
    })? + 1;
    // Oldest-first greedy: take a slot if the rest can still be completed with the largest of the
    // slots after it; this yields the lexicographically oldest set of size k.
    let mut chosen = Vec::with_capacity(k);
    let mut still_needed = need;
    for (i, size) in candidates.iter().enumerate() {
        if chosen.len() == k {
            break;
        }
        let slots_left = k - chosen.len() - 1;
        let remaining = still_needed.saturating_sub(*size);
        if largest_sum(&candidates[i + 1..], slots_left) >= remaining {
            chosen.push(i);
            still_needed = remaining;
        }
    }
    debug_assert!(still_needed == 0 && chosen.len() == k);
    Some(chosen)
}

/// L2 + L3: which of the `idle` slots (sizes, least recently used first) to evict so that
/// `bytes` more fit a budget of `limit` bytes of which `used` are charged — aiming to stay below
/// Critical pressure (`below_critical` bytes charged at most), else at least within the budget.
/// `None` when the request is larger than the budget, or even every idle slot would not free
/// enough. The one rule behind [`ModelSlotManager::plan_fit`](super::ModelSlotManager::plan_fit),
/// the loads that evict, and the `/plan` answer computed from a health report.
pub fn plan_room(limit: u64, used: u64, below_critical: u64, bytes: u64, idle: &[u64]) -> Option<Vec<usize>> {
    if bytes > limit {
        return None;
    }
    let total = used.saturating_add(bytes);
    let need_fit = total.saturating_sub(limit);
    let need_calm = total.saturating_sub(below_critical);
    plan(idle, need_calm).or_else(|| plan(idle, need_fit))
}

fn largest_sum(sizes: &[u64], count: usize) -> u64 {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.iter().take(count).fold(0u64, |sum, s| sum.saturating_add(*s))
}

#[cfg(test)]
#[path = "fit_plan_tests.rs"]
mod tests;
