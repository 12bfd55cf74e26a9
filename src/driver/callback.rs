//! Step 4: one callback, with asyncore's error routing, then what it left owing.

use std::any::Any;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{Deferred, Entry};
use crate::channel::{Channel, Owed};
use crate::dispatcher::Dispatcher;
use crate::error::{is_disconnect, panic_error, would_block, ExitNow};
use crate::event::{ChannelId, Event};

/// Where the callbacks of one dispatch are written down (a lock-step pass keeps them).
pub(crate) type Record<'a> = Option<&'a mut Vec<(ChannelId, Event)>>;

impl Entry {
    /// Runs one callback with asyncore's error routing; true if the channel is still open.
    ///
    /// Inlined: each call site has its own copy anyway (one per callback closure), and the
    /// read event's copy then costs no call of its own.
    #[inline]
    pub(super) fn call(
        &self,
        d: &mut dyn Dispatcher,
        ch: &mut Channel,
        event: Event,
        record: &mut Record<'_>,
        callback: impl FnOnce(&mut dyn Dispatcher, &mut Channel) -> io::Result<()>,
    ) -> bool {
        tracing::trace!(channel = %self.id, callback = event.callback());
        self.callbacks.set(self.callbacks.get() + 1);
        if let Some(events) = record {
            events.push((self.id, event));
        }
        ch.progress = false;
        let result = catch_unwind(AssertUnwindSafe(|| callback(d, ch)))
            .unwrap_or_else(|payload| Err(panic_error(payload, event.callback())));
        self.state.touch();
        if let Err(error) = result {
            self.route(d, ch, error, record);
        }
        if matches!(event, Event::Read | Event::Write) {
            self.count_spin(ch, event);
        }
        self.settle(d, ch, record);
        !ch.is_closed()
    }

    /// asyncore's `readwrite` error routing.
    pub(super) fn route(
        &self,
        d: &mut dyn Dispatcher,
        ch: &mut Channel,
        error: io::Error,
        record: &mut Record<'_>,
    ) {
        if would_block(&error) {
            return;
        }
        if ExitNow::is(&error) {
            self.state.exit(error);
        } else if is_disconnect(&error) {
            ch.closing.disconnected();
        } else {
            self.error_event(d, ch, error, record);
        }
    }

    /// What a callback left behind: the events it owes (end of file, a close), a close asked
    /// for from outside while it ran.
    #[inline]
    pub(super) fn settle(&self, d: &mut dyn Dispatcher, ch: &mut Channel, record: &mut Record<'_>) {
        // Almost every callback leaves nothing behind: test that here, inlined into callers.
        if ch.closing.owes() || self.deferred.get().is_some() {
            self.settle_owed(d, ch, record);
        }
    }

    fn settle_owed(&self, d: &mut dyn Dispatcher, ch: &mut Channel, record: &mut Record<'_>) {
        match self.deferred.take() {
            Some(Deferred::Close) => ch.close(),
            Some(Deferred::HandleClose) if !ch.closing.notified() => ch.closing.request_close(),
            _ => {}
        }
        while let Some(owed) = ch.closing.take_owed() {
            match owed {
                Owed::ReadEof => {
                    self.call(d, ch, Event::ReadEof, record, |d, ch| d.handle_read_eof(ch));
                }
                Owed::HandleClose => {
                    self.call(d, ch, Event::Close, record, |d, ch| d.handle_close(ch));
                }
                // `handle_close` ran and left the channel open (to flush a goodbye, say); the
                // next close asked for, or a disconnect, is the end: there is no second
                // `handle_close` to leave it to, and a channel nobody closes would leak.
                Owed::Close => ch.close(),
            }
        }
    }

    fn error_event(
        &self,
        d: &mut dyn Dispatcher,
        ch: &mut Channel,
        error: io::Error,
        record: &mut Record<'_>,
    ) {
        tracing::trace!(channel = %self.id, callback = "handle_error", %error);
        self.callbacks.set(self.callbacks.get() + 1);
        if let Some(events) = record {
            events.push((self.id, Event::Error));
        }
        if catch_unwind(AssertUnwindSafe(|| d.handle_error(ch, error))).is_err() {
            tracing::error!(channel = %self.id, dispatcher = self.type_name, "handle_error panicked; closing channel");
            ch.close();
        }
    }

    /// Routes an error that arose outside a callback (a panic in `readable`, a closure).
    pub(crate) fn fail(&self, error: io::Error, record: &mut Record<'_>) {
        let mut channel = self.channel.borrow_mut();
        let mut dispatcher = self.dispatcher.borrow_mut();
        self.route(&mut **dispatcher, &mut channel, error, record);
        self.settle(&mut **dispatcher, &mut channel, record);
    }

    /// Runs `f` against the dispatcher (as a `D`) and the channel, from outside the reactor's
    /// own dispatch; then settles what `f` left behind and pokes the task to ask interest again.
    pub(crate) fn with<D: Dispatcher, R>(
        &self,
        f: impl FnOnce(&mut D, &mut Channel) -> R,
    ) -> io::Result<R> {
        let busy = || {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("channel {} is busy: its own callback is running", self.id),
            )
        };
        let mut channel = self.channel.try_borrow_mut().map_err(|_| busy())?;
        let mut dispatcher = self.dispatcher.try_borrow_mut().map_err(|_| busy())?;
        let _span = self.enter_span();
        if channel.is_closed() {
            return Err(crate::error::closed_channel(&format!(
                "channel {}",
                self.id
            )));
        }
        let any: &mut dyn Any = &mut **dispatcher;
        let Some(typed) = any.downcast_mut::<D>() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "channel {} is a {}, not a {}",
                    self.id,
                    self.type_name,
                    std::any::type_name::<D>()
                ),
            ));
        };
        let result = catch_unwind(AssertUnwindSafe(|| f(typed, &mut channel)));
        self.state.touch();
        let d = &mut **dispatcher;
        let outcome = match result {
            Ok(value) => Ok(value),
            Err(payload) => {
                let error = panic_error(payload, "a closure run on the channel");
                let reply = io::Error::other(error.to_string());
                self.route(d, &mut channel, error, &mut None);
                Err(reply)
            }
        };
        self.settle(d, &mut channel, &mut None);
        drop((channel, dispatcher));
        self.poke();
        outcome
    }

    /// Asks the channel to close the way its peer would: `handle_close`, once (graceful
    /// shutdown). A dispatcher that owes output may flush before it closes. Nothing to do when
    /// `handle_close` has run already: the channel is closing its own way (a goodbye on its
    /// way out), and a second request would close it under that goodbye.
    pub(crate) fn request_close(&self) {
        self.close_with(Deferred::HandleClose);
    }

    /// Closes the channel from outside its callbacks (`close_all`); if one of its callbacks is
    /// running, the close happens as soon as it returns.
    pub(crate) fn close(&self) {
        self.close_with(Deferred::Close);
    }

    fn close_with(&self, how: Deferred) {
        let _span = self.enter_span();
        let (Ok(mut channel), Ok(mut dispatcher)) = (
            self.channel.try_borrow_mut(),
            self.dispatcher.try_borrow_mut(),
        ) else {
            // One of its callbacks is running: settle it when that returns. A plain close
            // outranks a graceful one.
            if self.deferred.get() != Some(Deferred::Close) {
                self.deferred.set(Some(how));
            }
            self.poke();
            return;
        };
        match how {
            Deferred::Close => channel.close(),
            Deferred::HandleClose if channel.closing.notified() => {}
            Deferred::HandleClose => {
                channel.closing.request_close();
                self.settle(&mut **dispatcher, &mut channel, &mut None);
            }
        }
        drop((channel, dispatcher));
        self.poke();
    }
}
