//! The loop's state, as every channel task of one map sees it: whether the loop runs freely,
//! whether a callback asked it to stop, who to wake when that changes, and whether callbacks
//! have run since the channels' interest was last checked.
//!
//! It is the bottom of the reactor: the driver reads it before every wait and every callback,
//! the map's run loops write it. It knows nothing of channels or maps, so both can hold it.

use std::cell::{Cell, RefCell};
use std::io;
use std::task::{Context, Poll, Waker};

/// The state one map's loop shares with its channel tasks (behind an `Rc`, so that the hot path
/// reads it without upgrading a `Weak` to the map).
#[derive(Default)]
pub(crate) struct LoopState {
    /// Channel tasks wait instead of dispatching: during lock-step passes, after `ExitNow` until
    /// the next run, and once the map is gone.
    paused: Cell<bool>,
    /// A callback returned `ExitNow` (or the map is gone): no more callbacks until the loop has
    /// returned it. Read before the exit slot, which it guards.
    exiting: Cell<bool>,
    exit: RefCell<Option<io::Error>>,
    /// The task running the loop (`Map::run` and friends), woken when the loop must look again:
    /// the map emptied, or a callback stopped it.
    runner: RefCell<Option<Waker>>,
    /// How many channels have [`InterestScope::Shared`](crate::InterestScope::Shared), whose
    /// interest may change whenever any callback runs.
    shared_channels: Cell<usize>,
    /// Callbacks ran since the interest sweep last looked.
    touched: Cell<bool>,
    /// The interest sweep's task, woken when `touched` becomes true.
    sweeper: Cell<Option<Waker>>,
}

impl LoopState {
    #[inline]
    pub(crate) fn paused(&self) -> bool {
        self.paused.get()
    }

    pub(crate) fn set_paused(&self, paused: bool) -> bool {
        self.paused.replace(paused)
    }

    #[inline]
    pub(crate) fn exiting(&self) -> bool {
        self.exiting.get()
    }

    /// A callback returned `ExitNow`: pause every channel and let the running loop return it.
    pub(crate) fn exit(&self, error: io::Error) {
        self.paused.set(true);
        self.exiting.set(true);
        *self.exit.borrow_mut() = Some(error);
        self.wake_runner();
    }

    /// The `ExitNow` a callback returned, if any; the loop may run again afterwards.
    #[inline]
    pub(crate) fn take_exit(&self) -> Option<io::Error> {
        if !self.exiting.replace(false) {
            return None;
        }
        self.exit.take()
    }

    /// The map is gone: nothing runs any more.
    pub(crate) fn end(&self) {
        self.paused.set(true);
        self.exiting.set(true);
    }

    /// Makes the running loop's task the one [`wake_runner`](LoopState::wake_runner) wakes;
    /// true when it already was (its waker unchanged since the last poll).
    ///
    /// Inlined: at one message per wake-up, the loop's task is polled once per message.
    #[inline]
    pub(crate) fn register_runner(&self, cx: &Context<'_>) -> bool {
        let mut slot = self.runner.borrow_mut();
        let known = slot.as_ref().is_some_and(|w| same_waker(w, cx.waker()));
        if !known {
            *slot = Some(cx.waker().clone());
        }
        known
    }

    pub(crate) fn wake_runner(&self) {
        if let Some(waker) = self.runner.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    /// A channel with [`InterestScope::Shared`](crate::InterestScope::Shared) joined the map.
    pub(crate) fn shared_joined(&self) {
        self.shared_channels.set(self.shared_channels.get() + 1);
    }

    /// `n` channels with [`InterestScope::Shared`](crate::InterestScope::Shared) left the map.
    pub(crate) fn shared_left(&self, n: usize) {
        self.shared_channels
            .set(self.shared_channels.get().saturating_sub(n));
    }

    /// A callback ran (or native code ran on the map's thread): the state some channel's
    /// `readable()` or `writable()` reads may have changed, so the interest sweep must look.
    /// One test when no channel's interest depends on shared state.
    #[inline]
    pub(crate) fn touch(&self) {
        if self.shared_channels.get() != 0 && !self.touched.replace(true) {
            if let Some(waker) = self.sweeper.take() {
                waker.wake();
            }
        }
    }

    /// The sweep's wait: ready once something was touched (and clears that), or `Pending` with
    /// the sweep registered for the next touch.
    pub(crate) fn poll_touched(&self, cx: &Context<'_>) -> Poll<()> {
        if self.touched.replace(false) {
            return Poll::Ready(());
        }
        self.sweeper.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Whether `known` (a clone we hold) wakes what `waker` wakes. `Waker::will_wake` compares
/// vtable addresses too, and a clone may carry a duplicate vtable (Tokio's `block_on` waker
/// does), so it answers "no" on every poll and the waker would be cloned and registered again
/// on each of the map's wake-ups. The data pointer of a waker whose clone we still hold names
/// a live target that no other object can share.
pub(crate) fn same_waker(known: &Waker, waker: &Waker) -> bool {
    known.will_wake(waker) || (!known.data().is_null() && known.data() == waker.data())
}
