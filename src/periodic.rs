//! A task run periodically on a named thread of its own: the first run at once, then one every
//! interval. The thread waits on a condition variable, not a sleep, so that stopping it is prompt
//! even with a long interval. Dropping the task stops it and joins the thread — but waits at most
//! `join_within` for a run stuck in a hung device: then the thread is left to finish on its own
//! (an error event says so) and the drop returns. The health monitor's checks and the GPU
//! monitor's checks both run as one.
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::callbacks::contain;
use crate::error::{Error, Result};

/// The `join_within` of a task whose drop waits for its thread however long the run takes.
pub(crate) const JOIN_WHATEVER_IT_TAKES: Duration = Duration::MAX;

#[derive(Default)]
struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
}

/// A running periodic task. Dropping it (or [`stop`](Self::stop)) stops and joins it, waiting at
/// most the bound it was started with.
pub struct PeriodicTask {
    name: String,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends, however it ends: lets the drop wait with a deadline.
    ended: mpsc::Receiver<()>,
    join_within: Duration,
}

impl std::fmt::Debug for PeriodicTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodicTask").field("name", &self.name).field("running", &self.is_running()).finish()
    }
}

impl PeriodicTask {
    /// Starts `run` on a thread called `name`: at once, then every `interval` until stopped. A
    /// panic in `run` is contained (the next run still comes). Dropping the task waits at most
    /// `join_within` for a run in progress ([`JOIN_WHATEVER_IT_TAKES`] for no bound). Fails only
    /// when the OS cannot start a thread.
    pub(crate) fn start(
        name: &str,
        interval: Duration,
        join_within: Duration,
        mut run: impl FnMut() + Send + 'static,
    ) -> Result<PeriodicTask> {
        let stop = Arc::new(Stop::default());
        let thread_stop = Arc::clone(&stop);
        let (ended_tx, ended) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _ended = ended_tx; // dropped when the thread ends, whatever way
                loop {
                    let _ = contain(&mut run);
                    let requested = thread_stop.requested.lock().unwrap_or_else(PoisonError::into_inner);
                    let (requested, _) = thread_stop
                        .wake
                        .wait_timeout_while(requested, interval, |requested| !*requested)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *requested {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the {name} thread: {e}")))?;
        Ok(PeriodicTask { name: name.to_string(), stop, thread: Some(thread), ended, join_within })
    }

    /// Stops and joins the thread (what dropping does), for call sites that want it said.
    pub fn stop(self) {}

    /// False once the thread has ended.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|thread| !thread.is_finished())
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PeriodicTask {
    fn drop(&mut self) {
        *self.stop.requested.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.wake.notify_all();
        let Some(thread) = self.thread.take() else { return };
        let ended = match Instant::now().checked_add(self.join_within) {
            Some(_) => self.ended.recv_timeout(self.join_within),
            None => self.ended.recv().map_err(RecvTimeoutError::from),
        };
        match ended {
            Err(RecvTimeoutError::Timeout) => tracing::error!(
                actor = crate::events::ACTOR_WORKER, action = "thread_stop", target = %self.name, error_kind = "timeout",
                human = %format!("The {} thread did not stop within {:?} (a hung GPU?); leaving it behind", self.name, self.join_within),
            ),
            // The thread contains every panic of a run, so join only fails on a bug; Drop must not
            // panic either way.
            _ => drop(thread.join()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn runs_at_once_and_stops_promptly_inside_a_long_interval() {
        let runs = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&runs);
        let task = PeriodicTask::start("vg-test-prompt", LONG, JOIN_WHATEVER_IT_TAKES, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("a run that panics is contained");
        })
        .unwrap();
        let began = Instant::now();
        while runs.load(Ordering::SeqCst) == 0 {
            assert!(began.elapsed() < Duration::from_secs(10), "the first run never came");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(task.is_running(), "a panicking run ended the thread");
        assert_eq!(task.name(), "vg-test-prompt");
        task.stop();
        assert!(began.elapsed() < Duration::from_secs(60), "the stop waited out the interval");
        assert_eq!(Arc::strong_count(&runs), 1, "the thread let go of what it ran");
    }

    #[test]
    fn a_stuck_run_is_left_behind_after_the_bound() {
        let (release_tx, release) = mpsc::channel::<()>();
        let (entered_tx, entered) = mpsc::channel::<()>();
        let task = PeriodicTask::start("vg-test-stuck", LONG, Duration::from_millis(50), move || {
            let _ = entered_tx.send(());
            let _ = release.recv(); // stuck until the test lets go
        })
        .unwrap();
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        let began = Instant::now();
        drop(task);
        assert!(began.elapsed() < Duration::from_secs(10), "the drop waited for the stuck run");
        drop(release_tx); // the run ends, and with it the thread
    }
}
