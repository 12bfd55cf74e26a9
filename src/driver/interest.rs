//! Step 1: what the channel waits for, from its dispatcher's `readable()` and `writable()`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::Entry;
use crate::error::panic_error;
use crate::event::{Interest, Ready};

impl Entry {
    /// Asks the dispatcher what the channel waits for, and what is ready without waiting: a
    /// read event when it wants to read and has input buffered
    /// ([`has_buffered_input`](crate::Dispatcher::has_buffered_input)) or the channel does
    /// ([`Channel::has_buffered_input`](crate::Channel::has_buffered_input): decrypted TLS
    /// bytes), and `TLS` when the channel's TLS session has an event. Never `WRITE` for a
    /// listener, always `WRITE` while a connect is pending, no `READ` once the peer finished
    /// sending. A panic in `readable`/`writable` goes to `handle_error` and yields no interest.
    /// Nothing for a closed channel.
    #[inline]
    pub(crate) fn interest(&self) -> (Interest, Ready) {
        self.interest_if_open()
            .unwrap_or((Interest::NONE, Ready::NONE))
    }

    /// [`interest`](Entry::interest), or `None` once the channel is closed: the channel's task
    /// learns both with one look.
    pub(crate) fn interest_if_open(&self) -> Option<(Interest, Ready)> {
        let asked = {
            let channel = self.channel.borrow();
            if channel.is_closed() {
                return None;
            }
            let dispatcher = self.dispatcher.borrow();
            catch_unwind(AssertUnwindSafe(|| {
                let mut want = Interest::NONE;
                let mut ready = Ready::NONE;
                if dispatcher.readable(&channel) && !channel.closing.read_done() {
                    want = want | Interest::READ;
                    if dispatcher.has_buffered_input(&channel) {
                        ready = Ready::READ;
                    }
                }
                let writable = !channel.accepting() && dispatcher.writable(&channel);
                self.connect_only.set(channel.connecting() && !writable);
                if channel.connecting() || writable {
                    want = want | Interest::WRITE;
                }
                if channel.is_tls() {
                    ready = ready | channel.ready_without_socket(want.is_read());
                }
                (want, ready)
            }))
        };
        Some(asked.unwrap_or_else(|payload| {
            self.fail(panic_error(payload, "readable/writable"), &mut None);
            (Interest::NONE, Ready::NONE)
        }))
    }

    /// If the task waits with an interest the dispatcher no longer gives, pokes it to ask
    /// again, and returns what it waited with and what it now wants. Nothing for a task that
    /// is not waiting (it asks anew before it waits) or is already poked.
    #[inline]
    pub(crate) fn refresh_interest(&self) -> Option<(Interest, Interest)> {
        if !self.waiting.get() || self.poked.get() {
            return None;
        }
        if self.traced {
            return self.refresh_traced();
        }
        self.refresh_now()
    }

    /// [`refresh_interest`](Entry::refresh_interest) inside the channel's span: out of line,
    /// so that the sweep over untraced channels pays one test for it.
    #[cold]
    #[inline(never)]
    fn refresh_traced(&self) -> Option<(Interest, Interest)> {
        let _span = self.enter_span();
        self.refresh_now()
    }

    #[inline]
    fn refresh_now(&self) -> Option<(Interest, Interest)> {
        let waiting = self.want.get();
        let (now, ready) = self.interest();
        if now == waiting && ready.is_empty() {
            return None;
        }
        self.poke();
        Some((waiting, now))
    }
}
