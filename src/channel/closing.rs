//! A channel's way from open to closed, as one state machine.
//!
//! ```text
//!            peer's FIN            disconnect, request_close,         close()
//!   Open ───────────────▶ read done ─── handle_read_eof's default ──▶ ... ────▶ Closed
//!     │                                       │
//!     │  (pending events, run by the reactor right after the callback that saw them)
//!     └── handle_close ran, channel left open ("Notified") ── next close asked for ──▶ Closed
//! ```
//!
//! What a callback saw (end of file, a disconnect) cannot run `handle_read_eof` or
//! `handle_close` inside that callback: the dispatcher is borrowed. It is recorded here as a
//! pending event, and the reactor runs it as soon as the callback returns.

/// What [`Channel::close`](super::Channel::close) runs first, while the socket is still open:
/// asynchat's output sends what the socket takes, as asynchat's `push` would have sent it at
/// once.
pub(crate) type BeforeClose = Box<dyn FnOnce(&mut super::Channel)>;

/// How far a channel is on its way to closed, and what it owes its dispatcher.
#[derive(Default)]
pub(crate) struct Closing {
    stage: Stage,
    /// Run once by `close`, before the socket goes.
    before_close: Option<BeforeClose>,
    /// The peer finished sending: no more read interest (Tokio's read-closed readiness is
    /// sticky and would spin).
    read_done: bool,
    /// `handle_read_eof` is owed.
    owes_read_eof: bool,
    /// `handle_close` is owed (or, once it has run, the close it left for later).
    owes_close: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    #[default]
    Open,
    /// `handle_close` ran and left the channel open, to flush a goodbye: the next close asked
    /// for, or a disconnect, closes it without a second `handle_close`.
    Notified,
    Closed,
}

/// What the reactor does for a closing channel after a callback.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Owed {
    ReadEof,
    HandleClose,
    Close,
}

impl std::fmt::Debug for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closing")
            .field("stage", &self.stage)
            .field("read_done", &self.read_done)
            .field("owes_read_eof", &self.owes_read_eof)
            .field("owes_close", &self.owes_close)
            .field("before_close", &self.before_close.is_some())
            .finish()
    }
}

impl Closing {
    /// Sets what `close` runs first (replacing any earlier one), or with `None` removes it.
    pub(crate) fn set_before_close(&mut self, hook: Option<BeforeClose>) {
        self.before_close = hook;
    }

    pub(crate) fn has_before_close(&self) -> bool {
        self.before_close.is_some()
    }

    pub(crate) fn take_before_close(&mut self) -> Option<BeforeClose> {
        self.before_close.take()
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.stage == Stage::Closed
    }

    #[inline]
    pub(crate) fn read_done(&self) -> bool {
        self.read_done
    }

    /// Whether `handle_close` has run.
    pub(crate) fn notified(&self) -> bool {
        self.stage != Stage::Open
    }

    /// A read returned end of file.
    pub(crate) fn end_of_file(&mut self) {
        self.read_done = true;
        self.owes_read_eof = true;
    }

    /// The stream ended in a way that is not end of file (a truncated TLS stream, reported as
    /// an error): no more read interest, nothing owed.
    pub(crate) fn read_finished(&mut self) {
        self.read_done = true;
    }

    /// A read or write saw the peer gone (`ECONNRESET`, `EPIPE`, …).
    pub(crate) fn disconnected(&mut self) {
        self.read_done = true;
        self.owes_close = true;
    }

    /// `handle_close` is asked for ([`Channel::request_close`](crate::Channel::request_close)).
    pub(crate) fn request_close(&mut self) {
        self.owes_close = true;
    }

    /// The channel closed (`Channel::close`); false if it already was.
    pub(crate) fn close(&mut self) -> bool {
        std::mem::replace(&mut self.stage, Stage::Closed) != Stage::Closed
    }

    /// Whether anything is owed: the one test every callback pays.
    #[inline]
    pub(crate) fn owes(&self) -> bool {
        self.owes_read_eof || self.owes_close
    }

    /// The next thing owed, in order: `handle_read_eof` before `handle_close`; a close asked
    /// for after `handle_close` ran is a plain close.
    pub(crate) fn take_owed(&mut self) -> Option<Owed> {
        if self.stage == Stage::Closed {
            self.owes_read_eof = false;
            self.owes_close = false;
            return None;
        }
        if std::mem::take(&mut self.owes_read_eof) {
            return Some(Owed::ReadEof);
        }
        if std::mem::take(&mut self.owes_close) {
            return Some(match self.stage {
                Stage::Open => {
                    self.stage = Stage::Notified;
                    Owed::HandleClose
                }
                _ => Owed::Close,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_file_then_close_runs_each_callback_once() {
        let mut closing = Closing::default();
        closing.end_of_file();
        assert!(closing.read_done() && closing.owes());
        assert_eq!(closing.take_owed(), Some(Owed::ReadEof));
        closing.request_close();
        assert_eq!(closing.take_owed(), Some(Owed::HandleClose));
        assert_eq!(closing.take_owed(), None);
        assert!(closing.notified() && !closing.is_closed());
        // handle_close left it open; the next request closes it, without a second handle_close.
        closing.disconnected();
        assert_eq!(closing.take_owed(), Some(Owed::Close));
        assert!(closing.close());
        assert!(!closing.close(), "close is idempotent");
        closing.request_close();
        assert_eq!(
            closing.take_owed(),
            None,
            "nothing is owed by a closed channel"
        );
    }
}
