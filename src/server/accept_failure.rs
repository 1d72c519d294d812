//! What the accept loop does when accept fails: wait, backing off, warn now and then, and close
//! one of the server's own connections only when they are plausibly why descriptors ran out.
//!
//! The server is a library inside an inference worker, whose model files, driver handles and
//! sockets share the process's limit on open files. When something else exhausts it, closing
//! the server's connections cuts healthy probes and scrapers, and the descriptor freed is as
//! likely taken by the rest of the process as by the next accept. So the server makes room only
//! while its own connections hold at least half of the limit — they are then its largest user,
//! as a flood of connections would be — and then only by closing one that has not completed a
//! request (silent or mid-head: what such a flood is made of; a served probe or scraper stays).
//! Otherwise it keeps every connection and waits for descriptors to come back.
use std::io;
use std::time::{Duration, Instant};

use super::server::OpenConnections;

/// The wait after the first failure of a run; it doubles with each further failure.
const FIRST_DELAY: Duration = Duration::from_millis(10);
/// The longest wait: a server short of descriptors still tries once a second.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one warning this often: a process out of descriptors fails every retry.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The accept loop's state between failures.
pub(crate) struct AcceptBackoff {
    delay: Duration,
    last_warning: Option<Instant>,
    failures_since_warning: u64,
}

impl AcceptBackoff {
    pub(crate) fn new() -> AcceptBackoff {
        AcceptBackoff { delay: FIRST_DELAY, last_warning: None, failures_since_warning: 0 }
    }

    /// A connection was accepted: the next failure waits the shortest delay again. The warning
    /// interval runs on, so that failures between accepts still warn rarely.
    pub(crate) fn accepted(&mut self) {
        self.delay = FIRST_DELAY;
    }

    /// Handles a failed accept (closing a connection of `open` if the rule above says so) and
    /// returns how long to wait before the next one.
    pub(crate) fn failed(&mut self, error: &io::Error, open: &OpenConnections) -> Duration {
        let out_of_descriptors = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        let own = open.len();
        let limit = descriptor_limit();
        let closed_one = out_of_descriptors && holds_half_the_limit(own, limit) && open.evict_unserved();
        let delay = self.next_delay();
        self.failures_since_warning += 1;
        if !matches!(self.last_warning, Some(warned) if warned.elapsed() < WARNING_INTERVAL) {
            let failures = match self.failures_since_warning {
                1 => String::new(),
                many => format!(" ({many} failures since the last warning)"),
            };
            let decided = match (out_of_descriptors, limit) {
                (false, _) => String::new(),
                (true, Some(limit)) => format!(
                    "; the server's connections hold {own} of the process's {limit} descriptors: {}",
                    if closed_one { "closed one that had not completed a request" } else { "keeping them all" }
                ),
                (true, None) => {
                    format!("; the server's connections hold {own} descriptors, of no limit: keeping them all")
                }
            };
            tracing::warn!(
                actor = crate::events::ACTOR_WORKER, action = "http_accept", error_kind = "io",
                human = %format!("accept failed: {error}{failures}{decided}; retrying in {delay:?}"),
            );
            self.last_warning = Some(Instant::now());
            self.failures_since_warning = 0;
        }
        delay
    }

    /// This failure's wait, doubling the next one up to [`MAX_DELAY`].
    fn next_delay(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (delay * 2).min(MAX_DELAY);
        delay
    }
}

/// Whether `own` connections hold at least half of `limit` descriptors: then they plausibly
/// exhausted them. Without a limit, running out is never theirs to fix.
fn holds_half_the_limit(own: usize, limit: Option<u64>) -> bool {
    limit.is_some_and(|limit| u64::try_from(own).unwrap_or(u64::MAX).saturating_mul(2) >= limit)
}

/// The process's soft limit on open files, read at each failure (the embedding process may
/// raise it); `None` when unlimited or unknown.
fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_connections_are_to_blame_only_with_half_the_limit() {
        assert!(!holds_half_the_limit(1, Some(64)));
        assert!(!holds_half_the_limit(31, Some(64)));
        assert!(holds_half_the_limit(32, Some(64)));
        assert!(holds_half_the_limit(4096, Some(1024)));
        assert!(!holds_half_the_limit(usize::MAX, None));
    }

    #[test]
    fn the_delay_doubles_to_a_second_and_starts_over_after_an_accept() {
        let mut backoff = AcceptBackoff::new();
        let delays: Vec<u64> = (0..9).map(|_| backoff.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.accepted();
        assert_eq!(backoff.next_delay(), FIRST_DELAY);
    }
}
