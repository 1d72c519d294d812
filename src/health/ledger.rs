//! The untracked-memory ledger and the leak trend (issue 16, part 5).
//!
//! Untracked = this process's VRAM as NVML counts it − the bytes vramguard tracks. The ledger
//! splits it into what is known — the CUDA context (measured when the device was opened, or at
//! the first check with a process figure when nobody measured it), vramguard's memory pool's
//! cache of freed blocks (reserved − used) and the bandwidth witness's control buffer — and the
//! remainder: what nothing explains (another
//! allocator's memory, the driver's unified-memory bookkeeping and the code of kernels loaded
//! since, or a leak).
//!
//! The leak trend watches the remainder and each purpose's tracked bytes over the last
//! `window` checks: a figure that never fell over the window and grew by at least `min_growth`
//! bytes is a suspected leak — an event, a metric and a field in `/health`, never a change of
//! health on its own (a KV cache that grows with the load grows steadily too).
use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// The trend's name for the ledger's remainder.
pub const UNTRACKED: &str = "untracked";

/// Where the process's untracked VRAM goes, at one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UntrackedLedger {
    /// This process's VRAM according to NVML.
    pub process_bytes: u64,
    /// What vramguard tracks.
    pub tracked_bytes: u64,
    /// process − tracked.
    pub untracked_bytes: u64,
    /// The CUDA context (and whatever else the process held) before any tracked allocation.
    pub cuda_context_bytes: u64,
    /// How `cuda_context_bytes` was measured: `"at device open"` or `"at the first check"`.
    pub cuda_context_measured: &'static str,
    /// vramguard's memory pool's cache of freed blocks (reserved − used).
    pub pool_cache_bytes: u64,
    /// The bandwidth witness's control buffer (device memory of vramguard's own).
    pub witness_bytes: u64,
    /// Untracked bytes nothing above explains.
    pub remainder_bytes: u64,
}

/// A figure that grew steadily over the trend's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeakSuspicion {
    /// `"untracked"` (the ledger's remainder) or a purpose's name.
    pub source: String,
    /// Growth from the first to the last check of the window.
    pub grew_bytes: u64,
    /// The window, in checks.
    pub over_checks: u32,
}

/// The last `window` samples of each watched figure.
#[derive(Debug)]
pub struct LeakTrend {
    window: usize,
    min_growth: u64,
    samples: BTreeMap<String, VecDeque<u64>>,
    /// Sources suspected at the last check: an event is due only when one becomes suspected.
    suspected: Vec<String>,
}

impl LeakTrend {
    /// A trend over `window` checks (at least 2) flagging growth of at least `min_growth` bytes.
    pub fn new(window: u32, min_growth: u64) -> LeakTrend {
        LeakTrend { window: window.max(2) as usize, min_growth, samples: BTreeMap::new(), suspected: Vec::new() }
    }

    /// Adds one check's figures (source → bytes) and returns the sources suspected now, and of
    /// those the ones newly suspected since the previous check. A source missing from a check
    /// starts its window again.
    pub fn observe(&mut self, figures: &BTreeMap<String, u64>) -> (Vec<LeakSuspicion>, Vec<LeakSuspicion>) {
        self.samples.retain(|source, _| figures.contains_key(source));
        let mut suspected = Vec::new();
        for (source, &bytes) in figures {
            let window = self.samples.entry(source.clone()).or_default();
            window.push_back(bytes);
            while window.len() > self.window {
                window.pop_front();
            }
            if window.len() < self.window {
                continue;
            }
            let never_fell = window.iter().zip(window.iter().skip(1)).all(|(a, b)| b >= a);
            let grew = window.back().copied().unwrap_or(0).saturating_sub(window.front().copied().unwrap_or(0));
            if never_fell && grew >= self.min_growth && grew > 0 {
                suspected.push(LeakSuspicion {
                    source: source.clone(),
                    grew_bytes: grew,
                    over_checks: self.window as u32,
                });
            }
        }
        let newly: Vec<LeakSuspicion> =
            suspected.iter().filter(|s| !self.suspected.contains(&s.source)).cloned().collect();
        self.suspected = suspected.iter().map(|s| s.source.clone()).collect();
        (suspected, newly)
    }
}

/// The ledger of one check: `context` is the context figure measured at device open, when it was.
/// With none, the first call's untracked bytes (less the pool's cache) become it, and `first`
/// keeps them for the checks after.
pub fn ledger(
    process_bytes: u64,
    tracked_bytes: u64,
    own: OwnMemory,
    context: Option<u64>,
    first: &std::sync::OnceLock<u64>,
) -> UntrackedLedger {
    let untracked_bytes = process_bytes.saturating_sub(tracked_bytes);
    let own_bytes = own.pool_cache_bytes.saturating_add(own.witness_bytes);
    let (cuda_context_bytes, cuda_context_measured) = match context {
        Some(measured) => (measured, "at device open"),
        None => (*first.get_or_init(|| untracked_bytes.saturating_sub(own_bytes)), "at the first check"),
    };
    UntrackedLedger {
        process_bytes,
        tracked_bytes,
        untracked_bytes,
        cuda_context_bytes,
        cuda_context_measured,
        pool_cache_bytes: own.pool_cache_bytes,
        witness_bytes: own.witness_bytes,
        remainder_bytes: untracked_bytes.saturating_sub(cuda_context_bytes).saturating_sub(own_bytes),
    }
}

/// vramguard's own device memory that no allocation tracks.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnMemory {
    /// The memory pool's cache of freed blocks (reserved − used).
    pub pool_cache_bytes: u64,
    /// The bandwidth witness's control buffer.
    pub witness_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(untracked: u64, weights: u64) -> BTreeMap<String, u64> {
        BTreeMap::from([("untracked".to_string(), untracked), ("ModelWeights".to_string(), weights)])
    }

    #[test]
    fn steady_growth_over_the_window_is_suspected_once() {
        let mut trend = LeakTrend::new(4, 100);
        let mut newly_seen = Vec::new();
        for (i, untracked) in [0u64, 50, 100, 150, 200, 250].into_iter().enumerate() {
            let (now, newly) = trend.observe(&figures(untracked, 1000));
            if i < 3 {
                assert!(now.is_empty(), "check {i}: {now:?}");
            } else {
                assert_eq!(now.len(), 1, "check {i}: {now:?}");
                assert_eq!((now[0].source.as_str(), now[0].grew_bytes, now[0].over_checks), ("untracked", 150, 4));
            }
            newly_seen.extend(newly);
        }
        assert_eq!(newly_seen.len(), 1, "the event is due once: {newly_seen:?}");
    }

    #[test]
    fn a_dip_small_growth_or_a_short_history_is_not_a_leak() {
        let mut trend = LeakTrend::new(4, 100);
        for untracked in [0u64, 300, 200, 400] {
            assert!(trend.observe(&figures(untracked, 5)).0.is_empty(), "a dip at 200");
        }
        let mut trend = LeakTrend::new(4, 100);
        for untracked in [0u64, 10, 20, 30, 40] {
            assert!(trend.observe(&figures(untracked, 5)).0.is_empty(), "grew 30 < 100");
        }
        let mut trend = LeakTrend::new(4, 1);
        for weights in [0u64, 100, 200] {
            assert!(trend.observe(&figures(7, weights)).0.is_empty(), "3 checks < 4");
        }
        // A flat figure never grows, whatever the minimum.
        let mut trend = LeakTrend::new(2, 0);
        for _ in 0..5 {
            assert!(trend.observe(&figures(7, 7)).0.is_empty());
        }
    }

    #[test]
    fn a_suspicion_that_ends_can_begin_again() {
        let mut trend = LeakTrend::new(2, 10);
        let mut events = 0;
        for weights in [0u64, 20, 40, 10, 30, 50] {
            events += trend.observe(&figures(0, weights)).1.len();
        }
        assert_eq!(events, 2, "suspected at 20, ended at 10, suspected again at 30");
    }

    #[test]
    fn the_ledger_splits_untracked_into_known_and_remainder() {
        let first = std::sync::OnceLock::new();
        let own = |pool_cache_bytes, witness_bytes| OwnMemory { pool_cache_bytes, witness_bytes };
        let at_open = ledger(1500, 1000, own(60, 40), Some(300), &first);
        assert_eq!((at_open.untracked_bytes, at_open.remainder_bytes), (500, 100));
        assert_eq!((at_open.pool_cache_bytes, at_open.witness_bytes), (60, 40));
        assert_eq!(at_open.cuda_context_measured, "at device open");
        // Without a measurement at open, the first check's untracked bytes are the context.
        let first_check = ledger(1500, 1000, own(100, 0), None, &first);
        assert_eq!((first_check.cuda_context_bytes, first_check.remainder_bytes), (400, 0));
        let later = ledger(1700, 1000, own(100, 0), None, &first);
        assert_eq!((later.cuda_context_bytes, later.remainder_bytes), (400, 200));
        // Tracked memory outside the device (a violation) can exceed NVML's figure: no underflow.
        assert_eq!(ledger(100, 1000, own(0, 0), Some(50), &first).remainder_bytes, 0);
    }
}
