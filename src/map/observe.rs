//! Snapshots of the map ([`Map::snapshot`]): each channel as its entry shows it, what needs a
//! history (how long a channel has been quiet, whether it is stalled or still spinning) from
//! the previous snapshot, and the totals, closed channels included.
//!
//! Nothing here runs unless someone takes a snapshot: the history is made by the first one.

use std::rc::Rc;
use std::time::Instant;

use super::{Map, MapInner};
use crate::channel::Traffic;
use crate::driver::{Entry, Observed};
use crate::event::ChannelId;
use crate::snapshot::{ChannelSnapshot, ChannelState, MapSnapshot, Totals};

/// What closed channels did in their lives.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Retired {
    callbacks: u64,
    traffic: Traffic,
}

/// What the previous snapshot saw of each channel, in ascending id order.
#[derive(Default)]
pub(super) struct Observer {
    seen: Vec<Seen>,
}

#[derive(Clone, Copy)]
struct Seen {
    id: ChannelId,
    callbacks: u64,
    /// The earliest snapshot that saw `callbacks` at this count.
    since: Instant,
}

impl MapInner {
    /// A channel left with `traffic` bytes moved (called once per channel, by its close).
    pub(super) fn retire_traffic(&self, traffic: Traffic) {
        let mut retired = self.retired.get();
        retired.traffic.received += traffic.received;
        retired.traffic.sent += traffic.sent;
        self.retired.set(retired);
    }

    /// `entry` left the map: its callbacks join the totals of closed channels.
    pub(super) fn retire_callbacks(&self, entry: &Entry) {
        let mut retired = self.retired.get();
        retired.callbacks += entry.callbacks();
        self.retired.set(retired);
    }
}

impl Map {
    /// Every channel of the map and the map's totals, now: id, dispatcher, descriptor, peer,
    /// state, interest and the readiness last seen, what the dispatcher reports of its buffers
    /// ([`Dispatcher::buffered`](crate::Dispatcher::buffered)), bytes moved, callbacks run and
    /// for how long none has run, the deadline, and the verdicts (spinning, stalled). What a
    /// `top` for the reactor shows (`examples/top.rs`); from another thread,
    /// [`MapHandle::snapshot`](crate::MapHandle::snapshot).
    ///
    /// Callable anywhere on the map's thread, while it runs or not, from a callback too (the
    /// calling channel then shows as [`ChannelState::Busy`]). It costs under a microsecond
    /// per channel (about 4–7 ms for 10,000, `cargo bench --bench snapshot`) and nothing when
    /// nobody takes one: the reactor only keeps counters.
    ///
    /// Times and verdicts that need a history compare this snapshot with the previous one,
    /// whoever took it; see [`ChannelSnapshot`].
    pub fn snapshot(&self) -> MapSnapshot {
        let inner = self.inner();
        let taken = Instant::now();
        // Out of the map while user code (`buffered()`) runs: a recursive snapshot finds none.
        let mut observer = inner.observer.borrow_mut().take().unwrap_or_default();
        let previous = std::mem::take(&mut observer.seen);
        let mut previous = previous.into_iter().peekable();
        let entries: Vec<Rc<Entry>> = inner.snapshot();
        let retired = inner.retired.get();
        let mut totals = Totals {
            channels: entries.len(),
            members: inner.members.borrow().len(),
            callbacks: retired.callbacks,
            bytes_received: retired.traffic.received,
            bytes_sent: retired.traffic.sent,
            running: inner.running.get(),
            ..Totals::default()
        };
        let mut channels = Vec::with_capacity(entries.len());
        observer.seen.reserve(entries.len());
        for entry in entries {
            let seen = entry.observe();
            while previous.next_if(|before| before.id < seen.id).is_some() {}
            let before = previous.next_if(|before| before.id == seen.id);
            // No callback since the previous snapshot: the channel has been quiet since the
            // earliest snapshot that saw its count.
            let quiet_since = before
                .filter(|before| before.callbacks == seen.callbacks)
                .map(|before| before.since);
            observer.seen.push(Seen {
                id: seen.id,
                callbacks: seen.callbacks,
                since: quiet_since.unwrap_or(taken),
            });
            let channel = judge(seen, before.is_some(), quiet_since, taken);
            totals.callbacks += channel.callbacks;
            totals.bytes_received += channel.bytes_received;
            totals.bytes_sent += channel.bytes_sent;
            totals.output_queued += channel.buffered.output.unwrap_or(0) as u64;
            totals.spinning += usize::from(channel.spinning);
            totals.stalled += usize::from(channel.stalled);
            channels.push(channel);
        }
        *inner.observer.borrow_mut() = Some(observer);
        MapSnapshot {
            taken,
            channels,
            totals,
        }
    }
}

/// A channel's snapshot, with what the previous snapshot tells (whether it saw the channel;
/// since when the channel has run no callback, if it ran none since then): how long it has
/// been quiet, and whether it is stalled or still spinning.
fn judge(
    seen: Observed,
    seen_before: bool,
    quiet_since: Option<Instant>,
    taken: Instant,
) -> ChannelSnapshot {
    let quiet = quiet_since.is_some();
    let idle = match quiet_since {
        Some(since) => Some(taken.saturating_duration_since(since)),
        None if seen_before => Some(std::time::Duration::ZERO),
        None => None,
    };
    let has_work = seen.interest.is_write()
        || seen.buffered.output.unwrap_or(0) > 0
        || seen.buffered.input.unwrap_or(0) > 0;
    let traffic = seen.traffic.unwrap_or_default();
    ChannelSnapshot {
        id: seen.id,
        dispatcher: seen.dispatcher,
        fd: seen.fd,
        peer: seen.peer,
        state: seen.state,
        eof: seen.eof,
        scope: seen.scope,
        interest: seen.interest,
        waiting: seen.waiting,
        ready: seen.ready,
        buffered: seen.buffered,
        bytes_received: traffic.received,
        bytes_sent: traffic.sent,
        callbacks: seen.callbacks,
        idle,
        deadline: seen.deadline,
        spins: seen.spins,
        // The detector's count stays where it is once a channel stops calling back (it is
        // reset only by a callback that touches the socket): a quiet channel is not spinning.
        spinning: seen.spin_verdict && !quiet,
        stalled: quiet && has_work && seen.state != ChannelState::Busy,
    }
}
