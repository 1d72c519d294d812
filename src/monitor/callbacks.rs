//! Listener lists whose members may panic: each call is contained, so that one faulty listener
//! can stop neither the monitor's thread nor the listeners after it.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::lock;

type Callback<T> = Arc<dyn Fn(&T) + Send + Sync>;

pub(crate) struct Callbacks<T> {
    list: Mutex<Vec<Callback<T>>>,
}

impl<T> Callbacks<T> {
    pub(crate) fn new() -> Callbacks<T> {
        Callbacks { list: Mutex::new(Vec::new()) }
    }

    pub(crate) fn add(&self, callback: impl Fn(&T) + Send + Sync + 'static) {
        lock(&self.list).push(Arc::new(callback));
    }

    /// Calls every listener in the order added, outside the list's lock (a listener may add
    /// another or read the monitor), adding each panic to `panics`.
    pub(crate) fn fire(&self, event: &T, panics: &AtomicU64) {
        let list = lock(&self.list).clone();
        for callback in list {
            if contain(|| callback(event)).is_none() {
                panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs `f`; `None` if it panicked.
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}
