//! Step 3: readiness becomes events, in asyncore's order. Free-running channels and lock-step
//! passes both go through [`Entry::phase_event`] in the order of [`PHASES`].

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{Entry, Record};
use crate::channel::Channel;
use crate::dispatcher::Dispatcher;
use crate::event::{Event, Interest, Ready};
use crate::io::TlsEvent;

/// The kinds of event one wake-up can bring.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    Read,
    Write,
    Expt,
}

impl Phase {
    /// Whether `ready` has this phase's event for a channel that wanted `want`.
    #[inline]
    fn fires(self, ready: Ready, want: Interest) -> bool {
        match self {
            Phase::Read => ready.is_read() && want.is_read(),
            Phase::Write => ready.is_write() && want.is_write(),
            Phase::Expt => ready.is_expt(),
        }
    }
}

/// asyncore's order: all read events, then all write events, then urgent data (per channel
/// when free-running; per pass, over all ready channels, in lock-step).
pub(crate) const PHASES: [Phase; 3] = [Phase::Read, Phase::Write, Phase::Expt];

impl Entry {
    /// Free-running dispatch of one wake-up.
    #[inline]
    pub(super) fn dispatch(&self, ready: Ready, want: Interest, record: &mut Record<'_>) {
        if ready.is_tls() {
            self.tls_phase(record);
        }
        for phase in PHASES {
            // Tested here too, inlined: most wake-ups bring one kind of event, and the phases
            // without one then cost a test each rather than a call.
            if phase.fires(ready, want) {
                self.phase_event(phase, ready, want, record);
            }
        }
    }

    /// Runs the event of `phase`, if `ready` has it and the channel wanted it:
    ///
    /// - read: `handle_accept` on a listener, else `handle_connect` if a connect is pending,
    ///   then `handle_read`;
    /// - write: `handle_connect` if pending, then `handle_write` (never on a listener);
    /// - urgent data: `handle_expt`, or `handle_close` if a socket error is pending
    ///   (asyncore's `handle_expt_event`).
    ///
    /// Not inlined: a wake-up rarely runs more than one phase, and one body shared by the
    /// three is less code to run through than three copies of it.
    pub(crate) fn phase_event(
        &self,
        phase: Phase,
        ready: Ready,
        want: Interest,
        record: &mut Record<'_>,
    ) {
        if !phase.fires(ready, want) || self.stopping() {
            return;
        }
        let mut channel = self.channel.borrow_mut();
        let mut dispatcher = self.dispatcher.borrow_mut();
        let (ch, d) = (&mut *channel, &mut **dispatcher);
        if ch.is_closed() {
            return;
        }
        match phase {
            Phase::Read if ch.accepting() => {
                self.call(d, ch, Event::Accept, record, |d, ch| d.handle_accept(ch));
            }
            Phase::Read => {
                // After a connect, a TLS channel's reads wait for its handshake.
                if ch.connecting() && (!self.connect_event(d, ch, record) || ch.tls_handshaking()) {
                    return;
                }
                self.call(d, ch, Event::Read, record, |d, ch| d.handle_read(ch));
            }
            Phase::Write if ch.accepting() => {}
            Phase::Write => {
                if ch.connecting() && (!self.connect_event(d, ch, record) || ch.tls_handshaking()) {
                    return;
                }
                // The channel waited for writability only to see its connect complete:
                // `writable()` said no, and asyncore calls `handle_write` only when it said yes.
                if self.connect_only.get() {
                    return;
                }
                self.call(d, ch, Event::Write, record, |d, ch| d.handle_write(ch));
            }
            Phase::Expt => {
                if !ch.take_urgent_event() {
                    return;
                }
                match ch.socket().and_then(|socket| socket.take_error()) {
                    Ok(Some(error)) => {
                        tracing::debug!(channel = %self.id, %error, "socket error with urgent data");
                        ch.closing.disconnected();
                        self.settle(d, ch, record);
                    }
                    _ => {
                        self.call(d, ch, Event::Expt, record, |d, ch| d.handle_expt(ch));
                    }
                }
            }
        }
    }

    /// Completes a pending connect; true when the channel is connected, `handle_connect`
    /// succeeded and the channel is still open.
    ///
    /// A `handle_connect` that fails (an error, `WouldBlock` and `ExitNow` included, or a
    /// panic) leaves the connect pending, as asyncore does (it sets `connected` only after
    /// `handle_connect` returns): no read or write callback follows in this event, and the next
    /// event runs `handle_connect` again.
    fn connect_event(
        &self,
        d: &mut dyn Dispatcher,
        ch: &mut Channel,
        record: &mut Record<'_>,
    ) -> bool {
        match ch.finish_connect() {
            Ok(true) => {
                let mut done = false;
                let open = self.call(d, ch, Event::Connect, record, |d, ch| {
                    let result = catch_unwind(AssertUnwindSafe(|| d.handle_connect(ch)));
                    done = matches!(result, Ok(Ok(())));
                    if !done {
                        // Before the error is routed: handle_error sees the connect pending.
                        ch.connect_pending_again();
                    }
                    result.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
                });
                open && done
            }
            Ok(false) => false,
            Err(e) => {
                self.route(d, ch, e, record);
                self.settle(d, ch, record);
                false
            }
        }
    }

    /// The events of a channel's TLS session, before its read, write and urgent events (a
    /// wake-up with [`Ready::TLS`]): `handle_tls_ready` for a completed handshake, the error
    /// of a failed session routed as a callback's error.
    #[cold]
    pub(crate) fn tls_phase(&self, record: &mut Record<'_>) {
        if self.stopping() {
            return;
        }
        let mut channel = self.channel.borrow_mut();
        let mut dispatcher = self.dispatcher.borrow_mut();
        let (ch, d) = (&mut *channel, &mut **dispatcher);
        while !ch.is_closed() {
            match ch.take_tls_event() {
                None => return,
                Some(TlsEvent::Ready) => {
                    self.call(d, ch, Event::TlsReady, record, |d, ch| {
                        d.handle_tls_ready(ch)
                    });
                }
                Some(TlsEvent::Error(error)) => {
                    self.route(d, ch, error, record);
                    self.settle(d, ch, record);
                }
            }
        }
    }

    /// The deadline passed: clear it and run `handle_timeout`.
    pub(super) fn timeout_event(&self) {
        if self.stopping() {
            return;
        }
        let mut channel = self.channel.borrow_mut();
        let mut dispatcher = self.dispatcher.borrow_mut();
        let (ch, d) = (&mut *channel, &mut **dispatcher);
        if ch.is_closed() || !ch.take_due_deadline() {
            return;
        }
        self.call(d, ch, Event::Timeout, &mut None, |d, ch| {
            d.handle_timeout(ch)
        });
    }
}
