//! The background thread. It waits on a condition variable, not a sleep, so that dropping the
//! handle stops it at once even with a long interval; dropping joins it.
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::gpu_monitor::GpuMonitor;
use super::lock;
use crate::error::{Error, Result};

/// Runs [`GpuMonitor::check_now`] every interval, the first check at once. Dropping it stops
/// and joins the thread. Failed checks are kept in [`GpuMonitor::last_error`].
#[derive(Debug)]
pub struct MonitorHandle {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
}

impl GpuMonitor {
    /// Starts checking in the background. Fails only when the OS cannot start a thread.
    pub fn start(self: &Arc<Self>) -> Result<MonitorHandle> {
        let stop = Arc::new(Stop::default());
        let (monitor, thread_stop) = (Arc::clone(self), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("vramguard-monitor".to_string())
            .spawn(move || run(&monitor, &thread_stop))
            .map_err(|e| Error::Internal(format!("cannot start the monitor thread: {e}")))?;
        Ok(MonitorHandle { stop, thread: Some(thread) })
    }
}

fn run(monitor: &GpuMonitor, stop: &Stop) {
    let interval = monitor.config.interval;
    loop {
        // check_now contains panics and records failures itself.
        let _ = monitor.check_now();
        let requested = lock(&stop.requested);
        let (requested, _) = stop
            .wake
            .wait_timeout_while(requested, interval, |requested| !*requested)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *requested {
            return;
        }
    }
}

impl MonitorHandle {
    /// Stops and joins the thread (what dropping does), for call sites that want it said.
    pub fn stop(self) {}

    /// False once the thread has ended.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|thread| !thread.is_finished())
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        *lock(&self.stop.requested) = true;
        self.stop.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread contains every panic of a check, so join only fails on a bug; Drop must
            // not panic either way.
            let _ = thread.join();
        }
    }
}
