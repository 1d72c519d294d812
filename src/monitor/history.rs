//! A bounded ring of past entries: the monitor keeps the last N readings per device, so that its
//! memory use does not grow with uptime.
use std::collections::VecDeque;

pub(crate) struct History<T> {
    entries: VecDeque<T>,
    capacity: usize,
}

impl<T: Clone> History<T> {
    /// `capacity` is validated to be at least 1 by the monitor's config.
    pub(crate) fn new(capacity: usize) -> History<T> {
        History { entries: VecDeque::with_capacity(capacity.min(1024)), capacity: capacity.max(1) }
    }

    /// Appends `entry`, dropping the oldest when full.
    pub(crate) fn push(&mut self, entry: T) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Copies, oldest first.
    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.entries.iter().cloned().collect()
    }

    pub(crate) fn last(&self) -> Option<&T> {
        self.entries.back()
    }
}
