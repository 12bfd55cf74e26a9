//! The vocabulary of the reactor: which channel ([`ChannelId`]) wanted what ([`Interest`]), which
//! readiness fired ([`Ready`]), and which callback ran ([`Event`]).

use std::fmt;
use std::ops::BitOr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The identity of a channel, unique for the life of the process.
///
/// asyncore keys its map by file descriptor, so a socket closed and replaced by a new one with
/// the same fd number in one pass receives the old socket's events (python/cpython#75114). A
/// `ChannelId` is never reused, so a stale id simply finds nothing. The fd is still available
/// through [`Channel::fileno`](crate::Channel::fileno).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(u64);

impl ChannelId {
    pub(crate) fn next() -> ChannelId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ChannelId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The number behind the id (ids count up from 1 in creation order).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

macro_rules! flag_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $flag:ident = $bit:expr, $is:ident, $label:literal;)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(u8);

        impl $name {
            /// Nothing.
            pub const NONE: $name = $name(0);
            $($(#[$fdoc])* pub const $flag: $name = $name($bit);)*

            $(
                #[doc = concat!("Whether `", stringify!($flag), "` is set.")]
                pub const fn $is(self) -> bool {
                    self.0 & $bit != 0
                }
            )*

            /// Whether no flag is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// `self` with the flags of `other` added.
            pub const fn add(self, other: $name) -> $name {
                $name(self.0 | other.0)
            }

            /// `self` without the flags of `other`.
            pub const fn remove(self, other: $name) -> $name {
                $name(self.0 & !other.0)
            }

            /// Whether every flag of `other` is set in `self`.
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }
        }

        impl BitOr for $name {
            type Output = $name;
            fn bitor(self, other: $name) -> $name {
                self.add(other)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.is_empty() {
                    return f.write_str("NONE");
                }
                let mut sep = "";
                $(
                    if self.$is() {
                        write!(f, "{sep}{}", $label)?;
                        sep = "|";
                    }
                )*
                let _ = sep;
                Ok(())
            }
        }
    };
}

flag_set! {
    /// What a channel waits for, from its dispatcher's `readable()` and `writable()`.
    ///
    /// A listening channel never has `WRITE` (asyncore: "accepting sockets should not be
    /// writable"); a connecting channel always has `WRITE`, because writability is how the
    /// connect completes.
    Interest {
        /// The dispatcher's `readable()` returned true.
        READ = 1, is_read, "READ";
        /// The dispatcher's `writable()` returned true (or a connect is pending).
        WRITE = 2, is_write, "WRITE";
    }
}

flag_set! {
    /// The readiness the reactor reported for a channel: asyncore's `r`, `w` and `e` sets.
    Ready {
        /// Readable: data, end of file, a pending connection on a listener, or an error.
        READ = 1, is_read, "READ";
        /// Writable: room in the send buffer, or a connect that finished (or failed).
        WRITE = 2, is_write, "WRITE";
        /// Exceptional: TCP urgent data (asyncore's `e` set, `POLLPRI`).
        EXPT = 4, is_expt, "EXPT";
        /// The channel's TLS session has news for the dispatcher: its handshake completed
        /// (`handle_tls_ready`), or it failed while no callback ran (`handle_error`). No
        /// asyncore counterpart; see [`Channel::start_tls`](crate::Channel::start_tls).
        TLS = 8, is_tls, "TLS";
    }
}

/// What a dispatcher's [`readable`](crate::Dispatcher::readable) and
/// [`writable`](crate::Dispatcher::writable) answers depend on, and so when the reactor asks
/// them again ([`Dispatcher::interest_scope`](crate::Dispatcher::interest_scope)).
///
/// asyncore asks every channel before every `select`. Asking every channel after every callback
/// would cost time in proportion to the map's size; asking a channel only after its own
/// callbacks leaves it waiting for the wrong thing when another dispatcher changed what it
/// depends on (a forwarder whose output buffer the other side fills). The scope says which of
/// the two a dispatcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InterestScope {
    /// The answers may depend on state that other callbacks change (an `Rc<RefCell<_>>`
    /// shared between dispatchers, a global): the channel is asked again after every batch of
    /// callbacks on its map, whoever ran them, as asyncore asks before every poll. The
    /// default, so that a port of asyncore code works unchanged. Costs one
    /// `readable()`/`writable()` call per such channel per batch.
    #[default]
    Shared,
    /// The answers depend only on the dispatcher's own fields and its channel: the channel is
    /// asked again after its own callbacks, after [`Map::with`](crate::Map::with) and handle
    /// calls on it, and after [`Map::wake`](crate::Map::wake) /
    /// [`ChannelHandle::wake`](crate::ChannelHandle::wake). Nothing is asked on other channels'
    /// behalf: the speed of a native Tokio task.
    Own,
}

/// A callback the reactor ran, as reported by [`Pass::events`](crate::Pass::events) and traced
/// at `TRACE` level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// `handle_read`.
    Read,
    /// `handle_write`.
    Write,
    /// `handle_expt`.
    Expt,
    /// `handle_connect`: the connect completed (implied by the first read or write event).
    Connect,
    /// `handle_accept`: a listener became readable.
    Accept,
    /// `handle_read_eof`: the peer finished sending.
    ReadEof,
    /// `handle_close`: end of file, a disconnect error, or an explicit request.
    Close,
    /// `handle_error`: a callback returned an error or panicked.
    Error,
    /// `handle_timeout`: the channel's deadline passed.
    Timeout,
    /// `handle_tls_ready`: the channel's TLS handshake completed.
    TlsReady,
    /// The callback given to [`Channel::spawn`](crate::Channel::spawn) or
    /// [`Channel::call_later`](crate::Channel::call_later), with the work's result.
    Completion,
}

impl Event {
    /// The asyncore name of the callback.
    pub fn callback(self) -> &'static str {
        match self {
            Event::Read => "handle_read",
            Event::Write => "handle_write",
            Event::Expt => "handle_expt",
            Event::Connect => "handle_connect",
            Event::Accept => "handle_accept",
            Event::ReadEof => "handle_read_eof",
            Event::Close => "handle_close",
            Event::Error => "handle_error",
            Event::Timeout => "handle_timeout",
            Event::TlsReady => "handle_tls_ready",
            Event::Completion => "completion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_like_the_reactor_speaks() {
        assert_eq!(
            format!("{:?}", Interest::READ | Interest::WRITE),
            "READ|WRITE"
        );
        assert_eq!(format!("{:?}", Ready::NONE), "NONE");
        assert!((Ready::READ | Ready::EXPT).contains(Ready::EXPT));
        assert_eq!(
            (Interest::READ | Interest::WRITE).remove(Interest::WRITE),
            Interest::READ
        );
    }

    #[test]
    fn ids_are_never_reused() {
        let a = ChannelId::next();
        let b = ChannelId::next();
        assert!(b > a);
        assert_eq!(format!("{a}"), format!("#{}", a.as_u64()));
    }
}
