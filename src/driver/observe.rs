//! What a snapshot reads of a channel ([`Entry::observe`]), what the task records for it on
//! its way (the interest asked, the readiness seen: one `Cell` write each, and a `TRACE`
//! event), and the channel's span for what runs outside its task.

use std::time::Duration;

use super::Entry;
use crate::address::Address;
use crate::channel::Traffic;
use crate::event::{ChannelId, Interest, InterestScope, Ready};
use crate::snapshot::{Buffered, ChannelState};

/// One channel as the map's thread sees it right now; the map adds what needs a history.
pub(crate) struct Observed {
    pub(crate) id: ChannelId,
    pub(crate) dispatcher: &'static str,
    pub(crate) scope: InterestScope,
    pub(crate) fd: Option<std::os::fd::RawFd>,
    pub(crate) peer: Option<Address>,
    pub(crate) state: ChannelState,
    pub(crate) eof: bool,
    pub(crate) interest: Interest,
    pub(crate) waiting: bool,
    pub(crate) ready: Ready,
    pub(crate) buffered: Buffered,
    /// `None` while one of the channel's callbacks holds it.
    pub(crate) traffic: Option<Traffic>,
    pub(crate) callbacks: u64,
    pub(crate) deadline: Option<Duration>,
    pub(crate) spins: u32,
    /// The detector's count has reached its threshold.
    pub(crate) spin_verdict: bool,
}

impl Entry {
    /// The task asked for `want` and is about to wait for it (or to dispatch buffered input).
    #[inline]
    pub(crate) fn asked(&self, want: Interest) {
        self.want.set(want);
        tracing::trace!(channel = %self.id, "wants {want:?}");
    }

    /// Readiness `ready` arrived for the channel (or buffered input stands for it).
    #[inline]
    pub(crate) fn saw(&self, ready: Ready) {
        self.seen.set(ready);
        tracing::trace!(channel = %self.id, "ready {ready:?}");
    }

    /// Callbacks run on the channel so far.
    pub(crate) fn callbacks(&self) -> u64 {
        self.callbacks.get()
    }

    /// Enters the channel's span, if it has one, for code that runs a callback (or asks
    /// `readable()`/`writable()`) from outside the channel's task: the interest sweep, a
    /// lock-step pass, `Map::with`, a graceful shutdown's `handle_close`. One test when the
    /// channel is not traced.
    #[inline]
    pub(crate) fn enter_span(&self) -> Option<tracing::span::EnteredSpan> {
        if !self.traced {
            return None;
        }
        self.span().map(tracing::Span::entered)
    }

    /// The channel's span, if it has one.
    pub(crate) fn span(&self) -> Option<tracing::Span> {
        self.rare.borrow().as_ref()?.span.clone()
    }

    /// What a snapshot shows of the channel now.
    pub(crate) fn observe(&self) -> Observed {
        let mut seen = Observed {
            id: self.id,
            dispatcher: self.type_name,
            scope: self.scope,
            fd: None,
            peer: None,
            state: ChannelState::Busy,
            eof: false,
            interest: self.want.get(),
            waiting: self.waiting.get(),
            ready: self.seen.get(),
            buffered: Buffered::default(),
            traffic: None,
            callbacks: self.callbacks.get(),
            deadline: None,
            spins: self.spin.count(),
            spin_verdict: self.spin.count() >= super::spin::SPIN_THRESHOLD,
        };
        let (Ok(channel), Ok(dispatcher)) =
            (self.channel.try_borrow(), self.dispatcher.try_borrow())
        else {
            return seen;
        };
        seen.fd = channel.fileno();
        seen.peer = channel.addr().cloned();
        seen.eof = channel.closing.read_done();
        seen.state = if channel.closing.notified() {
            ChannelState::Closing
        } else if channel.accepting() {
            ChannelState::Accepting
        } else if channel.connecting() {
            ChannelState::Connecting
        } else if channel.connected() {
            ChannelState::Connected
        } else {
            ChannelState::Unconnected
        };
        seen.traffic = Some(channel.traffic);
        seen.deadline = channel
            .deadline()
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()));
        let _span = self.enter_span();
        let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatcher.buffered(&channel)
        }));
        match asked {
            Ok(buffered) => seen.buffered = buffered,
            Err(_) => tracing::warn!(
                channel = %self.id,
                dispatcher = self.type_name,
                "buffered() panicked; the snapshot shows its buffers as unknown"
            ),
        }
        seen
    }
}
