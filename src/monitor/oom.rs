//! O2: the out-of-memory hook. An allocation site hands its error to the hook, which counts it
//! and, when a dump directory is configured, writes a dump with the error inside, while the
//! state that led to it is still there to be seen.
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::dump_file::write_json;
use super::gpu_monitor::GpuMonitor;
use super::lock;
use crate::error::Error;

impl GpuMonitor {
    /// A hook to call with allocation errors. It acts on [`Error::OutOfMemory`] only (other
    /// errors are ignored, so it can be called with any error): counts it in
    /// [`GpuMonitor::ooms_seen`] and writes a dump to `dump_dir` (the path is kept in
    /// [`GpuMonitor::last_dump`], a write failure in [`GpuMonitor::last_error`]). It holds the
    /// monitor weakly, so it neither keeps the monitor alive nor fails once it is gone.
    pub fn oom_hook(self: &Arc<Self>) -> impl Fn(&Error) + Send + Sync + 'static {
        let monitor: Weak<GpuMonitor> = Arc::downgrade(self);
        move |error: &Error| {
            if let Some(monitor) = monitor.upgrade() {
                monitor.on_out_of_memory(error);
            }
        }
    }

    fn on_out_of_memory(&self, error: &Error) {
        if !matches!(error, Error::OutOfMemory(_)) {
            return;
        }
        self.counters.ooms_seen.fetch_add(1, Ordering::Relaxed);
        let Some(dir) = &self.config.dump_dir else { return };
        let mut dump = self.dump_json();
        dump["trigger"] = "out_of_memory".into();
        dump["error"] = error.to_json();
        match write_json(dir, &dump) {
            Ok(path) => *lock(&self.last_dump) = Some(path),
            Err(failure) => self.record_error(failure),
        }
    }
}
