//! [`Map`]: asyncore's `socket_map`, the set of channels one reactor serves, and the loop that
//! runs them.
//!
//! # What runs where
//!
//! A map lives on one thread. Each channel added to it becomes a Tokio task on the map's own
//! [`LocalSet`], so all callbacks of a map run on that thread, one at a time (asyncore's
//! single-threaded guarantee), and dispatchers can share state through `Rc<RefCell<_>>` the way
//! Python objects share it. The tasks make progress while the map is being run, by
//! [`Map::run`] (free-running, until the map is empty) or [`Map::run_count`] / [`Map::poll`]
//! (lock-step passes). Between runs they are frozen, like an asyncore program between calls to
//! `loop()`.
//!
//! A map is `!Send`: run it on the thread that made it, inside any Tokio runtime with I/O and
//! time enabled (`#[tokio::main]`, a current-thread runtime, a `LocalSet`, `block_on` on a
//! multi-thread runtime). Native tasks on other threads reach it through a [`MapHandle`].
//!
//! To use more than one core, run several maps on several threads (each with its own
//! listener using `SO_REUSEPORT`, or handing accepted connections over through a
//! [`MapHandle`]); a map never takes locks on its hot path.
//!
//! # The default map
//!
//! Code that never names a map uses the thread's default map ([`socket_map`]), as asyncore's
//! functions default to the module-global `socket_map`. There is one per thread, because a map
//! lives on one thread.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, LocalSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::Channel;
use crate::dispatcher::Dispatcher;
use crate::driver::{drive, same_waker, Entry};
use crate::error::closed_channel;
use crate::event::ChannelId;
use crate::handle::{MapHandle, Request, Shared};
use crate::pass::Pass;

/// A set of channels served by one reactor: asyncore's `map` plus its `loop`.
///
/// `Map` is a cheap, clonable reference (`Rc`); clones refer to the same map.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use asyncore::Map;
///
/// let map = Map::new();
/// assert!(map.is_empty());
/// map.run().await?; // an empty map returns at once, as asyncore.loop() does
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Map {
    inner: Rc<MapInner>,
}

/// The loop's state as its channel tasks see it: two cells behind an `Rc`, so that the hot path
/// reads them without upgrading a `Weak` to the map.
#[derive(Default)]
pub(crate) struct LoopFlags {
    /// Channel tasks wait instead of dispatching: during lock-step passes, after `ExitNow` until
    /// the next run, and once the map is gone.
    pub(crate) paused: Cell<bool>,
    /// A callback returned `ExitNow` (or the map is gone): no more callbacks until the loop has
    /// returned it.
    pub(crate) exiting: Cell<bool>,
}

pub(crate) struct MapInner {
    entries: RefCell<BTreeMap<ChannelId, Rc<Entry>>>,
    local: LocalSet,
    /// Shared with the channel tasks, which read it before every wait and every callback.
    pub(crate) flags: Rc<LoopFlags>,
    running: Cell<bool>,
    run_waker: RefCell<Option<Waker>>,
    exit: RefCell<Option<io::Error>>,
    /// Native tasks that count as members ([`Map::spawn`]), by a never-reused number.
    members: RefCell<HashMap<u64, AbortHandle>>,
    next_member: Cell<u64>,
    /// Cancelled when a graceful shutdown begins.
    shutdown: CancellationToken,
    pub(crate) shared: Arc<Shared>,
}

thread_local! {
    static DEFAULT: Map = Map::new();
}

/// The calling thread's default map (asyncore's module-global `socket_map`).
pub fn socket_map() -> Map {
    DEFAULT.with(Map::clone)
}

impl Map {
    /// Creates an empty map.
    pub fn new() -> Map {
        let (sender, receiver) = mpsc::unbounded_channel();
        let inner = Rc::new(MapInner {
            entries: RefCell::new(BTreeMap::new()),
            local: LocalSet::new(),
            flags: Rc::default(),
            running: Cell::new(false),
            run_waker: RefCell::new(None),
            exit: RefCell::new(None),
            members: RefCell::new(HashMap::new()),
            next_member: Cell::new(0),
            shutdown: CancellationToken::new(),
            shared: Arc::new(Shared::new(sender)),
        });
        inner
            .local
            .spawn_local(serve_requests(Rc::downgrade(&inner), receiver));
        Map { inner }
    }

    pub(crate) fn from_inner(inner: Rc<MapInner>) -> Map {
        Map { inner }
    }

    /// Adds `channel` to the map with `dispatcher` as its callbacks, and starts its task; the
    /// task runs while the map runs. Returns the channel's id.
    ///
    /// Callable from anywhere on the map's thread, callbacks included; a channel added during a
    /// lock-step pass joins at the next pass.
    ///
    /// # Errors
    /// `NotConnected` if the channel was already closed.
    pub fn add<D: Dispatcher>(&self, mut channel: Channel, dispatcher: D) -> io::Result<ChannelId> {
        if channel.is_closed() {
            return Err(closed_channel("add"));
        }
        channel.map = Rc::downgrade(&self.inner);
        let id = channel.id();
        let type_name = std::any::type_name::<D>();
        let span = tracing::debug_span!(
            "channel",
            id = %id,
            fd = channel.fileno(),
            dispatcher = type_name,
            peer = channel.addr().map(tracing::field::display),
        );
        let entry = Rc::new(Entry::new(
            channel,
            Box::new(dispatcher),
            type_name,
            &self.inner,
        ));
        let was_empty = {
            let mut entries = self.inner.entries.borrow_mut();
            let was_empty = entries.is_empty();
            entries.insert(id, Rc::clone(&entry));
            was_empty
        };
        if was_empty {
            self.inner.shared.set_empty(false);
        }
        // Without a subscriber that wants the span, entering and leaving it on every poll is
        // pure cost; the task then runs bare.
        if span.is_disabled() {
            self.inner.local.spawn_local(drive(entry));
        } else {
            self.inner.local.spawn_local(drive(entry).instrument(span));
        }
        Ok(id)
    }

    /// How many members the map has: channels, plus native tasks added with
    /// [`spawn`](Map::spawn).
    pub fn len(&self) -> usize {
        self.inner.entries.borrow().len() + self.inner.members.borrow().len()
    }

    /// Whether the map has no channels and no member tasks (then [`run`](Map::run) returns at
    /// once).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Adds a native task to the map as a member: it runs on the map's thread while the map
    /// runs, keeps [`run`](Map::run) going until it finishes (the map is not empty while it
    /// lives), and is cancelled by [`close_all`](Map::close_all). This keeps asyncore's
    /// lifetime rule ("the loop ends when the map is empty") for a program that is half
    /// dispatchers, half async code. A task that should finish its work on shutdown watches
    /// [`shutdown_token`](Map::shutdown_token).
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) -> AbortHandle {
        let inner = &self.inner;
        let number = inner.next_member.get();
        inner.next_member.set(number + 1);
        let leave = Member {
            map: Rc::downgrade(inner),
            number,
        };
        let abort = inner.local.spawn_local(async move {
            let _leave = leave;
            task.await;
        });
        let handle = abort.abort_handle();
        inner.members.borrow_mut().insert(number, handle.clone());
        inner.shared.set_empty(false);
        handle
    }

    /// The token a graceful [`shutdown`](Map::shutdown) cancels first: member tasks and
    /// anything else that should wind down with the map watch it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Whether channel `id` is in the map.
    pub fn contains(&self, id: ChannelId) -> bool {
        self.inner.entries.borrow().contains_key(&id)
    }

    /// The ids of the map's channels, in ascending order (the order of a lock-step pass).
    pub fn ids(&self) -> Vec<ChannelId> {
        self.inner.entries.borrow().keys().copied().collect()
    }

    /// The file descriptor of channel `id`: asyncore's map key, for code that needs it.
    pub fn fileno(&self, id: ChannelId) -> Option<RawFd> {
        let entry = self.entry(id)?;
        let fd = entry.channel.try_borrow().ok()?.fileno();
        fd
    }

    /// The type name of channel `id`'s dispatcher.
    pub fn dispatcher_type(&self, id: ChannelId) -> Option<&'static str> {
        self.entry(id).map(|entry| entry.type_name)
    }

    /// Runs `f` against channel `id`'s dispatcher, which must be a `D`, and its channel, right
    /// now on this thread: how one dispatcher reaches another (a chat server's broadcast). The
    /// channel's interest is asked again afterwards.
    ///
    /// # Errors
    /// `NotFound` if no such channel is in the map; `InvalidInput` if its dispatcher is not a
    /// `D`; `WouldBlock` if it is the channel whose callback is running (use the `&mut self`
    /// you already have); `Other` if `f` panicked (the channel's `handle_error` got the panic).
    pub fn with<D: Dispatcher, R>(
        &self,
        id: ChannelId,
        f: impl FnOnce(&mut D, &mut Channel) -> R,
    ) -> io::Result<R> {
        self.entry(id).ok_or_else(|| not_found(id))?.with(f)
    }

    /// Closes channel `id` as [`Channel::close`] does (no `handle_close`); false if it is not
    /// in the map. If its callback is running, it closes as soon as that callback returns.
    pub fn close_channel(&self, id: ChannelId) -> bool {
        match self.entry(id) {
            Some(entry) => {
                entry.close();
                true
            }
            None => false,
        }
    }

    /// Closes every channel (asyncore's `close_all`): each leaves the map and its socket is
    /// closed; `handle_close` is not called. A channel whose callback is running (the caller's
    /// own) closes as soon as that callback returns.
    pub fn close_all(&self) {
        let entries = std::mem::take(&mut *self.inner.entries.borrow_mut());
        let members = std::mem::take(&mut *self.inner.members.borrow_mut());
        for entry in entries.into_values() {
            entry.close();
            entry.notify_closed();
        }
        for member in members.into_values() {
            member.abort();
        }
        self.inner.emptied();
    }

    /// Shuts the map down gracefully: cancels the [`shutdown_token`](Map::shutdown_token), asks
    /// every channel to close by running its `handle_close` (once, as always; a dispatcher with
    /// queued output can leave the channel open and flush it first, then `close`, or ask for
    /// the close with [`Chat::close_when_done`](crate::chat::Chat::close_when_done) or
    /// [`Channel::request_close`]), runs the map until it is empty or
    /// `grace` has passed, then closes whatever is left ([`close_all`](Map::close_all)).
    ///
    /// # Errors
    /// As [`run`](Map::run).
    pub async fn shutdown(&self, grace: Duration) -> io::Result<()> {
        self.inner.shutdown.cancel();
        for entry in self.inner.snapshot() {
            entry.request_close();
        }
        let result = self.run_until(tokio::time::sleep(grace)).await;
        self.close_all();
        result
    }

    /// Runs the map until it is empty: asyncore's `loop()` without a count.
    ///
    /// Every channel runs freely on its own task: it waits for the readiness its dispatcher
    /// asks for and runs callbacks as soon as that arrives, with no global pass. Returns
    /// `Ok(())` at once for an empty map, and as soon as the last channel closes.
    ///
    /// # Errors
    /// The [`ExitNow`](crate::ExitNow) a callback returned (the map keeps its channels; run it
    /// again to go on), or `Other` if the map is already running (a callback cannot run its own
    /// map).
    ///
    /// # Cancel safety
    /// Dropping the future pauses the map; no event is lost, and the next run resumes it.
    pub async fn run(&self) -> io::Result<()> {
        self.run_while(true, std::future::pending()).await.map(drop)
    }

    /// Runs the map until it is empty or `stop` completes, whichever is first. The channels
    /// stay; a server's main loop follows it with [`shutdown`](Map::shutdown). `stop` is polled
    /// when it wakes its waker (as every well-behaved future does), not on each of the map's
    /// wake-ups:
    ///
    /// ```no_run
    /// # #![allow(dead_code)]
    /// # async fn serve(map: asyncore::Map) -> std::io::Result<()> {
    /// map.run_until(async { let _ = asyncore::shutdown_signal().await; }).await?;
    /// map.shutdown(std::time::Duration::from_secs(2)).await
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`run`](Map::run).
    pub async fn run_until(&self, stop: impl Future<Output = ()>) -> io::Result<()> {
        self.run_while(true, stop).await.map(drop)
    }

    /// Runs the map until `stop` completes, even while it is empty: for a map that is a
    /// service of a larger program, fed with channels through
    /// [`MapHandle::add`](crate::MapHandle::add), rather than a program of its own. The
    /// channels stay (see [`shutdown`](Map::shutdown)). `stop` is polled as in
    /// [`run_until`](Map::run_until).
    ///
    /// A map inside a larger application that shuts down with tokio-util's
    /// `CancellationToken` and `TaskTracker`: the map runs on a thread of its own (it is
    /// `!Send`), serves until the token is cancelled, then shuts down gracefully; the
    /// application's native tasks reach it through its [`MapHandle`](crate::MapHandle).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use asyncore::Map;
    /// use tokio_util::sync::CancellationToken;
    /// use tokio_util::task::TaskTracker;
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let token = CancellationToken::new();
    /// let (found, handle) = std::sync::mpsc::channel();
    /// let stop = token.clone();
    /// let map_thread = std::thread::spawn(move || {
    ///     tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    ///         let map = Map::new();
    ///         let _ = found.send(map.handle());
    ///         map.serve(stop.cancelled_owned()).await?;
    ///         map.shutdown(Duration::from_secs(2)).await // handle_close, flush, then empty
    ///     })
    /// });
    /// let handle = handle.recv().expect("the map thread started");
    /// runtime.block_on(async {
    ///     let tracker = TaskTracker::new();
    ///     tracker.spawn(async move {
    ///         // Native work: add channels with `handle.add(..)`, call them, and so on.
    ///         handle.wait_empty().await;
    ///     });
    ///     token.cancel(); // e.g. on SIGTERM
    ///     tracker.close();
    ///     tracker.wait().await;
    /// });
    /// map_thread.join().expect("the map thread")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`run`](Map::run).
    pub async fn serve(&self, stop: impl Future<Output = ()>) -> io::Result<()> {
        self.run_while(false, stop).await.map(drop)
    }

    /// The free-running loop: until `stop` (returns true), or the map empties (if
    /// `until_empty`; returns false), or a callback's `ExitNow`.
    async fn run_while(
        &self,
        until_empty: bool,
        stop: impl Future<Output = ()>,
    ) -> io::Result<bool> {
        let _running = self.inner.start()?;
        self.inner.resume();
        let inner = &self.inner;
        let mut stop = std::pin::pin!(stop);
        let stop_waker = Arc::new(StopWaker {
            woken: AtomicBool::new(true),
            run: AtomicWaker::new(),
        });
        let result = inner
            .local
            .run_until(poll_fn(|cx| {
                if inner.flags.exiting.get() {
                    if let Some(error) = inner.take_exit() {
                        return Poll::Ready(Err(error));
                    }
                }
                if until_empty && inner.is_empty() {
                    return Poll::Ready(Ok(false));
                }
                let known = {
                    let mut slot = inner.run_waker.borrow_mut();
                    let known = slot.as_ref().is_some_and(|w| same_waker(w, cx.waker()));
                    if !known {
                        *slot = Some(cx.waker().clone());
                    }
                    known
                };
                // `stop`'s waker keeps this task's waker until it fires (which takes it), so it
                // is registered again only when the waker changed or it fired: not on every one
                // of the map's wake-ups.
                let fired = stop_waker.woken.swap(false, Ordering::AcqRel);
                if !known || fired {
                    stop_waker.run.register(cx.waker());
                }
                if fired {
                    let waker = futures::task::waker_ref(&stop_waker);
                    if stop
                        .as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_ready()
                    {
                        return Poll::Ready(Ok(true));
                    }
                }
                Poll::Pending
            }))
            .await;
        // One more turn of the map's tasks, so that work and members cancelled by the last
        // close are dropped now rather than at the next run.
        inner.local.run_until(tokio::task::yield_now()).await;
        result
    }

    /// Runs at most `count` lock-step passes of at most `timeout` each: asyncore's
    /// `loop(timeout, count=count)`. Returns early when the map empties; at once for an empty
    /// map or `count == 0`. See [`poll`](Map::poll) for what one pass does.
    ///
    /// # Errors
    /// As [`poll`](Map::poll).
    pub async fn run_count(&self, timeout: Duration, count: usize) -> io::Result<()> {
        for _ in 0..count {
            if self.inner.entries.borrow().is_empty() {
                break;
            }
            self.poll(timeout).await?;
        }
        Ok(())
    }

    /// Runs one lock-step pass, asyncore's `poll(timeout)`, and reports what happened in it.
    ///
    /// 1. Every channel, in ascending id order, is asked for its interest.
    /// 2. If none is interested, the pass sleeps `timeout`. Otherwise it waits up to `timeout`
    ///    until at least one wanted readiness is there, and collects all that are.
    /// 3. It dispatches all read events, then all write events, then all urgent events, each
    ///    in ascending id order, one callback at a time. A channel closed earlier in the pass
    ///    gets no more events; channels added during the pass join at the next one.
    ///
    /// Native tasks spawned on the map and requests from handles keep running during the pass;
    /// channel tasks wait.
    ///
    /// # Errors
    /// The [`ExitNow`](crate::ExitNow) a callback returned (the rest of the pass is skipped), or
    /// `Other` if the map is already running.
    pub async fn poll(&self, timeout: Duration) -> io::Result<Pass> {
        let _running = self.inner.start()?;
        self.inner.flags.paused.set(true);
        self.inner
            .local
            .run_until(crate::pass::run_pass(&self.inner, timeout))
            .await
    }

    /// A `Send + Clone` handle to this map for native tasks on any thread.
    pub fn handle(&self) -> MapHandle {
        MapHandle::new(Arc::clone(&self.inner.shared))
    }

    pub(crate) fn entry(&self, id: ChannelId) -> Option<Rc<Entry>> {
        self.inner.entry(id)
    }
}

/// The waker `run_until` hands its `stop` future. This loop wakes whenever any channel does;
/// polling `stop` (a signal watch, say) each time would cost more than the channel's own work,
/// so it is polled only after it asked to be.
struct StopWaker {
    woken: AtomicBool,
    run: AtomicWaker,
}

impl futures::task::ArcWake for StopWaker {
    fn wake_by_ref(this: &Arc<Self>) {
        this.woken.store(true, Ordering::Release);
        this.run.wake();
    }
}

impl Default for Map {
    fn default() -> Self {
        Map::new()
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("channels", &self.ids())
            .finish()
    }
}

impl MapInner {
    fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty() && self.members.borrow().is_empty()
    }

    /// Starts a task on the map's thread (work started by a callback).
    pub(crate) fn spawn_local(&self, task: impl Future<Output = ()> + 'static) -> AbortHandle {
        self.local.spawn_local(task).abort_handle()
    }

    /// Hands the result of a channel's work to that channel; dropped if it has closed.
    pub(crate) fn deliver(&self, id: ChannelId, completion: crate::work::Completion) {
        let entry = self.entries.borrow().get(&id).cloned();
        if let Some(entry) = entry {
            entry.deliver(completion);
        }
    }

    pub(crate) fn entry(&self, id: ChannelId) -> Option<Rc<Entry>> {
        self.entries.borrow().get(&id).cloned()
    }

    pub(crate) fn snapshot(&self) -> Vec<Rc<Entry>> {
        self.entries.borrow().values().cloned().collect()
    }

    pub(crate) fn take_exit(&self) -> Option<io::Error> {
        self.flags.exiting.set(false);
        self.exit.take()
    }

    /// A callback returned `ExitNow`: pause every channel and let the running loop return it.
    pub(crate) fn exit(&self, error: io::Error) {
        self.flags.paused.set(true);
        self.flags.exiting.set(true);
        *self.exit.borrow_mut() = Some(error);
        self.wake_runner();
    }

    /// Removes a closed channel (called by `Channel::close`).
    pub(crate) fn remove(&self, id: ChannelId) {
        let removed = self.entries.borrow_mut().remove(&id);
        if let Some(entry) = removed {
            entry.poke();
            entry.notify_closed();
            if self.is_empty() {
                self.emptied();
            }
        }
    }

    fn emptied(&self) {
        self.shared.set_empty(true);
        self.wake_runner();
    }

    fn wake_runner(&self) {
        if let Some(waker) = self.run_waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    fn start(&self) -> io::Result<Running<'_>> {
        if self.running.replace(true) {
            return Err(io::Error::other(
                "the map is already running (a callback cannot run its own map)",
            ));
        }
        Ok(Running(self))
    }

    /// Lets channel tasks dispatch again after lock-step passes or `ExitNow`.
    fn resume(&self) {
        if self.flags.paused.replace(false) {
            for entry in self.snapshot() {
                entry.poke();
            }
        }
    }
}

impl Drop for MapInner {
    fn drop(&mut self) {
        self.flags.paused.set(true);
        self.flags.exiting.set(true);
        self.shared.set_empty(true);
    }
}

/// Leaves the map's member list when a member task ends, however it ends.
struct Member {
    map: Weak<MapInner>,
    number: u64,
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(map) = self.map.upgrade() {
            let removed = map.members.borrow_mut().remove(&self.number).is_some();
            if removed && map.is_empty() {
                map.emptied();
            }
        }
    }
}

/// Marks the map as running for as long as a run or pass lasts.
struct Running<'a>(&'a MapInner);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
    }
}

pub(crate) fn not_found(id: ChannelId) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no channel {id} in the map"),
    )
}

/// The map's side of its handles: runs each request on the map's thread.
async fn serve_requests(map: Weak<MapInner>, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(request) = requests.recv().await {
        match map.upgrade() {
            Some(inner) => request(&Map::from_inner(inner)),
            None => return,
        }
    }
}
