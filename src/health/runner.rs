//! Runs the health monitor's checks in the background: the first at once, then every interval.
//! The thread waits on a condition variable, so dropping the handle stops it at once, and joins it.
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

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
        let thread = std::thread::Builder::new()
            .name("vramguard-health".into())
            .spawn(move || loop {
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
        Ok(HealthHandle { stop, thread: Some(thread) })
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        *self.stop.requested.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
