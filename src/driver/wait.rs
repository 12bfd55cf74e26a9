//! Step 2: the channel task's wait, for the readiness it asked for, its deadline, or a poke.

use std::future::Future;
use std::task::{Context, Poll};

use super::Entry;
use crate::event::{Interest, Ready};
use crate::loop_state::same_waker;

/// Why the channel's task woke.
pub(super) enum Wake {
    Io(Ready),
    Timeout,
    Poked,
}

impl Entry {
    /// Whether the channel is polled though its dispatcher wants nothing (a TLS session).
    pub(crate) fn polls_alone(&self) -> bool {
        self.channel.borrow().polls_alone()
    }

    /// Polls the socket for `want`; `Pending` leaves the caller registered for a wake-up.
    #[inline]
    pub(crate) fn poll_io(&self, cx: &mut Context<'_>, want: Interest) -> Poll<Ready> {
        self.channel.borrow_mut().poll_ready(cx, want)
    }

    /// The channel task's wait: a poke, the deadline, or readiness; nothing but a poke while
    /// the map is paused.
    #[inline]
    pub(super) fn poll_wake(&self, cx: &mut Context<'_>, want: Interest) -> Poll<Wake> {
        if self.poked.take() {
            return Poll::Ready(Wake::Poked);
        }
        if !self.state.paused() {
            let mut channel = self.channel.borrow_mut();
            if let Some(deadline) = channel.deadline() {
                if self.poll_timer(cx, deadline).is_ready() {
                    return Poll::Ready(Wake::Timeout);
                }
            }
            // A TLS channel is polled even when its dispatcher wants nothing: its session may
            // have a handshake to drive or records to flush.
            if !want.is_empty() || channel.polls_alone() {
                if let Poll::Ready(ready) = channel.poll_ready(cx, want) {
                    return Poll::Ready(Wake::Io(ready));
                }
            }
        }
        let waker = self.waker.take();
        self.waker.set(match waker {
            Some(w) if same_waker(&w, cx.waker()) => Some(w),
            _ => Some(cx.waker().clone()),
        });
        Poll::Pending
    }

    fn poll_timer(&self, cx: &mut Context<'_>, deadline: tokio::time::Instant) -> Poll<()> {
        self.with_rare(|rare| {
            let sleep = rare
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            sleep.as_mut().poll(cx)
        })
    }

    /// Wakes the channel's task so that it asks for interest again (or exits, once closed).
    pub(crate) fn poke(&self) {
        self.poked.set(true);
        let waker = self.waker.take();
        if let Some(w) = &waker {
            w.wake_by_ref();
        }
        self.waker.set(waker);
    }
}
