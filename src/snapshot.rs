//! What a map looks like right now: [`MapSnapshot`], one [`ChannelSnapshot`] per channel, and
//! the map's [`Totals`]; and [`Buffered`], what a dispatcher reports of its own buffers.
//!
//! A snapshot is taken on demand, from the map's thread with
//! [`Map::snapshot`](crate::Map::snapshot) or from any thread with
//! [`MapHandle::snapshot`](crate::MapHandle::snapshot). The reactor keeps only what costs no
//! more than a counter on paths that run anyway (callbacks run, bytes moved, the interest last
//! asked, the readiness last seen); everything else (times, verdicts) is worked out when a
//! snapshot is taken, by comparing it with the one before.

use std::fmt;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::event::{ChannelId, Interest, InterestScope, Ready};

/// What a dispatcher holds in its own buffers, for snapshots: bytes taken from the socket and
/// not yet handled, bytes queued to send, and the water marks of the output queue.
///
/// The reactor cannot see inside a dispatcher; [`Dispatcher::buffered`](crate::Dispatcher::buffered)
/// reports this, and its default reports nothing (`None` everywhere). asynchat's
/// [`AsyncChat`](crate::chat::AsyncChat) reports its framer's unparsed input and its output
/// queue; a dispatcher built on a [`SendBuffer`](crate::SendBuffer) reports it with
/// [`SendBuffer::buffered`](crate::SendBuffer::buffered):
///
/// ```
/// use asyncore::{Buffered, Channel, Dispatcher, SendBuffer};
///
/// struct Echo { out: SendBuffer }
///
/// impl Dispatcher for Echo {
///     fn buffered(&self, _: &Channel) -> Buffered {
///         self.out.buffered()
///     }
/// }
///
/// let mut out = SendBuffer::new();
/// out.push(&b"hello"[..]);
/// let report = Echo { out }.out.buffered();
/// assert_eq!(report.output, Some(5));
/// assert_eq!(report.input, None);
/// assert_eq!(Buffered::default().input(3).input, Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Buffered {
    /// Bytes read from the socket and not yet handled (asynchat: input the framer has not
    /// split yet), or `None` if the dispatcher does not say.
    pub input: Option<usize>,
    /// Bytes queued to send, or `None` if the dispatcher does not say.
    pub output: Option<usize>,
    /// The output queue's water marks `(low, high)`, if it has them.
    pub water_marks: Option<(usize, usize)>,
    /// Whether the output queue is paused: above the high mark and not yet back to the low one.
    pub paused: bool,
}

impl Buffered {
    /// `self` with `bytes` of unhandled input.
    pub fn input(mut self, bytes: usize) -> Buffered {
        self.input = Some(bytes);
        self
    }

    /// `self` with `bytes` of queued output.
    pub fn output(mut self, bytes: usize) -> Buffered {
        self.output = Some(bytes);
        self
    }

    /// `self` with the output queue's water marks and whether it is paused.
    pub fn water_marks(mut self, low: usize, high: usize, paused: bool) -> Buffered {
        self.water_marks = Some((low, high));
        self.paused = paused;
        self
    }

    /// Input and output bytes together (what is known of them).
    pub fn total(&self) -> usize {
        self.input.unwrap_or(0) + self.output.unwrap_or(0)
    }
}

/// Where a channel is in its life, as a snapshot saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelState {
    /// Neither listening nor connected: a fresh or bound socket, or a datagram socket without
    /// a peer.
    Unconnected,
    /// A `connect` is under way (the reactor waits for writability to complete it).
    Connecting,
    /// Listening: read events are `handle_accept`.
    Accepting,
    /// Connected (accepted, adopted, or its connect completed).
    Connected,
    /// `handle_close` has run and the channel is still open, flushing a goodbye.
    Closing,
    /// One of the channel's callbacks is running: the snapshot was taken from inside it, and
    /// the channel's own fields (descriptor, peer, bytes) could not be looked at.
    Busy,
}

impl ChannelState {
    /// A short lower-case name: `connecting`, `accepting`, `connected`, …
    pub fn name(self) -> &'static str {
        match self {
            ChannelState::Unconnected => "unconnected",
            ChannelState::Connecting => "connecting",
            ChannelState::Accepting => "accepting",
            ChannelState::Connected => "connected",
            ChannelState::Closing => "closing",
            ChannelState::Busy => "busy",
        }
    }
}

impl fmt::Display for ChannelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One channel of a [`MapSnapshot`].
///
/// Counters (`callbacks`, `bytes_received`, `bytes_sent`) count from the moment the channel
/// was made; rates come from comparing two snapshots (the `top` example does). Times and
/// verdicts that need a history (`idle`, `stalled`, and part of `spinning`) are worked out
/// against the map's previous snapshot, whoever took it: they are as precise as snapshots are
/// frequent, and unknown (`None`, `false`) for a channel no earlier snapshot saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelSnapshot {
    /// The channel's id.
    pub id: ChannelId,
    /// The dispatcher's type name, as `std::any::type_name` spells it (see
    /// [`dispatcher_name`](ChannelSnapshot::dispatcher_name) for a short form).
    pub dispatcher: &'static str,
    /// The socket's file descriptor (`None` once closed, or while [`ChannelState::Busy`]).
    pub fd: Option<RawFd>,
    /// asyncore's `addr`: the peer of an accepted or connected channel, the address a listener
    /// was bound to.
    pub peer: Option<Address>,
    /// Where the channel is in its life.
    pub state: ChannelState,
    /// The peer has finished sending (end of file seen): the channel no longer reads.
    pub eof: bool,
    /// When the reactor asks the channel's interest again
    /// ([`Dispatcher::interest_scope`](crate::Dispatcher::interest_scope)).
    pub scope: InterestScope,
    /// The interest the dispatcher gave when it was last asked (`readable()`, `writable()`):
    /// what the channel waits for.
    pub interest: Interest,
    /// Whether the channel's task is waiting for that interest right now (rather than running,
    /// or about to ask again).
    pub waiting: bool,
    /// The readiness the reactor last saw for the channel (what woke it, or what a lock-step
    /// pass found).
    pub ready: Ready,
    /// What the dispatcher reports of its own buffers
    /// ([`Dispatcher::buffered`](crate::Dispatcher::buffered)).
    pub buffered: Buffered,
    /// Bytes the channel received (`recv` and friends), since it was made.
    pub bytes_received: u64,
    /// Bytes the channel sent (`send` and friends), since it was made.
    pub bytes_sent: u64,
    /// Callbacks the reactor ran on the channel (every `handle_*`, completions included).
    pub callbacks: u64,
    /// How long the channel has run no callback, at least: the time since the earliest
    /// snapshot that saw its current callback count (zero if the count changed since the
    /// previous snapshot). `None` when no earlier snapshot saw the channel.
    pub idle: Option<Duration>,
    /// Time left until the channel's deadline ([`Channel::set_timeout`](crate::Channel::set_timeout)),
    /// zero if it has passed and `handle_timeout` is due.
    pub deadline: Option<Duration>,
    /// Read or write callbacks in a row that left the socket untouched (the busy-loop
    /// detector's count; back to zero as soon as a callback reads or writes).
    pub spins: u32,
    /// The busy-loop detector's verdict: the channel runs callbacks that leave its socket
    /// untouched, over and over (asyncore's classic: `writable()` true with nothing to write).
    /// It says so at `WARN` too.
    pub spinning: bool,
    /// The channel has something to do and does not get to do it: it waits to write, or holds
    /// queued output or unhandled input, and no callback ran since the previous snapshot (a
    /// peer that stopped reading, a reader that stopped, a connect that hangs).
    pub stalled: bool,
}

impl ChannelSnapshot {
    /// The dispatcher's type name without module paths: `AsyncChat<ChatHandler>` for
    /// `asyncore::chat::adapter::AsyncChat<chat_server::ChatHandler>`.
    pub fn dispatcher_name(&self) -> String {
        short_type_name(self.dispatcher)
    }
}

/// The map as a whole, in a [`MapSnapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Channels in the map.
    pub channels: usize,
    /// Native member tasks ([`Map::spawn`](crate::Map::spawn)).
    pub members: usize,
    /// Callbacks the map ran since it was made, closed channels' included.
    pub callbacks: u64,
    /// Bytes the map's channels received since the map was made, closed channels' included.
    pub bytes_received: u64,
    /// Bytes the map's channels sent since the map was made, closed channels' included.
    pub bytes_sent: u64,
    /// Queued output the dispatchers report, summed.
    pub output_queued: u64,
    /// Channels whose verdict is [`spinning`](ChannelSnapshot::spinning).
    pub spinning: usize,
    /// Channels whose verdict is [`stalled`](ChannelSnapshot::stalled).
    pub stalled: usize,
    /// Whether a run or a lock-step pass was under way.
    pub running: bool,
}

/// Rates between two snapshots of one map ([`MapSnapshot::rates_since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Rates {
    /// Seconds between the two snapshots.
    pub seconds: f64,
    /// Callbacks per second.
    pub callbacks: f64,
    /// Bytes received per second.
    pub bytes_received: f64,
    /// Bytes sent per second.
    pub bytes_sent: f64,
}

/// Every channel of a map and the map's totals, at one moment
/// ([`Map::snapshot`](crate::Map::snapshot), [`MapHandle::snapshot`](crate::MapHandle::snapshot)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use asyncore::{Channel, ChannelState, Dispatcher, Interest, Map};
///
/// struct Quiet;
/// impl Dispatcher for Quiet {
///     fn writable(&self, _: &Channel) -> bool { false }
/// }
///
/// let map = Map::new();
/// let (ours, _theirs) = tokio::net::UnixStream::pair()?;
/// let id = map.add(Channel::from_unix(ours), Quiet)?;
/// map.run_until(tokio::task::yield_now()).await?; // the channel's task asks and waits
/// let snapshot = map.snapshot();
/// let channel = snapshot.channel(id).expect("in the map");
/// assert_eq!(channel.state, ChannelState::Connected);
/// assert_eq!(channel.interest, Interest::READ);
/// assert!(channel.waiting && !channel.spinning);
/// assert_eq!(snapshot.totals.channels, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MapSnapshot {
    /// When it was taken.
    pub taken: Instant,
    /// Every channel, in ascending id order.
    pub channels: Vec<ChannelSnapshot>,
    /// The map as a whole.
    pub totals: Totals,
}

impl MapSnapshot {
    /// Channel `id`, if it was in the map.
    pub fn channel(&self, id: ChannelId) -> Option<&ChannelSnapshot> {
        self.channels
            .binary_search_by_key(&id, |channel| channel.id)
            .ok()
            .map(|at| &self.channels[at])
    }

    /// The map's rates between `earlier` (a snapshot of the same map) and this one.
    pub fn rates_since(&self, earlier: &MapSnapshot) -> Rates {
        let seconds = self
            .taken
            .saturating_duration_since(earlier.taken)
            .as_secs_f64();
        let per_second = |now: u64, then: u64| {
            if seconds > 0.0 {
                now.saturating_sub(then) as f64 / seconds
            } else {
                0.0
            }
        };
        Rates {
            seconds,
            callbacks: per_second(self.totals.callbacks, earlier.totals.callbacks),
            bytes_received: per_second(self.totals.bytes_received, earlier.totals.bytes_received),
            bytes_sent: per_second(self.totals.bytes_sent, earlier.totals.bytes_sent),
        }
    }
}

/// `std::any::type_name` without module paths: `a::b::C<d::E, F>` becomes `C<E, F>`.
pub(crate) fn short_type_name(name: &str) -> String {
    ShortTypeName(name).to_string()
}

/// Displays a type name without module paths (see [`short_type_name`]), without allocating:
/// what a channel's span shows as its `dispatcher`.
pub(crate) struct ShortTypeName<'a>(pub(crate) &'a str);

impl fmt::Display for ShortTypeName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each path segment ends at `::`; only the last segment before a delimiter is shown.
        let mut segment = 0;
        for (at, c) in self.0.char_indices() {
            match c {
                ':' => segment = at + 1,
                '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | ';' | '&' | '*' => {
                    f.write_str(&self.0[segment..at])?;
                    f.write_str(&self.0[at..at + 1])?;
                    segment = at + 1;
                }
                _ => {}
            }
        }
        f.write_str(&self.0[segment..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(
            short_type_name("asyncore::chat::adapter::AsyncChat<chat_server::ChatHandler>"),
            "AsyncChat<ChatHandler>"
        );
        assert_eq!(short_type_name("echo_server::EchoHandler"), "EchoHandler");
        assert_eq!(
            short_type_name("a::B<c::D, (e::F, &g::H)>"),
            "B<D, (F, &H)>"
        );
        assert_eq!(short_type_name("Plain"), "Plain");
    }

    #[test]
    fn buffered_builds_up() {
        let report = Buffered::default()
            .input(2)
            .output(10)
            .water_marks(4, 16, false);
        assert_eq!(report.total(), 12);
        assert_eq!(report.water_marks, Some((4, 16)));
        assert_eq!(Buffered::default().total(), 0);
    }
}
