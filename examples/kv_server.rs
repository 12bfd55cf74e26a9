//! A line-based key-value server, half callbacks and half native async: its connections are
//! asynchat dispatchers on one map thread, and its store is a native Tokio task on the
//! runtime's worker threads that they talk to through channels and handles.
//!
//! ```text
//! cargo run --release --example kv_server [ADDR] [--stall-timeout SECS] [--idle-timeout SECS]
//! ```
//!
//! The protocol, one command per line (`\n` or `\r\n`), one answer line per command, in order:
//!
//! | command | answer |
//! |---|---|
//! | `SET key value` | `OK` (the value is the rest of the line, spaces included) |
//! | `GET key` | `VALUE value`, or `NOT_FOUND` |
//! | `DEL key` | `DELETED`, or `NOT_FOUND` |
//! | `WATCH key` | `WATCHING key`; from then on `CHANGED key value` / `DELETED key` lines whenever anyone changes it |
//! | `QUIT` | `BYE`, then the server closes the connection |
//! | anything else | `ERR ...`; a line over 16 KiB gets `ERR line too long` and the connection is closed |
//!
//! Both directions of the mix:
//!
//! - **callback to native**: a session hands each command to the store with
//!   [`Channel::spawn`] (an mpsc send and a oneshot reply, awaited off the callback) and gets
//!   the answer back as a callback on its own task, where it pushes the answer line. One
//!   command is in flight per connection, so answers keep the order of the commands.
//! - **native to callback**: the store pushes `CHANGED` lines to watchers through their
//!   [`ChannelHandle`]s (`call::<AsyncChat<Session>, ..>`, which runs on the map's thread), one
//!   forwarding task per watcher so that its notifications keep their order, and learns that a
//!   watcher left from [`ChannelHandle::closed`].
//!
//! # Watchers that do not read
//!
//! Notifications are bounded: at most [`WATCHER_BYTES`] per watcher and [`WATCH_BYTES`] for all
//! watchers together, counted from the moment the store makes a notification until the
//! watcher's socket has taken it. The store takes byte permits from two semaphores (the
//! watcher's and the server's) before it hands a notification on, and the forwarder queues,
//! right behind the lines it pushes, a [`Producer`] that holds their permits: the chat asks it
//! for output only once everything before it is sent, and it then lets the permits go.
//!
//! A change to a key whose watcher is at its bound waits: the store (and so every command)
//! is slowed to the watcher's speed, as a chat room is to its slowest member. A watcher that
//! takes nothing for `--stall-timeout` seconds (default 10) is dropped: the store forgets it
//! and closes its connection, and its queued notifications and their permits go with it.

mod support;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use asyncore::chat::{AsyncChat, Chat, ChatHandler, Producer};
use asyncore::{Address, Channel, ChannelHandle, ChannelId, Dispatcher, InterestScope};
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

const BACKLOG: u32 = 1024;

/// The longest command line; a longer one is an error and ends the connection.
const MAX_LINE: usize = 16 * 1024;

/// Commands read but not answered yet, per connection, beyond which it stops reading.
const MAX_PIPELINED: usize = 64;

/// Notification bytes one watcher may have made and not yet taken.
pub const WATCHER_BYTES: usize = 256 * 1024;

/// Notification bytes all watchers together may have made and not yet taken.
pub const WATCH_BYTES: usize = 16 * 1024 * 1024;

/// The default `--stall-timeout`: how long a watcher may take nothing before it is dropped.
const DEFAULT_STALL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The store: a native task

/// What a session asks the store.
enum Command {
    Get(Bytes),
    Set(Bytes, Bytes),
    Del(Bytes),
    Watch(Bytes, ChannelHandle),
    /// Sent by the store to itself when a watcher's channel has closed.
    Forget(ChannelId),
}

type Request = (Command, Option<oneshot::Sender<Bytes>>);

/// The store's address: `Send + Clone`, usable from any thread.
#[derive(Clone)]
struct Store {
    requests: mpsc::UnboundedSender<Request>,
}

impl Store {
    /// Starts the store on the runtime's worker threads; watchers that take nothing for
    /// `stall` are dropped.
    fn spawn(stall: Duration) -> Store {
        let (requests, inbox) = mpsc::unbounded_channel();
        tokio::spawn(serve(inbox, requests.downgrade(), stall));
        Store { requests }
    }

    /// The store's answer to `command`.
    async fn ask(self, command: Command) -> Bytes {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((command, Some(reply))).is_err() {
            return Bytes::from_static(b"ERR the store has stopped");
        }
        answer
            .await
            .unwrap_or_else(|_| Bytes::from_static(b"ERR the store has stopped"))
    }
}

/// A notification on its way to a watcher, with the byte permits it holds.
type Notification = (Bytes, [OwnedSemaphorePermit; 2]);

/// The store's side of one watching connection.
struct Watcher {
    handle: ChannelHandle,
    /// To its forwarding task, which keeps its notifications in order.
    lines: mpsc::UnboundedSender<Notification>,
    /// Its share of [`WATCHER_BYTES`].
    permits: Arc<Semaphore>,
}

/// The store's task; it ends when the last [`Store`] is dropped. `myself` is weak so that the
/// store does not keep itself alive.
async fn serve(
    mut inbox: mpsc::UnboundedReceiver<Request>,
    myself: mpsc::WeakUnboundedSender<Request>,
    stall: Duration,
) {
    let mut data: HashMap<Bytes, Bytes> = HashMap::new();
    let mut watchers: HashMap<Bytes, Vec<ChannelId>> = HashMap::new();
    let mut forwarders: HashMap<ChannelId, Watcher> = HashMap::new();
    let total = Arc::new(Semaphore::new(WATCH_BYTES));
    while let Some((command, reply)) = inbox.recv().await {
        let answer = match command {
            Command::Get(key) => match data.get(&key) {
                Some(value) => line(&[b"VALUE ", value]),
                None => Bytes::from_static(b"NOT_FOUND"),
            },
            Command::Set(key, value) => {
                let message = line(&[b"CHANGED ", &key, b" ", &value]);
                notify(&mut watchers, &mut forwarders, &total, stall, &key, message).await;
                data.insert(key, value);
                Bytes::from_static(b"OK")
            }
            Command::Del(key) => match data.remove(&key) {
                Some(_) => {
                    let message = line(&[b"DELETED ", &key]);
                    notify(&mut watchers, &mut forwarders, &total, stall, &key, message).await;
                    Bytes::from_static(b"DELETED")
                }
                None => Bytes::from_static(b"NOT_FOUND"),
            },
            Command::Watch(key, handle) => {
                let answer = line(&[b"WATCHING ", &key]);
                let id = handle.id();
                forwarders.entry(id).or_insert_with(|| {
                    let (lines, inbox) = mpsc::unbounded_channel();
                    let permits = Arc::new(Semaphore::new(WATCHER_BYTES));
                    tokio::spawn(forward(
                        handle.clone(),
                        inbox,
                        permits.clone(),
                        myself.clone(),
                    ));
                    Watcher {
                        handle,
                        lines,
                        permits,
                    }
                });
                let watching = watchers.entry(key).or_default();
                if !watching.contains(&id) {
                    watching.push(id);
                }
                answer
            }
            Command::Forget(id) => {
                forget(&mut watchers, &mut forwarders, id);
                continue;
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }
}

/// Hands `message` to every watcher of `key`, each within its bound and the server's: waits
/// for the permits (the store is slowed to the watchers' speed), and drops a watcher that
/// takes nothing for `stall`.
async fn notify(
    watchers: &mut HashMap<Bytes, Vec<ChannelId>>,
    forwarders: &mut HashMap<ChannelId, Watcher>,
    total: &Arc<Semaphore>,
    stall: Duration,
    key: &Bytes,
    message: Bytes,
) {
    let ids = watchers.get(key).cloned().unwrap_or_default();
    // A notification is at most a line (16 KiB) and a key: well within every bound.
    let size = (message.len() + 1) as u32;
    for id in ids {
        let Some(watcher) = forwarders.get(&id) else {
            continue;
        };
        let permits = tokio::time::timeout(stall, async {
            let own = watcher
                .permits
                .clone()
                .acquire_many_owned(size)
                .await
                .ok()?;
            let all = total.clone().acquire_many_owned(size).await.ok()?;
            Some([own, all])
        })
        .await;
        match permits {
            Ok(Some(permits)) => {
                if watcher.lines.send((message.clone(), permits)).is_err() {
                    forget(watchers, forwarders, id);
                }
            }
            // Its forwarder has stopped: the watcher is gone.
            Ok(None) => forget(watchers, forwarders, id),
            Err(_) => {
                warn!("dropping watcher {id}: it took no notification for {stall:?}");
                let handle = watcher.handle.clone();
                forget(watchers, forwarders, id);
                tokio::spawn(async move {
                    let _ = handle.close().await;
                });
            }
        }
    }
}

/// Forgets watcher `id`: its forwarder ends, and what it had queued goes with it.
fn forget(
    watchers: &mut HashMap<Bytes, Vec<ChannelId>>,
    forwarders: &mut HashMap<ChannelId, Watcher>,
    id: ChannelId,
) {
    if let Some(watcher) = forwarders.remove(&id) {
        watcher.permits.close();
    }
    watchers.retain(|_, watching| {
        watching.retain(|known| *known != id);
        !watching.is_empty()
    });
}

/// Lets a watcher's notification permits go when the chat asks it for output: everything
/// queued before it has then been sent.
struct Release(Vec<[OwnedSemaphorePermit; 2]>);

impl Producer for Release {
    fn more(&mut self) -> Bytes {
        self.0.clear();
        Bytes::new()
    }
}

/// Pushes each notification line to one watching connection, in order, through its handle
/// (the closure runs on the map's thread), with the permits they hold right behind them; when
/// the connection closes, tells the store to forget it.
async fn forward(
    handle: ChannelHandle,
    mut lines: mpsc::UnboundedReceiver<Notification>,
    permits: Arc<Semaphore>,
    store: mpsc::WeakUnboundedSender<Request>,
) {
    let closed = handle.closed();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            message = lines.recv() => {
                let Some(first) = message else { break };
                // Whatever else is waiting goes in the same call.
                let mut batch = vec![first];
                while batch.len() < 256 {
                    match lines.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let pushed = handle
                    .call::<AsyncChat<Session>, _, _>(move |chat, _| {
                        let chat = chat.chat_mut();
                        let mut held = Vec::with_capacity(batch.len());
                        for (message, permits) in batch {
                            chat.push_line(message);
                            held.push(permits);
                        }
                        chat.push_with_producer(Release(held));
                    })
                    .await;
                if let Err(e) = pushed {
                    debug!("watcher {} is gone: {e}", handle.id());
                    break;
                }
            }
            _ = &mut closed => break,
        }
    }
    // A store waiting for this watcher's permits stops waiting.
    permits.close();
    if let Some(store) = store.upgrade() {
        let _ = store.send((Command::Forget(handle.id()), None));
    }
}

fn line(parts: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.freeze()
}

// ---------------------------------------------------------------------------------------------
// A connection: an async_chat dispatcher

struct Session {
    store: Store,
    address: Address,
    /// Command lines read but not yet handed to the store.
    pending: VecDeque<Bytes>,
    /// A command is with the store; its answer comes back through `answered`.
    busy: bool,
    /// QUIT or a fatal error: nothing more is read or answered.
    done: bool,
}

/// What a command line asks for.
enum Parsed {
    Store(Command),
    Quit,
}

impl Session {
    /// Hands the next pending command to the store, answering what needs no store on the way.
    fn next(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        while !self.busy && !self.done {
            let Some(command_line) = self.pending.pop_front() else {
                return Ok(());
            };
            match parse(&command_line, channel) {
                Ok(Parsed::Quit) => {
                    chat.push_line("BYE");
                    self.finish(chat);
                }
                Ok(Parsed::Store(command)) => {
                    self.busy = true;
                    channel.spawn(self.store.clone().ask(command), Session::answered)?;
                }
                Err(message) => chat.push_line(format!("ERR {message}")),
            }
        }
        Ok(())
    }

    /// The store's answer, back on this connection's task.
    fn answered(
        this: &mut AsyncChat<Session>,
        channel: &mut Channel,
        answer: Bytes,
    ) -> io::Result<()> {
        let (session, chat) = this.parts_mut();
        chat.push_line(answer);
        session.busy = false;
        session.next(chat, channel)
    }

    /// Answers nothing more; closes once every answer already pushed has gone out.
    fn finish(&mut self, chat: &mut Chat) {
        self.done = true;
        self.pending.clear();
        chat.close_when_done();
    }
}

fn parse(command_line: &[u8], channel: &Channel) -> Result<Parsed, &'static str> {
    let text = std::str::from_utf8(command_line).map_err(|_| "commands are UTF-8 text")?;
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    let key = Bytes::copy_from_slice(key.as_bytes());
    let need_key = |key: &Bytes| {
        if key.is_empty() {
            Err("missing key")
        } else {
            Ok(())
        }
    };
    Ok(Parsed::Store(match verb.to_ascii_uppercase().as_str() {
        "GET" | "DEL" | "WATCH" if !value.is_empty() => return Err("extra words after the key"),
        "GET" => {
            need_key(&key)?;
            Command::Get(key)
        }
        "DEL" => {
            need_key(&key)?;
            Command::Del(key)
        }
        "SET" => {
            need_key(&key)?;
            Command::Set(key, Bytes::copy_from_slice(value.as_bytes()))
        }
        "WATCH" => {
            need_key(&key)?;
            let map = channel.map().ok_or("the connection is closing")?;
            Command::Watch(key, map.handle().channel(channel.id()))
        }
        "QUIT" if rest.is_empty() => return Ok(Parsed::Quit),
        "" => return Err("empty command"),
        _ => return Err("unknown command (GET, SET, DEL, WATCH, QUIT)"),
    }))
}

impl ChatHandler for Session {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // readable() reads this session and its chat only
    }

    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let command_line = chat.take_line();
        still_alive(channel);
        if !self.done {
            self.pending.push_back(command_line);
        }
        self.next(chat, channel)
    }

    fn readable(&self, chat: &Chat, _: &Channel) -> bool {
        // Back-pressure: a client that pipelines without reading its answers is not read.
        !self.done && self.pending.len() < MAX_PIPELINED && !chat.is_paused()
    }

    fn handle_close(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        info!("conn_closed: client_address={}", self.address);
        channel.close();
        Ok(())
    }

    fn handle_error(&mut self, chat: &mut Chat, channel: &mut Channel, error: io::Error) {
        if error.kind() == io::ErrorKind::InvalidData {
            // A line longer than MAX_LINE: say so, then close once that is sent.
            warn!("client {}: {error}", self.address);
            chat.discard_buffers();
            chat.push_line("ERR line too long");
            self.finish(chat);
        } else {
            warn!("client {}: {error}; closing", self.address);
            channel.close();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The listener

struct KvServer {
    store: Store,
}

impl Dispatcher for KvServer {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // a listener: it always wants to accept
    }

    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        conn: Channel,
        address: Address,
    ) -> io::Result<()> {
        info!("conn_made: client_address={address}");
        let mut conn = conn;
        still_alive(&mut conn);
        let session = Session {
            store: self.store.clone(),
            address,
            pending: VecDeque::new(),
            busy: false,
            done: false,
        };
        let mut chat = Chat::new(b"\n");
        chat.set_max_frame_len(MAX_LINE);
        channel
            .map()
            .expect("the server is in a map")
            .add(conn, AsyncChat::with_chat(session, chat))?;
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

fn start(address: std::net::SocketAddr, store: Store) -> io::Result<Address> {
    let (channel, bound) = support::listener(address, BACKLOG)?;
    asyncore::add(channel, KvServer { store })?;
    Ok(bound)
}

/// `--idle-timeout SECS`: a connection that sends no complete command for this long is closed
/// (off by default; a connection that only watches sends nothing, so keep it longer than
/// the quiet time of your watchers). Built on the channel's deadline.
static IDLE_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets (again) the idle deadline of a connection, if there is one.
fn still_alive(channel: &mut Channel) {
    if let Some(idle) = IDLE_TIMEOUT.get() {
        channel.set_timeout(*idle);
    }
}

/// `[ADDR] [--stall-timeout SECS] [--idle-timeout SECS]`, each error one line.
fn parse_args() -> Result<(String, Duration), String> {
    const USAGE: &str = "usage: kv_server [ADDR] [--stall-timeout SECS] [--idle-timeout SECS]";
    let mut address = None;
    let mut stall = DEFAULT_STALL;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stall-timeout" => {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--stall-timeout needs a value ({USAGE})"))?;
                stall = match value.parse::<f64>() {
                    Ok(secs) if secs > 0.0 && secs < 1e9 => Duration::from_secs_f64(secs),
                    _ => {
                        return Err(format!(
                        "invalid --stall-timeout {value:?} (expected a positive number of seconds)"
                    ))
                    }
                };
            }
            "--idle-timeout" => {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--idle-timeout needs a value ({USAGE})"))?;
                let idle = support::parse_seconds("--idle-timeout", &value)?;
                let _ = IDLE_TIMEOUT.set(idle);
            }
            option if option.starts_with("--") => {
                return Err(format!("unknown option {option:?} ({USAGE})"))
            }
            _ if address.is_none() => address = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?} ({USAGE})")),
        }
    }
    Ok((address.unwrap_or_else(|| "127.0.0.1:8080".into()), stall))
}

fn main() -> ExitCode {
    support::init_tracing();
    let (address, stall) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => return support::fail("kv_server", e),
    };
    let address = match support::parse_inet(&address) {
        Ok(address) => address,
        Err(e) => return support::fail("kv_server", e),
    };
    // Worker threads for the store and the watchers' pushes; the map runs on this thread,
    // inside `block_on`, where its `!Send` dispatchers may live.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return support::fail("kv_server", e),
    };
    runtime.block_on(async {
        match start(address, Store::spawn(stall)) {
            Ok(bound) => support::announce(bound),
            Err(e) => return support::fail("kv_server", e),
        }
        let map = asyncore::socket_map();
        let served = map.run_until(support::signal()).await;
        match served.and(map.shutdown(support::GRACE).await) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => support::fail("kv_server", e),
        }
    })
}
