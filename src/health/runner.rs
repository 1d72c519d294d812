//! Runs the health monitor's checks in the background: the first at once, then every interval.
//! The thread waits on a condition variable, so dropping the handle stops it at once and joins
//! it — but never waits on a check stuck in a hung device longer than the check's deadline and a
//! grace second: then the thread is left to finish on its own, and the drop returns.
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

use super::monitor::HealthMonitor;

#[derive(Default)]
struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
}

/// The background checks; dropping it stops and joins them.
pub struct HealthHandle {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
    /// Closed when the thread ends: lets the drop wait with a deadline.
    ended: mpsc::Receiver<()>,
    join_within: Duration,
}

impl std::fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHandle").field("running", &self.thread.is_some()).finish()
    }
}

impl HealthMonitor {
    /// Starts periodic checks on a background thread.
    pub fn start(self: &Arc<Self>) -> Result<HealthHandle> {
        let stop = Arc::new(Stop::default());
        let (monitor, thread_stop) = (Arc::clone(self), Arc::clone(&stop));
        let interval = self.config().interval;
        let join_within = self.config().check_deadline + Duration::from_secs(1);
        let (ended_tx, ended) = mpsc::channel::<()>();
        self.owe_verdict_from_now();
        let thread = std::thread::Builder::new()
            .name("vramguard-health".into())
            .spawn(move || loop {
                let _ended = &ended_tx; // dropped when the thread ends, whatever way
                                        // A panic in a check must not kill the service's health thread.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.check_now()));
                let requested = thread_stop.requested.lock().unwrap_or_else(|p| p.into_inner());
                let (requested, _) = thread_stop
                    .wake
                    .wait_timeout_while(requested, interval, |stop| !*stop)
                    .unwrap_or_else(|p| p.into_inner());
                if *requested {
                    return;
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the health thread: {e}")))?;
        Ok(HealthHandle { stop, thread: Some(thread), ended, join_within })
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        *self.stop.requested.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            match self.ended.recv_timeout(self.join_within) {
                Err(mpsc::RecvTimeoutError::Timeout) => tracing::error!(
                    actor = crate::events::ACTOR_WORKER, action = "health_stop", target = "worker", error_kind = "timeout",
                    human = %format!("The health check thread did not stop within {:?} (a hung GPU?); leaving it behind", self.join_within),
                ),
                _ => drop(thread.join()),
            }
        }
    }
}
