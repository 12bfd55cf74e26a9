//! [`Map`]: asyncore's `socket_map`, the set of channels one reactor serves, and the loop that
//! runs them.
//!
//! - this file: the map and its members (channels and native member tasks);
//! - `run`: the free-running loop ([`Map::run`], [`Map::run_until`], [`Map::serve`]);
//! - `sweep`: the interest sweep and the audit ([interest and shared
//!   state](crate#interest-and-shared-state));
//! - `remote`: what the map shares with other threads (requests from handles, emptiness);
//! - `watchdog`: the warning for a map that nothing runs;
//! - `observe`: snapshots ([`Map::snapshot`]).
//!
//! Lock-step passes ([`Map::poll`]) and handles ([`Map::handle`]) are built on top of it, in
//! their own modules.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, LocalSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::{Channel, Membership, Traffic};
use crate::dispatcher::Dispatcher;
use crate::driver::{drive, Entry};
use crate::error::closed_channel;
use crate::event::{ChannelId, InterestScope};
use crate::loop_state::LoopState;
use crate::snapshot::ShortTypeName;

mod observe;
mod remote;
mod run;
mod sweep;
mod watchdog;

pub(crate) use remote::{Remote, Request};

/// A set of channels served by one reactor: asyncore's `map` plus its `loop`.
///
/// `Map` is a cheap, clonable reference (`Rc`); clones refer to the same map.
///
/// # What runs where
///
/// A map lives on one thread. Each channel added to it becomes a Tokio task on the map's own
/// [`LocalSet`](https://docs.rs/tokio/1/tokio/task/struct.LocalSet.html), so all callbacks of a map run on that thread, one at a time, and dispatchers
/// can share state through `Rc<RefCell<_>>`. The tasks make progress while the map is being
/// run, by [`Map::run`] (free-running, until the map is empty) or [`Map::run_count`] /
/// [`Map::poll`] (lock-step passes); between runs they are frozen. Native tasks on other
/// threads reach the map through a [`MapHandle`](crate::MapHandle). The crate docs say more:
/// [what runs where](crate#what-runs-where).
///
/// # Hosting a map in a multi-thread runtime
///
/// A map is `!Send`, so the compiler keeps it on the thread that made it: run it there, inside
/// any Tokio runtime with I/O and time enabled (`#[tokio::main]`, a current-thread runtime, a
/// `LocalSet`, `block_on` on a multi-thread runtime), or on a thread of its own with
/// [`Map::serve`]. Never add to the default map ([`socket_map`], [`asyncore::add`](crate::add))
/// from a task spawned with `tokio::spawn`: nothing can run a worker thread's map, and a `WARN`
/// line says so. See [hosting a map in a multi-thread
/// runtime](crate#hosting-a-map-in-a-multi-thread-runtime).
///
/// # Interest and shared state
///
/// Channels whose dispatcher's [`interest_scope`](crate::Dispatcher::interest_scope) is
/// [`InterestScope::Shared`] (the default) are asked for their interest again after every batch
/// of callbacks on the map, as asyncore asks before every `select`; those with
/// [`InterestScope::Own`] only after their own callbacks, [`Map::with`] and handle calls, and
/// [`Map::wake`]. The rule, its cost and the audit of `Own` channels: [interest and shared
/// state](crate#interest-and-shared-state).
///
/// # More cores
///
/// One map uses one core; run several maps on several threads ([scaling to more
/// cores](crate#scaling-to-more-cores)).
///
/// # The default map
///
/// Code that never names a map uses the thread's default map ([`socket_map`]), as asyncore's
/// functions default to the module-global `socket_map`. There is one per thread, because a map
/// lives on one thread.
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

pub(crate) struct MapInner {
    entries: RefCell<BTreeMap<ChannelId, Rc<Entry>>>,
    /// The entries with `InterestScope::Shared`, which the interest sweep asks again.
    shared: RefCell<BTreeMap<ChannelId, Rc<Entry>>>,
    local: LocalSet,
    /// Shared with the channel tasks, which read it before every wait and every callback.
    pub(crate) state: Rc<LoopState>,
    running: Cell<bool>,
    /// Native tasks that count as members ([`Map::spawn`]), by a never-reused number.
    members: RefCell<HashMap<u64, AbortHandle>>,
    next_member: Cell<u64>,
    /// Cancelled when a graceful shutdown begins.
    shutdown: CancellationToken,
    pub(crate) remote: Arc<Remote>,
    watchdog: watchdog::Watchdog,
    /// How often the `InterestScope::Own` channels are audited (`None`: never).
    audit_every: Cell<Option<Duration>>,
    /// The audit's task, while it runs (from the first `Own` channel on).
    audit: RefCell<Option<AbortHandle>>,
    /// What closed channels did in their lives, for the snapshots' totals.
    retired: Cell<observe::Retired>,
    /// What the previous snapshot saw, once one was taken.
    observer: RefCell<Option<Box<observe::Observer>>>,
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
        let (remote, requests) = Remote::new();
        let inner = Rc::new(MapInner {
            entries: RefCell::new(BTreeMap::new()),
            shared: RefCell::new(BTreeMap::new()),
            local: LocalSet::new(),
            state: Rc::default(),
            running: Cell::new(false),
            members: RefCell::new(HashMap::new()),
            next_member: Cell::new(0),
            shutdown: CancellationToken::new(),
            remote: Arc::new(remote),
            watchdog: watchdog::Watchdog::default(),
            audit_every: Cell::new(Some(sweep::AUDIT_INTERVAL)),
            audit: RefCell::new(None),
            retired: Cell::default(),
            observer: RefCell::new(None),
        });
        inner
            .local
            .spawn_local(remote::serve_requests(Rc::downgrade(&inner), requests));
        inner
            .local
            .spawn_local(sweep::sweep(Rc::downgrade(&inner), Rc::clone(&inner.state)));
        Map { inner }
    }

    pub(crate) fn from_inner(inner: Rc<MapInner>) -> Map {
        Map { inner }
    }

    pub(crate) fn inner(&self) -> &Rc<MapInner> {
        &self.inner
    }

    /// Adds `channel` to the map with `dispatcher` as its callbacks, and starts its task; the
    /// task runs while the map runs. Returns the channel's id.
    ///
    /// Callable from anywhere on the map's thread, callbacks included; a channel added during a
    /// lock-step pass joins at the next pass.
    ///
    /// # Errors
    /// `NotConnected` if the channel was already closed.
    pub fn add<D: Dispatcher>(
        &self,
        mut channel: Channel,
        mut dispatcher: D,
    ) -> io::Result<ChannelId> {
        if channel.is_closed() {
            return Err(closed_channel("add"));
        }
        let inner = &self.inner;
        let link: Weak<dyn Membership> = Rc::downgrade(inner) as Weak<dyn Membership>;
        channel.link = crate::channel::MapLink::new(link);
        let id = channel.id();
        let type_name = std::any::type_name::<D>();
        // A root span: a channel is not part of whatever created it (the listener that
        // accepted it, a handle's request), and its lines read `channel{id=#2 ...}` alone.
        let span = tracing::debug_span!(
            parent: None,
            "channel",
            id = %id,
            fd = channel.fileno(),
            dispatcher = %ShortTypeName(type_name),
            peer = channel.addr().map(tracing::field::display),
        );
        span.in_scope(|| dispatcher.handle_added(&mut channel));
        let entry = Rc::new(Entry::new(
            channel,
            Box::new(dispatcher),
            type_name,
            &inner.state,
            &span,
        ));
        let was_empty = inner.is_empty();
        inner.entries.borrow_mut().insert(id, Rc::clone(&entry));
        match entry.scope {
            InterestScope::Shared => {
                inner.shared.borrow_mut().insert(id, Rc::clone(&entry));
                inner.state.shared_joined();
            }
            InterestScope::Own => inner.start_audit(),
        }
        if was_empty {
            inner.remote.set_empty(false);
        }
        if !inner.running.get() {
            inner.watchdog.arm(&inner.remote, id, type_name);
        }
        #[cfg(tokio_unstable)]
        let name = task_name(&entry);
        #[cfg(not(tokio_unstable))]
        let name = ();
        // Without a subscriber that wants the span, entering and leaving it on every poll is
        // pure cost; the task then runs bare.
        if span.is_disabled() {
            spawn_channel(&inner.local, drive(entry), name);
        } else {
            spawn_channel(&inner.local, drive(entry).instrument(span), name);
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
    ///
    /// Like a callback, each step of the task may change state that dispatchers' `readable()`
    /// or `writable()` read: channels with [`InterestScope::Shared`] are asked again after it.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) -> AbortHandle {
        let inner = &self.inner;
        let number = inner.next_member.get();
        inner.next_member.set(number + 1);
        let leave = Member {
            map: Rc::downgrade(inner),
            number,
        };
        let handle = inner.spawn_local(async move {
            let _leave = leave;
            task.await;
        });
        inner.members.borrow_mut().insert(number, handle.clone());
        inner.remote.set_empty(false);
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

    /// Asks channel `id` for its interest again (`readable()`, `writable()`): what a dispatcher
    /// with [`InterestScope::Own`] needs after code outside its callbacks changed what those
    /// read (a shared buffer, a flag). Cheap and idempotent: the channel's task asks once,
    /// however many wakes came first. False if no such channel is in the map.
    ///
    /// Not needed after [`Map::with`] or a handle's `call` on the channel (they ask again
    /// themselves), nor for channels with [`InterestScope::Shared`].
    pub fn wake(&self, id: ChannelId) -> bool {
        match self.entry(id) {
            Some(entry) => {
                entry.poke();
                true
            }
            None => false,
        }
    }

    /// Sets how often the map audits its channels with [`InterestScope::Own`] (every second by
    /// default), or with `None` turns the audit off.
    ///
    /// The audit is the safety net for a forgotten [`Map::wake`]: it asks each `Own` channel
    /// for its interest, wakes one that waits for the wrong thing, and names it in a `WARN`
    /// line. Its cost is a timer that stays armed while the map runs: on a thread with no
    /// other timer, each park of the runtime then reads the clock and looks at the timer wheel
    /// (about 170 instructions per wake-up). A server whose `Own` dispatchers are changed only
    /// by their own callbacks, [`Map::with`] and handle calls can turn it off.
    pub fn set_interest_audit(&self, every: Option<Duration>) {
        let inner = &self.inner;
        inner.audit_every.set(every);
        if let Some(audit) = inner.audit.borrow_mut().take() {
            audit.abort();
        }
        let has_own = inner
            .entries
            .borrow()
            .values()
            .any(|entry| entry.scope == InterestScope::Own);
        if has_own {
            inner.start_audit();
        }
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
        let inner = &self.inner;
        let entries = std::mem::take(&mut *inner.entries.borrow_mut());
        let shared = std::mem::take(&mut *inner.shared.borrow_mut());
        inner.state.shared_left(shared.len());
        for entry in entries.into_values() {
            inner.retire_callbacks(&entry);
            entry.close();
            entry.notify_closed();
        }
        // After the closes: a TLS channel's close may leave a member to flush its last records,
        // which goes too.
        let members = std::mem::take(&mut *inner.members.borrow_mut());
        for member in members.into_values() {
            member.abort();
        }
        inner.emptied();
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

    pub(crate) fn entry(&self, id: ChannelId) -> Option<Rc<Entry>> {
        self.inner.entry(id)
    }
}

impl Channel {
    /// The map this channel belongs to, or `None` before it is added and after it closes.
    pub fn map(&self) -> Option<Map> {
        map_of(self).map(Map::from_inner)
    }
}

/// The map `channel` is in, for the layers above the map (work started by a callback).
pub(crate) fn map_of(channel: &Channel) -> Option<Rc<MapInner>> {
    let any: Rc<dyn Any> = channel.link.upgrade()?.as_any();
    any.downcast::<MapInner>().ok()
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

impl Membership for MapInner {
    /// Removes a closed channel.
    fn leave(&self, id: ChannelId, traffic: Traffic) {
        self.retire_traffic(traffic);
        let removed = self.entries.borrow_mut().remove(&id);
        if let Some(entry) = removed {
            self.retire_callbacks(&entry);
            if self.shared.borrow_mut().remove(&id).is_some() {
                self.state.shared_left(1);
            }
            entry.poke();
            entry.notify_closed();
            if self.is_empty() {
                self.emptied();
            }
        }
    }

    fn linger(self: Rc<Self>, task: std::pin::Pin<Box<dyn Future<Output = ()>>>) {
        Map::from_inner(self).spawn(task);
    }

    fn as_any(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }
}

impl MapInner {
    /// Starts the audit of `Own` channels, unless it runs or is turned off.
    fn start_audit(self: &Rc<Self>) {
        let Some(every) = self.audit_every.get() else {
            return;
        };
        let mut audit = self.audit.borrow_mut();
        if audit.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let task = sweep::audit(Rc::downgrade(self), Rc::clone(&self.state), every);
        *audit = Some(self.local.spawn_local(task).abort_handle());
    }

    fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty() && self.members.borrow().is_empty()
    }

    /// Starts a task on the map's thread (a member, or work started by a callback). Each of
    /// its steps counts as a callback for the interest sweep: it may change shared state.
    pub(crate) fn spawn_local(&self, task: impl Future<Output = ()> + 'static) -> AbortHandle {
        let state = Rc::clone(&self.state);
        self.local
            .spawn_local(async move {
                let mut task = std::pin::pin!(task);
                poll_fn(|cx| {
                    let polled = task.as_mut().poll(cx);
                    state.touch();
                    polled
                })
                .await
            })
            .abort_handle()
    }

    /// Hands the result of a channel's work to that channel; dropped if it has closed.
    pub(crate) fn deliver(&self, id: ChannelId, completion: crate::driver::Completion) {
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

    fn emptied(&self) {
        self.remote.set_empty(true);
        self.state.wake_runner();
    }
}

impl Drop for MapInner {
    fn drop(&mut self) {
        self.state.end();
        self.remote.set_empty(true);
    }
}

/// Starts a channel's task on the map's `LocalSet`.
#[cfg(not(tokio_unstable))]
fn spawn_channel(local: &LocalSet, task: impl Future<Output = ()> + 'static, _name: ()) {
    local.spawn_local(task);
}

/// Starts a channel's task on the map's `LocalSet`, named for tokio-console (`channel #12
/// EchoHandler 127.0.0.1:53312`): built with `--cfg tokio_unstable`, Tokio's task builder
/// exists and its spawn span carries the name.
#[cfg(tokio_unstable)]
fn spawn_channel(local: &LocalSet, task: impl Future<Output = ()> + 'static, name: String) {
    if let Err(error) = tokio::task::Builder::new()
        .name(&name)
        .spawn_local_on(task, local)
    {
        tracing::error!(%error, "cannot start the task of {name}");
    }
}

/// The name of a channel's task: its id, dispatcher and peer.
#[cfg(tokio_unstable)]
fn task_name(entry: &Entry) -> String {
    use std::fmt::Write;
    let mut name = format!("channel {} {}", entry.id, ShortTypeName(entry.type_name));
    if let Some(peer) = entry.channel.borrow().addr() {
        let _ = write!(name, " {peer}");
    }
    name
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

pub(crate) fn not_found(id: ChannelId) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no channel {id} in the map"),
    )
}
