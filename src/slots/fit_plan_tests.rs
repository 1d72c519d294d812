use proptest::prelude::*;

use super::plan;

/// Every subset, by brute force: the minimal size, and the oldest set of that size.
fn brute_force(candidates: &[u64], need: u64) -> Option<Vec<usize>> {
    let n = candidates.len();
    let mut best: Option<Vec<usize>> = None;
    for mask in 0u32..(1 << n) {
        let set: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
        let freed: u64 = set.iter().map(|i| candidates[*i]).sum();
        if freed < need {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => set.len() < b.len() || (set.len() == b.len() && set < *b),
        };
        if better {
            best = Some(set);
        }
    }
    best
}

#[test]
fn nothing_needed_evicts_nothing() {
    assert_eq!(plan(&[5, 6], 0), Some(vec![]));
    assert_eq!(plan(&[], 0), Some(vec![]));
}

#[test]
fn impossible_requests_have_no_plan() {
    assert_eq!(plan(&[], 1), None);
    assert_eq!(plan(&[100, 200, 300], 601), None);
}

#[test]
fn prefers_one_large_slot_over_several_old_small_ones() {
    // Oldest first: three small slots, then a large one that alone covers the need.
    assert_eq!(plan(&[100, 100, 100, 500], 250), Some(vec![3]));
}

#[test]
fn among_equally_small_sets_takes_the_least_recently_used() {
    assert_eq!(plan(&[300, 300, 300], 200), Some(vec![0]));
    assert_eq!(plan(&[100, 400, 400, 100], 500), Some(vec![0, 1]));
}

proptest! {
    #[test]
    fn plan_matches_brute_force(candidates in prop::collection::vec(1u64..1000, 0..10), need in 0u64..4000) {
        prop_assert_eq!(plan(&candidates, need), brute_force(&candidates, need));
    }
}
