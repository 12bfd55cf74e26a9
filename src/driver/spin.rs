//! The busy-loop detector: a read or write callback that runs again and again without
//! touching the socket (asyncore's classic: `writable()` true with nothing to write).

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::Entry;
use crate::channel::Channel;
use crate::event::Event;

/// Consecutive read or write callbacks that leave the socket untouched before the reactor calls
/// the channel busy-looping.
pub(crate) const SPIN_THRESHOLD: u32 = 1024;
/// At most one busy-loop warning per channel per this interval.
const SPIN_WARNING_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Spin {
    count: Cell<u32>,
    last_warning: Cell<Option<Instant>>,
}

impl Spin {
    /// Read or write callbacks in a row that left the socket untouched.
    pub(super) fn count(&self) -> u32 {
        self.count.get()
    }
}

impl Entry {
    /// Counts a read or write callback that left the socket untouched; a callback that
    /// touched it (nearly all) resets the count, inlined.
    #[inline]
    pub(super) fn count_spin(&self, ch: &Channel, event: Event) {
        if ch.progress {
            self.spin.count.set(0);
        } else {
            self.count_idle_callback(event);
        }
    }

    fn count_idle_callback(&self, event: Event) {
        let spin = &self.spin;
        let spins = spin.count.get().wrapping_add(1);
        spin.count.set(spins);
        if spins % SPIN_THRESHOLD != 0 {
            return;
        }
        let now = Instant::now();
        if spin
            .last_warning
            .get()
            .is_some_and(|last| now.duration_since(last) < SPIN_WARNING_INTERVAL)
        {
            return;
        }
        spin.last_warning.set(Some(now));
        let predicate = if event == Event::Write {
            "writable"
        } else {
            "readable"
        };
        tracing::warn!(
            channel = %self.id,
            dispatcher = self.type_name,
            "busy loop: {} ran {spins} times in a row without touching the socket; \
             return false from {predicate}() while there is nothing to do",
            event.callback(),
        );
    }
}
