//! The reactor for one channel: how readiness becomes callbacks.
//!
//! Each channel in a map is an [`Entry`]: its [`Channel`], its boxed [`Dispatcher`], and the
//! bookkeeping of its task. The task, [`drive`], repeats the reactor's steps, one file each:
//!
//! 1. [`interest`]: ask the dispatcher what it waits for (`readable()`, `writable()`);
//! 2. [`wait`]: wait for exactly that readiness, the channel's deadline, or a poke (something
//!    from outside changed the channel, so interest must be asked again); nothing at all while
//!    the map is paused;
//! 3. [`dispatch`]: turn readiness into events in asyncore's order (reads, then writes, then
//!    urgent data), the order lock-step passes use too;
//! 4. [`callback`]: run each callback with asyncore's error routing, then what it left owing
//!    (`handle_read_eof`, `handle_close`).
//!
//! Around them: [`completion`] (results of async work, run as callbacks on the channel's
//! task), [`spin`] (the busy-loop detector) and [`observe`] (what a snapshot reads, and the
//! channel's span for what runs outside its task).
//!
//! Error routing, for every callback, follows asyncore's `readwrite`: `WouldBlock` is dropped,
//! [`ExitNow`](crate::ExitNow) stops the map, a disconnect becomes `handle_close`, anything
//! else (a panic too) becomes `handle_error`. `handle_close` runs at most once per channel; a
//! close asked for after it ran (a disconnect, [`Channel::request_close`], asynchat's
//! `close_when_done`) closes the channel without it. No callback runs on a closed channel.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use crate::channel::Channel;
use crate::dispatcher::Dispatcher;
use crate::event::{ChannelId, Interest, InterestScope, Ready};
use crate::loop_state::LoopState;

mod callback;
mod completion;
mod dispatch;
mod interest;
mod observe;
mod spin;
mod wait;

pub(crate) use callback::Record;
pub(crate) use completion::Completion;
pub(crate) use dispatch::PHASES;
pub(crate) use observe::Observed;

/// One channel of a map: the channel, its dispatcher, and its task's bookkeeping.
pub(crate) struct Entry {
    pub(crate) id: ChannelId,
    pub(crate) channel: RefCell<Channel>,
    pub(crate) dispatcher: RefCell<Box<dyn Dispatcher>>,
    pub(crate) type_name: &'static str,
    /// What the dispatcher's interest depends on, asked once when it joined the map.
    pub(crate) scope: InterestScope,
    state: Rc<LoopState>,
    /// The task's waker, while it waits.
    waker: Cell<Option<Waker>>,
    /// Something changed the channel from outside: ask interest again.
    poked: Cell<bool>,
    /// The interest last asked (what the task waits with, while `waiting`).
    want: Cell<Interest>,
    /// Whether the task waits with `want` now (what the interest sweep compares).
    waiting: Cell<bool>,
    /// The readiness last seen (what woke the task, or what a lock-step pass found).
    seen: Cell<Ready>,
    /// Callbacks run on the channel.
    callbacks: Cell<u64>,
    /// Whether the channel has a span (made when a subscriber wanted it): what runs outside
    /// the channel's task enters it.
    traced: bool,
    /// The last interest asked had `WRITE` only to see a pending connect complete: the
    /// dispatcher's `writable()` said no, so that write event runs `handle_connect` alone.
    connect_only: Cell<bool>,
    /// A close asked for from outside while one of the channel's callbacks held it.
    deferred: Cell<Option<Deferred>>,
    spin: spin::Spin,
    /// What few channels use, out of line: an idle channel pays one pointer for it.
    rare: RefCell<Option<Box<Rare>>>,
}

#[derive(Default)]
struct Rare {
    /// Results of `Channel::spawn` work, waiting for the channel's task.
    completions: VecDeque<Completion>,
    /// The sleep behind the channel's deadline, made on first use and reset after.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Who waits for the channel to close (`ChannelHandle::closed`).
    on_close: Vec<tokio::sync::oneshot::Sender<()>>,
    /// The channel's span, when `traced`.
    span: Option<tracing::Span>,
}

/// A close asked for while the channel was busy, applied when its callback returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Deferred {
    /// `handle_close`, as the peer's close would (graceful shutdown).
    HandleClose,
    /// Close without `handle_close` (`Map::close_channel`, `close_all`).
    Close,
}

impl Entry {
    pub(crate) fn new(
        channel: Channel,
        dispatcher: Box<dyn Dispatcher>,
        type_name: &'static str,
        state: &Rc<LoopState>,
        span: &tracing::Span,
    ) -> Entry {
        let scope = dispatcher.interest_scope();
        let traced = !span.is_disabled();
        let entry = Entry {
            id: channel.id(),
            channel: RefCell::new(channel),
            dispatcher: RefCell::new(dispatcher),
            type_name,
            scope,
            state: Rc::clone(state),
            waker: Cell::new(None),
            poked: Cell::new(false),
            want: Cell::new(Interest::NONE),
            waiting: Cell::new(false),
            seen: Cell::new(Ready::NONE),
            callbacks: Cell::new(0),
            traced,
            connect_only: Cell::new(false),
            deferred: Cell::new(None),
            spin: spin::Spin::default(),
            rare: RefCell::new(None),
        };
        if traced {
            entry.with_rare(|rare| rare.span = Some(span.clone()));
        }
        entry
    }

    /// Whether callbacks must wait: the loop was told to stop.
    #[inline]
    fn stopping(&self) -> bool {
        self.state.exiting()
    }

    /// The channel left the map: tell whoever waits for that.
    pub(crate) fn notify_closed(&self) {
        let waiters = match self.rare.borrow_mut().as_mut() {
            Some(rare) => std::mem::take(&mut rare.on_close),
            None => return,
        };
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    /// Registers `waiter` to hear when the channel closes.
    pub(crate) fn on_close(&self, waiter: tokio::sync::oneshot::Sender<()>) {
        self.with_rare(|rare| rare.on_close.push(waiter));
    }

    fn with_rare<R>(&self, f: impl FnOnce(&mut Rare) -> R) -> R {
        f(self.rare.borrow_mut().get_or_insert_with(Box::default))
    }
}

/// The channel's task: ask, wait, dispatch, repeat until closed.
///
/// Completions are looked for only after a poke: delivering one pokes the task, and the poke
/// stays until the task's next wait sees it, so none waits longer than the callback running.
pub(crate) async fn drive(entry: Rc<Entry>) {
    while let Some((want, ready)) = entry.interest_if_open() {
        entry.asked(want);
        if !ready.is_empty() {
            // Input is buffered: it is handled now, not when the socket speaks again.
            entry.saw(ready);
            entry.dispatch(ready, want, &mut None);
            entry.run_completions();
            tokio::task::coop::consume_budget().await;
            continue;
        }
        entry.waiting.set(true);
        let woke = std::future::poll_fn(|cx| entry.poll_wake(cx, want)).await;
        entry.waiting.set(false);
        match woke {
            // A readiness poll that returns `Ready` has used one unit of Tokio's cooperative
            // budget, so a channel that is always ready still lets the rest of the thread run.
            wait::Wake::Io(ready) => {
                entry.saw(ready);
                entry.dispatch(ready, want, &mut None)
            }
            // Pokes and deadlines do not count against the budget; this does.
            wait::Wake::Timeout => {
                entry.timeout_event();
                tokio::task::coop::consume_budget().await;
            }
            wait::Wake::Poked => {
                entry.run_completions();
                tokio::task::coop::consume_budget().await;
            }
        }
    }
}
