//! The reactor for one channel: how readiness becomes callbacks.
//!
//! Each channel in a map is an [`Entry`]: its [`Channel`], its boxed [`Dispatcher`], and a little
//! bookkeeping. Its Tokio task, [`drive`], repeats one step:
//!
//! 1. ask the dispatcher what it waits for ([`Entry::interest`]);
//! 2. wait for exactly that readiness, or for a poke (something from outside changed the
//!    channel, so interest must be asked again), and nothing at all while the map is paused;
//! 3. dispatch: read event, then write event, then urgent event, each only if still open.
//!
//! Lock-step passes ([`Map::poll`](crate::Map::poll)) use the same [`Entry`] methods, driven by
//! the pass instead of the task; the task stays parked meanwhile.
//!
//! Error routing, for every callback, follows asyncore's `readwrite`: `WouldBlock` is dropped,
//! [`ExitNow`] stops the map, a disconnect becomes `handle_close`, anything else (a panic too)
//! becomes `handle_error`. `handle_close` runs at most once per channel; a close asked for after
//! it ran (a disconnect, [`Channel::request_close`], asynchat's `close_when_done`) closes the
//! channel without it. No callback runs on a closed channel.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::dispatcher::Dispatcher;
use crate::error::{is_disconnect, panic_error, would_block, ExitNow};
use crate::event::{ChannelId, Event, Interest, Ready};
use crate::map::{LoopFlags, MapInner};
use crate::work::Completion;

/// Consecutive read or write callbacks that leave the socket untouched before the reactor calls
/// the channel busy-looping.
const SPIN_THRESHOLD: u32 = 1024;
/// At most one busy-loop warning per channel per this interval.
const SPIN_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Where the callbacks of one dispatch are written down (a lock-step pass keeps them).
pub(crate) type Record<'a> = Option<&'a mut Vec<(ChannelId, Event)>>;

pub(crate) struct Entry {
    pub(crate) id: ChannelId,
    pub(crate) channel: RefCell<Channel>,
    pub(crate) dispatcher: RefCell<Box<dyn Dispatcher>>,
    pub(crate) type_name: &'static str,
    map: Weak<MapInner>,
    flags: Rc<LoopFlags>,
    waker: Cell<Option<Waker>>,
    poked: Cell<bool>,
    /// The last interest asked had `WRITE` only to see a pending connect complete: the
    /// dispatcher's `writable()` said no, so that write event runs `handle_connect` alone.
    connect_only: Cell<bool>,
    close_notified: Cell<bool>,
    close_requested: Cell<bool>,
    spins: Cell<u32>,
    last_spin_warning: Cell<Option<Instant>>,
    /// Results of `Channel::spawn` work, waiting for the channel's task.
    completions: RefCell<VecDeque<Completion>>,
    /// The sleep behind the channel's deadline, made on first use and reset after.
    timer: RefCell<Option<Pin<Box<tokio::time::Sleep>>>>,
    /// Who waits for the channel to close (`ChannelHandle::closed`).
    on_close: RefCell<Vec<tokio::sync::oneshot::Sender<()>>>,
}

/// Why the channel's task woke.
enum Wake {
    Io(Ready),
    Timeout,
    Poked,
}

/// The phases of a lock-step pass, in asyncore's order.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    Read,
    Write,
    Expt,
}

impl Entry {
    pub(crate) fn new(
        channel: Channel,
        dispatcher: Box<dyn Dispatcher>,
        type_name: &'static str,
        map: &Rc<MapInner>,
    ) -> Entry {
        Entry {
            id: channel.id(),
            channel: RefCell::new(channel),
            dispatcher: RefCell::new(dispatcher),
            type_name,
            map: Rc::downgrade(map),
            flags: map.flags.clone(),
            waker: Cell::new(None),
            poked: Cell::new(false),
            connect_only: Cell::new(false),
            close_notified: Cell::new(false),
            close_requested: Cell::new(false),
            spins: Cell::new(0),
            last_spin_warning: Cell::new(None),
            completions: RefCell::new(VecDeque::new()),
            timer: RefCell::new(None),
            on_close: RefCell::new(Vec::new()),
        }
    }

    /// Asks the dispatcher what the channel waits for. A panic in `readable`/`writable` goes to
    /// `handle_error` and yields no interest.
    pub(crate) fn interest(&self) -> Interest {
        let asked = {
            let channel = self.channel.borrow();
            if channel.is_closed() {
                return Interest::NONE;
            }
            let dispatcher = self.dispatcher.borrow();
            catch_unwind(AssertUnwindSafe(|| {
                let mut want = Interest::NONE;
                if dispatcher.readable(&channel) && !channel.eof {
                    want = want | Interest::READ;
                }
                let writable = !channel.accepting() && dispatcher.writable(&channel);
                self.connect_only.set(channel.connecting() && !writable);
                if channel.connecting() || writable {
                    want = want | Interest::WRITE;
                }
                want
            }))
        };
        asked.unwrap_or_else(|payload| {
            self.fail(panic_error(payload, "readable/writable"), &mut None);
            Interest::NONE
        })
    }

    /// Polls the socket for `want`; `Pending` leaves the caller registered for a wake-up.
    #[inline]
    pub(crate) fn poll_io(&self, cx: &mut Context<'_>, want: Interest) -> Poll<Ready> {
        self.channel.borrow_mut().poll_ready(cx, want)
    }

    /// The channel task's wait: readiness, the deadline, or a poke.
    fn poll_wake(&self, cx: &mut Context<'_>, want: Interest, paused: bool) -> Poll<Wake> {
        if self.poked.take() {
            return Poll::Ready(Wake::Poked);
        }
        if !paused {
            let mut channel = self.channel.borrow_mut();
            if let Some(deadline) = channel.deadline {
                if self.poll_timer(cx, deadline).is_ready() {
                    return Poll::Ready(Wake::Timeout);
                }
            }
            if !want.is_empty() {
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
        let mut timer = self.timer.borrow_mut();
        let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }

    /// The deadline passed: clear it and run `handle_timeout`.
    fn timeout_event(&self) {
        if self.stopping() {
            return;
        }
        let mut channel = self.channel.borrow_mut();
        let mut dispatcher = self.dispatcher.borrow_mut();
        let (ch, d) = (&mut *channel, &mut **dispatcher);
        let due = ch
            .deadline
            .is_some_and(|at| at <= tokio::time::Instant::now());
        if ch.is_closed() || !due {
            return;
        }
        ch.deadline = None;
        self.call(d, ch, Event::Timeout, &mut None, |d, ch| {
            d.handle_timeout(ch)
        });
    }

    /// Queues the result of a piece of work for the channel's task.
    pub(crate) fn deliver(&self, completion: Completion) {
        self.completions.borrow_mut().push_back(completion);
        self.poke();
    }

    #[inline]
    fn has_completions(&self) -> bool {
        !self.completions.borrow().is_empty()
    }

    /// Runs the queued completion callbacks, oldest first.
    fn run_completions(&self) {
        loop {
            let Some(completion) = self.completions.borrow_mut().pop_front() else {
                return;
            };
            if self.stopping() {
                self.completions.borrow_mut().push_front(completion);
                return;
            }
            let mut channel = self.channel.borrow_mut();
            let mut dispatcher = self.dispatcher.borrow_mut();
            if channel.is_closed() {
                self.completions.borrow_mut().clear();
                return;
            }
            self.call(
                &mut **dispatcher,
                &mut channel,
                Event::Completion,
                &mut None,
                completion,
            );
        }
    }

    /// The channel left the map: tell whoever waits for that.
    pub(crate) fn notify_closed(&self) {
        for waiter in self.on_close.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Registers `waiter` to hear when the channel closes.
    pub(crate) fn on_close(&self, waiter: tokio::sync::oneshot::Sender<()>) {
        self.on_close.borrow_mut().push(waiter);
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

    #[inline]
    fn done(&self) -> bool {
        self.channel.borrow().is_closed()
    }

    #[inline]
    fn stopping(&self) -> bool {
        self.flags.exiting.get()
    }

    /// Free-running dispatch of one wake-up: read, then write, then urgent events.
    #[inline]
    fn dispatch(&self, ready: Ready, want: Interest) {
        if ready.is_read() && want.is_read() {
            self.phase_event(Phase::Read, ready, want, &mut None);
        }
        if ready.is_write() && want.is_write() {
            self.phase_event(Phase::Write, ready, want, &mut None);
        }
        if ready.is_expt() {
            self.phase_event(Phase::Expt, ready, want, &mut None);
        }
    }

    /// Runs the event of `phase`, if `ready` has it and the channel wanted it.
    pub(crate) fn phase_event(
        &self,
        phase: Phase,
        ready: Ready,
        want: Interest,
        record: &mut Record<'_>,
    ) {
        let fires = match phase {
            Phase::Read => ready.is_read() && want.is_read(),
            Phase::Write => ready.is_write() && want.is_write(),
            Phase::Expt => ready.is_expt(),
        };
        if !fires || self.stopping() {
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
                if ch.connecting() && !self.connect_event(d, ch, record) {
                    return;
                }
                self.call(d, ch, Event::Read, record, |d, ch| d.handle_read(ch));
            }
            Phase::Write if ch.accepting() => {}
            Phase::Write => {
                if ch.connecting() && !self.connect_event(d, ch, record) {
                    return;
                }
                // The channel waited for writability only to see its connect complete:
                // `writable()` said no, and asyncore calls `handle_write` only when it said yes.
                if self.connect_only.get() {
                    return;
                }
                self.call(d, ch, Event::Write, record, |d, ch| d.handle_write(ch));
            }
            // asyncore's `handle_expt_event`: a socket error goes to `handle_close`.
            Phase::Expt => {
                if !ch.take_urgent_event() {
                    return;
                }
                match ch.socket().and_then(|socket| socket.take_error()) {
                    Ok(Some(error)) => {
                        tracing::debug!(channel = %self.id, %error, "socket error with urgent data");
                        ch.close_pending = true;
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
                false
            }
        }
    }

    /// Runs one callback with asyncore's error routing; true if the channel is still open.
    fn call(
        &self,
        d: &mut dyn Dispatcher,
        ch: &mut Channel,
        event: Event,
        record: &mut Record<'_>,
        callback: impl FnOnce(&mut dyn Dispatcher, &mut Channel) -> io::Result<()>,
    ) -> bool {
        tracing::trace!(channel = %self.id, callback = event.callback());
        if let Some(events) = record {
            events.push((self.id, event));
        }
        ch.progress = false;
        let result = catch_unwind(AssertUnwindSafe(|| callback(d, ch)))
            .unwrap_or_else(|payload| Err(panic_error(payload, event.callback())));
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
    fn route(
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
            if let Some(map) = self.map.upgrade() {
                map.exit(error);
            }
        } else if is_disconnect(&error) {
            ch.close_pending = true;
        } else {
            self.error_event(d, ch, error, record);
        }
    }

    /// What a callback left behind: a close it caused, a close asked for while it ran.
    #[inline]
    fn settle(&self, d: &mut dyn Dispatcher, ch: &mut Channel, record: &mut Record<'_>) {
        // Almost every callback leaves nothing behind: test that here, inlined into callers.
        if ch.eof_pending || ch.close_pending || self.close_requested.get() {
            self.settle_pending(d, ch, record);
        }
    }

    fn settle_pending(&self, d: &mut dyn Dispatcher, ch: &mut Channel, record: &mut Record<'_>) {
        if ch.eof_pending {
            ch.eof_pending = false;
            if !ch.is_closed() {
                self.call(d, ch, Event::ReadEof, record, |d, ch| d.handle_read_eof(ch));
            }
        }
        if ch.close_pending {
            ch.close_pending = false;
            if !ch.is_closed() {
                if self.close_notified.replace(true) {
                    // `handle_close` ran and left the channel open (to flush a goodbye, say);
                    // the next close asked for, or a disconnect, is the end: there is no second
                    // `handle_close` to leave it to, and a channel nobody closes would leak.
                    ch.close();
                } else {
                    self.call(d, ch, Event::Close, record, |d, ch| d.handle_close(ch));
                }
            }
        }
        if self.close_requested.take() {
            ch.close();
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

    fn count_spin(&self, ch: &Channel, event: Event) {
        if ch.progress {
            self.spins.set(0);
            return;
        }
        let spins = self.spins.get().wrapping_add(1);
        self.spins.set(spins);
        if spins % SPIN_THRESHOLD != 0 {
            return;
        }
        let now = Instant::now();
        if self
            .last_spin_warning
            .get()
            .is_some_and(|last| now.duration_since(last) < SPIN_WARNING_INTERVAL)
        {
            return;
        }
        self.last_spin_warning.set(Some(now));
        let predicate = if event == Event::Write {
            "writable"
        } else {
            "readable"
        };
        tracing::warn!(
            channel = %self.id,
            dispatcher = self.type_name,
            "busy loop: {} ran {spins} times in a row without touching the socket; \
             return false from {predicate}() while there is nothing to do",
            event.callback(),
        );
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
        if self.close_notified.get() {
            return;
        }
        let Ok(mut channel) = self.channel.try_borrow_mut() else {
            self.close_requested.set(true);
            return;
        };
        let mut dispatcher = self.dispatcher.borrow_mut();
        channel.close_pending = true;
        self.settle(&mut **dispatcher, &mut channel, &mut None);
        drop((channel, dispatcher));
        self.poke();
    }

    /// Closes the channel from outside its callbacks (`close_all`); if one of its callbacks is
    /// running, the close happens as soon as it returns.
    pub(crate) fn close(&self) {
        match self.channel.try_borrow_mut() {
            Ok(mut channel) => channel.close(),
            Err(_) => self.close_requested.set(true),
        }
        self.poke();
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

/// The channel's task: wait for what the dispatcher wants, dispatch, repeat until closed.
pub(crate) async fn drive(entry: Rc<Entry>) {
    loop {
        if entry.has_completions() {
            entry.run_completions();
        }
        if entry.done() {
            break;
        }
        let want = entry.interest();
        match std::future::poll_fn(|cx| entry.poll_wake(cx, want, entry.flags.paused.get())).await {
            // A readiness poll that returns `Ready` has used one unit of Tokio's cooperative
            // budget, so a channel that is always ready still lets the rest of the thread run.
            Wake::Io(ready) => entry.dispatch(ready, want),
            // Pokes and deadlines do not count against the budget; this does.
            Wake::Timeout => {
                entry.timeout_event();
                tokio::task::coop::consume_budget().await;
            }
            Wake::Poked => tokio::task::coop::consume_budget().await,
        }
    }
}
