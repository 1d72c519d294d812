//! Callback lists whose members may panic. Every call is contained: a panicking callback unwinds
//! into neither its caller (a slot eviction, a monitor check, a reservation) nor the callbacks
//! after it, and is counted, so that a faulty listener shows in the owner's statistics instead of
//! stopping it. The slot manager, the GPU monitor and the reservation guard each hold their
//! listeners in one of these.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

type Callback<T> = Arc<dyn Fn(&T) + Send + Sync>;

/// Listeners of events of type `T`, called in the order added.
pub(crate) struct Callbacks<T: ?Sized> {
    list: RwLock<Vec<Callback<T>>>,
    panics: AtomicU64,
}

impl<T: ?Sized> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks { list: RwLock::new(Vec::new()), panics: AtomicU64::new(0) }
    }
}

impl<T: ?Sized> Callbacks<T> {
    pub(crate) fn new() -> Callbacks<T> {
        Callbacks::default()
    }

    pub(crate) fn add(&self, callback: impl Fn(&T) + Send + Sync + 'static) {
        self.list.write().unwrap_or_else(PoisonError::into_inner).push(Arc::new(callback));
    }

    /// Calls every listener with `event`, outside the list's lock (a listener may add another, or
    /// read its owner), each panic contained and counted.
    pub(crate) fn fire(&self, event: &T) {
        let list = self.list.read().unwrap_or_else(PoisonError::into_inner).clone();
        for callback in list {
            if contain(|| callback(event)).is_none() {
                self.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Panics contained so far.
    pub(crate) fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }
}

/// Runs `f`; `None` if it panicked. Every call into code the crate does not own goes through
/// here or through [`Callbacks::fire`].
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_listener_is_counted_and_the_next_one_still_runs() {
        let callbacks = Callbacks::<u32>::new();
        let seen = Arc::new(AtomicU64::new(0));
        callbacks.add(|_| panic!("listener bug"));
        let sink = Arc::clone(&seen);
        callbacks.add(move |n| {
            sink.fetch_add(u64::from(*n), Ordering::SeqCst);
        });
        callbacks.fire(&2);
        callbacks.fire(&3);
        assert_eq!((callbacks.panics(), seen.load(Ordering::SeqCst)), (2, 5));
    }

    #[test]
    fn a_listener_may_add_another_while_firing() {
        let callbacks = Arc::new(Callbacks::<()>::new());
        let inner = Arc::downgrade(&callbacks);
        callbacks.add(move |_| inner.upgrade().unwrap().add(|_| {}));
        callbacks.fire(&());
        assert_eq!(callbacks.list.read().unwrap().len(), 2);
        assert_eq!(contain(|| 7), Some(7));
        assert_eq!(contain(|| -> u8 { panic!("contained") }), None);
    }
}
