//! Python's asyncore on Tokio: a dispatcher per socket, a map of channels, and a loop that runs
//! until the map is empty, with every dispatcher a Tokio task.
//!
//! The crate is for Unix only (Linux, the BSDs, macOS): it works with raw file descriptors,
//! Unix sockets, pipes and Unix signals. On any other target it does not compile.
//!
//! # The model
//!
//! asyncore programs are built from three things, and so is this crate:
//!
//! - a [`Dispatcher`]: your struct, with asyncore's callbacks (`readable`, `writable`,
//!   `handle_read`, `handle_write`, `handle_accept`, `handle_connect`, `handle_close`,
//!   `handle_error`, …), each with asyncore's default;
//! - a [`Channel`]: the socket and its state (`accepting`, `connected`, `connecting`), with
//!   asyncore's non-blocking operations (`bind`, `listen`, `connect`, `accept`, `send`, `recv`,
//!   `close`), passed to every callback;
//! - a [`Map`]: the channels one reactor serves, asyncore's `socket_map`, with its loop:
//!   [`Map::run`] returns when the map is empty, [`Map::run_count`] makes exactly `count`
//!   lock-step passes, [`Map::poll`] makes one and tells what happened in it.
//!
//! # What runs where
//!
//! - **One thread per map.** A [`Map`] is `!Send`: it stays on the thread that made it, and
//!   everything it runs runs there. Code that never names a map uses the thread's default map
//!   ([`socket_map`], [`add`], [`run`]), one per thread.
//! - **Each channel a task.** [`Map::add`] makes the channel a Tokio task on the map's own
//!   [`LocalSet`](https://docs.rs/tokio/1/tokio/task/struct.LocalSet.html). The task asks its dispatcher what it waits for,
//!   awaits exactly that readiness, and turns it into callbacks. The callbacks of one map run one
//!   at a time, never two at once (asyncore's single-threaded guarantee), so dispatchers may
//!   share state through `Rc<RefCell<_>>` as Python objects share it, and reach each other with
//!   [`Map::with`].
//! - **Only while the map runs.** The tasks make progress while the map is being run: freely by
//!   [`Map::run`], [`Map::run_until`] or [`Map::serve`], in lock-step passes by
//!   [`Map::run_count`] or [`Map::poll`]. Between runs they are frozen, like an asyncore
//!   program between calls to `loop()`. A map that holds channels but that nothing runs says
//!   so in a `WARN` line.
//! - **Handles from other threads.** Native async code on any thread reaches a map through a
//!   [`MapHandle`] ([`Map::handle`], `Send + Clone`) and one channel through a
//!   [`ChannelHandle`]: each request runs on the map's thread, between callbacks, and its answer
//!   comes back to the caller. A callback hands slow work the other way with
//!   [`Channel::spawn`], whose result comes back as a callback.
//!
//! Readiness itself comes from the runtime's I/O driver, on whichever thread polls it: in a
//! multi-thread runtime a worker thread may record an event that the map's thread then
//! dispatches.
//!
//! # An echo server
//!
//! Python's documentation example, line for line:
//!
//! ```no_run
//! use std::io;
//! use asyncore::{Address, Channel, Dispatcher, Family};
//!
//! struct EchoHandler;
//!
//! impl Dispatcher for EchoHandler {
//!     fn writable(&self, _: &Channel) -> bool {
//!         false // send() below writes what it can at once; see examples/echo_server.rs
//!     }
//!     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
//!         let data = channel.recv(8192)?;
//!         channel.send(&data)?;
//!         Ok(())
//!     }
//! }
//!
//! struct EchoServer;
//!
//! impl Dispatcher for EchoServer {
//!     fn handle_accepted(&mut self, channel: &mut Channel, sock: Channel, addr: Address) -> io::Result<()> {
//!         println!("Incoming connection from {addr}");
//!         channel.map().expect("in a map").add(sock, EchoHandler)?;
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> io::Result<()> {
//!     let mut server = Channel::create_socket(Family::Inet)?;
//!     server.set_reuse_addr()?;
//!     server.bind("127.0.0.1:8080")?;
//!     server.listen(128)?;
//!     asyncore::add(server, EchoServer)?;
//!     asyncore::run().await
//! }
//! ```
//!
//! # Hosting a map in a multi-thread runtime
//!
//! The usual Tokio application runs `#[tokio::main]` with worker threads. A map fits in it in
//! one of two ways:
//!
//! - **On `block_on`.** `#[tokio::main]` runs `main`'s body with `block_on` on the main thread,
//!   which is not a worker: make the map there and run it there. Native tasks started with
//!   `tokio::spawn` run on the workers and reach the map through its [`MapHandle`]
//!   (the examples of [`MapHandle`] and [`ChannelHandle`] are such programs).
//! - **On a thread of its own.** A `std::thread` with a current-thread runtime makes the map and
//!   runs it with [`Map::serve`], which keeps serving while the map is empty; the application
//!   feeds it channels with [`MapHandle::add`]. [`Map::serve`] shows the whole shape, with a
//!   graceful shutdown.
//!
//! Never call [`add`] (or use [`socket_map`]) from a task spawned with `tokio::spawn`: that
//! task runs on a worker thread, and the channel lands in the worker's default map, which
//! nothing can run (running a map is not `Send`, so it cannot be spawned there). The crate
//! notices: when a map has held a channel for two seconds without running, a `WARN` line names
//! the channel, says that nothing has run that map, and says what to do instead.
//!
//! # Interest and shared state
//!
//! asyncore asks every channel's `readable()` and `writable()` before every `select`. That is
//! what lets a dispatcher's interest depend on another dispatcher: in the classic port
//! forwarder, the connection to the remote end is writable while a buffer that the client's
//! connection fills is not empty, and it starts writing as soon as the other side has read.
//!
//! Here each channel's task asks its own dispatcher before it waits, so after the channel's
//! own callbacks it always waits for the right thing. What *other* code changes is covered by
//! the scope the dispatcher declares with [`Dispatcher::interest_scope`]:
//!
//! - [`InterestScope::Shared`], the default: after every batch of callbacks on the map, whoever
//!   ran them (another channel, a member task of [`Map::spawn`], a handle's request), the map
//!   asks every `Shared` channel again and wakes those whose answer changed. A port of
//!   asyncore code keeps working unchanged.
//! - [`InterestScope::Own`]: the answers depend only on the dispatcher's own fields and its
//!   channel. The channel is asked again after its own callbacks, after [`Map::with`] and
//!   handle calls on it, and after [`Map::wake`] or [`ChannelHandle::wake`]: call one of those
//!   after changing, from outside the channel's callbacks, what its `readable()` or
//!   `writable()` read.
//!
//! The cost of `Shared` is one `readable()`/`writable()` call per `Shared` channel per batch of
//! callbacks. A batch is what the map's thread runs before the map's sweep gets its turn:
//! Tokio runs a `LocalSet`'s tasks in the order they were woken, so one batch holds the
//! callbacks of every channel that became ready together. `Own` channels cost nothing on
//! others' behalf, which is the speed of a native Tokio task; a map of many independent
//! connections (echo handlers, asynchat connections fed through [`Map::with`]) should declare
//! them `Own`. Lock-step passes ([`Map::poll`]) ask every channel before every pass, whatever
//! its scope, as asyncore does.
//!
//! A forgotten wake does not hang a channel for good: once a second, a map with `Own` channels
//! audits them, and one whose answer changed without a wake is woken and named in a `WARN`
//! line ("stale interest …") that says to call [`Map::wake`] or to declare the channel
//! `Shared`. The audit keeps a timer armed; [`Map::set_interest_audit`] changes its interval
//! or turns it off for a map whose `Own` channels are changed only by their own callbacks.
//!
//! # The reactor, step by step
//!
//! For each channel, repeatedly:
//!
//! 1. `readable()` and `writable()` are asked (never `WRITE` for a listener; always `WRITE` while
//!    a connect is pending), and again when [interest](crate#interest-and-shared-state) may
//!    have changed;
//! 2. the channel's task awaits that readiness (Tokio's `poll_read_ready`/`poll_write_ready`),
//!    and nothing when it wants nothing;
//! 3. a read event runs `handle_accept` (listener) or `handle_connect` (first event of a
//!    connect) then `handle_read`; a write event runs `handle_connect` (if pending) then
//!    `handle_write` (if `writable()` said yes); urgent data runs `handle_expt`; a
//!    `handle_connect` that fails leaves the connect pending, for the next event to retry;
//! 4. end of file or a disconnect seen by `recv`/`send` runs `handle_close` after the callback;
//!    a returned error or a panic runs `handle_error`; `WouldBlock` is "nothing to do";
//!    [`ExitNow`] stops the loop.
//!
//! # When readiness clears
//!
//! Readiness is Tokio's cached readiness. The runtime's I/O driver sets it when the kernel
//! reports an event, and it stays set, so the channel is dispatched again and again as
//! asyncore's level-triggered `select` would report it, until an operation shows it gone:
//!
//! - an operation returns `WouldBlock` (a `recv` with nothing to read, a `send` into a full
//!   buffer);
//! - on a stream socket (and a pipe), a read or write comes back short, fewer bytes than asked
//!   for: the socket is drained or full. This is Tokio's own rule, kept on systems whose
//!   readiness is edge-triggered (Linux, the BSDs, macOS); it does not apply to a channel
//!   watched for urgent data (a read stops short at the urgent mark) nor to a vectored write.
//!
//! Either way the readiness is cleared as it was observed *before* the operation: an event that
//! the I/O driver recorded while the operation ran (data that arrived just after a read drained
//! the socket, perhaps seen by a worker thread) survives the clear and wakes the channel again.
//! So a handler that reads only part of what is waiting is called again at once, and one that
//! reads everything is called again when more arrives, never later.
//!
//! # Scaling to more cores
//!
//! A map is one reactor on one thread, and a busy map uses one core. To use more, run several
//! maps on several threads, each a `std::thread` with a current-thread runtime (or one of them
//! on `block_on`), and split the connections between them: each map with a listener of its own
//! on the same port (`SO_REUSEPORT`, through [`Channel::socket`]), or one acceptor handing
//! connections to the others with [`MapHandle::add`]. A map takes no locks on its hot path;
//! dispatchers on different maps share only what is `Send` and reach each other through
//! handles.
//!
//! # Buffered output, datagrams, files and urgent data
//!
//! - [`SendBuffer`]: asyncore's `dispatcher_with_send` output buffer as a part any dispatcher
//!   can own (queue, then send one chunk of at most 64 KiB per write event), with asyncio's
//!   high and low water marks so that a slow reader cannot make it grow without bound.
//! - Datagram channels: [`Channel::create_datagram_socket`] for UDP over IPv4 and IPv6 and
//!   Unix datagram sockets, with [`Channel::sendto`] and [`Channel::recvfrom`]; one datagram
//!   per receive, empty datagrams are not end of file, truncation and oversize datagrams are
//!   errors that say so.
//! - File channels: [`Channel::from_fd`], asyncore's `file_dispatcher`, for pipes, terminals,
//!   devices and regular files (which epoll refuses: they are served as always ready, as
//!   `select` reports them).
//! - Urgent data: [`Channel::set_urgent_events`] turns on `handle_expt` for a TCP channel's
//!   out-of-band bytes, read with [`Channel::recv_urgent`].
//! - Hand-over: [`Channel::take_stream`] takes a connection out of the map as a
//!   [`NativeStream`] for native Tokio code; [`Channel::from_tcp`] and [`Channel::from_unix`]
//!   bring one in.
//!
//! # asynchat
//!
//! [`chat`]: asynchat's `async_chat` as [`chat::AsyncChat`], a dispatcher that frames input at
//! a terminator (bytes of any length, a count, or none) for a [`chat::ChatHandler`]'s
//! `collect_incoming_data`/`found_terminator`, and queues output (`push`, producers,
//! `close_when_done`), with a maximum record length, water marks on the output, and a
//! hand-over of the connection, unparsed bytes included, to native Tokio code.
//!
//! # TLS
//!
//! A stream channel speaks TLS ([rustls](https://docs.rs/rustls/0.23), module [`tls`]) from
//! the moment it calls [`Channel::start_tls`]:
//!
//! - **A server**, in `handle_accepted`: `conn.start_tls_server(config)?`, then `Map::add` as
//!   usual. [`tls::server_config`] reads a certificate chain and key from PEM files.
//! - **A client**, right after `connect`: `channel.start_tls_client(config, "example.com")?`
//!   ([`tls::client_config`] trusts the system's roots, [`tls::client_config_with_ca`] a
//!   private CA).
//! - **STARTTLS**, at any moment of a plaintext conversation, exactly there: what `send` took
//!   before went out in the clear, output the dispatcher still owes in the clear goes first
//!   ([`tls::Upgrade::plaintext_first`]; an asynchat connection's queued output does so by
//!   itself with [`Chat::start_tls`](chat::Chat::start_tls)), and nothing the socket delivers
//!   afterwards reaches the dispatcher unless it came through TLS. Plaintext the peer sent
//!   after its upgrade command is refused, never taken for protected input.
//!
//! The dispatcher keeps its callbacks, and its `recv` and `send` carry plaintext. The reactor
//! does what Python's `ssl` left to the program:
//!
//! - it drives the handshake and writes the records, whatever `readable()` and `writable()`
//!   say; read and write events resume when the handshake has completed, after
//!   [`Dispatcher::handle_tls_ready`], where [`Channel::peer_certificates`] and
//!   [`Channel::alpn_protocol`] are known;
//! - a channel with decrypted bytes waiting is readable though its socket is not
//!   ([`Channel::has_buffered_input`], asked with `readable()` for every dispatcher);
//! - records the socket had no room for are flushed on its write readiness without
//!   `handle_write`; `writable()` is answered with a write event once nothing waits and
//!   `send` has room again;
//! - a failure reaches `handle_error` with an `io::Error` that says which: a certificate that
//!   is not trusted, has expired or names another host, an alert, bytes that are not TLS (all
//!   `InvalidData`, with the rustls error behind them: [`tls::rustls_error`]), the peer
//!   closing during the handshake, or a stream that ends without `close_notify`
//!   (`UnexpectedEof`, [`tls::is_truncation`]: an error, not end of file);
//! - [`Channel::close`] sends `close_notify` and lets the records still waiting go out (a
//!   member task of the map flushes them, for up to 10 s);
//!   [`Channel::shutdown`]`(Write)` is `close_notify` then FIN, a half-close; deadlines,
//!   [`Map::shutdown`] and lock-step passes work as on plaintext ([`Ready::TLS`] and
//!   [`Event::TlsReady`] show the handshake in a [`Pass`]); [`Channel::take_stream`] hands the
//!   connection over with its session as a [`TlsStream`].
//!
//! ```no_run
//! use std::{io, sync::Arc};
//! use asyncore::{tls, Address, Channel, Dispatcher, Family};
//!
//! struct TlsEchoServer { config: Arc<tls::ServerConfig> }
//!
//! impl Dispatcher for TlsEchoServer {
//!     fn handle_accepted(&mut self, channel: &mut Channel, mut conn: Channel, _: Address) -> io::Result<()> {
//!         conn.start_tls_server(self.config.clone())?; // the reactor runs the handshake
//!         channel.map().expect("in a map").add(conn, Echo)?;
//!         Ok(())
//!     }
//! }
//!
//! struct Echo;
//!
//! impl Dispatcher for Echo {
//!     fn writable(&self, _: &Channel) -> bool { false }
//!     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
//!         let data = channel.recv(8192)?; // plaintext
//!         channel.send(&data)?; // encrypted on the way out (see examples/echo_server.rs)
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> io::Result<()> {
//!     let config = Arc::new(tls::server_config("cert.pem", "key.pem")?);
//!     let mut server = Channel::create_socket(Family::Inet)?;
//!     server.set_reuse_addr()?;
//!     server.bind("127.0.0.1:8443")?;
//!     server.listen(128)?;
//!     asyncore::add(server, TlsEchoServer { config })?;
//!     asyncore::run().await
//! }
//! ```
//!
//! # Watching it
//!
//! [How a readiness reactor works](guide) is a chapter of its own: one pass, drawn; how the
//! free-running mode differs; where Tokio's readiness cache comes in. To watch the reactor:
//!
//! - **Tracing.** Everything is traced with [`tracing`](https://docs.rs/tracing/0.1) and
//!   silent until a subscriber is installed. Each channel has a root `channel` span (`id`,
//!   `fd`, `dispatcher`, `peer`) at `DEBUG`, not nested in whoever created it, and everything
//!   the reactor runs for the channel is inside it (a graceful shutdown's `handle_close` and
//!   the interest sweep's re-asks too). At `TRACE`, each callback is an event, and so is what
//!   the channel asked for (`wants READ|WRITE`) and what readiness arrived (`ready READ`).
//!   Busy loops, stale interest, unrun maps and errors are `WARN` and `ERROR`.
//! - **Passes.** For one deterministic pass at a time, [`Map::poll`] returns a [`Pass`]: who
//!   wanted what, what was ready, which callbacks ran (`examples/tour.rs` prints them).
//! - **Snapshots.** [`Map::snapshot`] (and [`MapHandle::snapshot`] from any thread) shows
//!   every channel as it is now: state, interest, readiness last seen, buffers, bytes,
//!   callbacks, how long it has been quiet, whether it spins or is stalled
//!   ([`MapSnapshot`]); `examples/top.rs` draws them live.
//! - **tokio-console.** Built with `--cfg tokio_unstable`, each channel's task is named
//!   `channel #12 EchoHandler 127.0.0.1:53312`; `examples/console.rs` (feature `console`) is
//!   the recipe.
//!
//! # Differences from Python's asyncore
//!
//! Collected in `MIGRATION.md`; each item's docs say what differs for it. In short: channels are
//! keyed by a never-reused [`ChannelId`] instead of the fd; `handle_close` runs at most once and
//! nothing runs after `close`; `WouldBlock` from `recv` is never an error; `handle_connect`
//! always runs from the reactor, with `connected()` already true; diagnostics go to `tracing`,
//! never stdout; accept errors such as `EMFILE` pause the listener instead of closing it.

#![deny(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unsafe_code
)]
#![doc(test(attr(deny(warnings))))]

#[cfg(not(unix))]
compile_error!(
    "the asyncore crate supports Unix only (Linux, the BSDs, macOS): it is built on file \
     descriptors, Unix sockets and Unix signals, which this target does not have"
);

// The layers, from the bottom; each module uses only modules of the layers below its own
// (rustfmt sorts the declarations, so the order is given here):
//   address, error, event, loop_state, snapshot,     vocabulary and the loop's state;
//   tls, water_marks                                  TLS configurations, upgrades, errors
//   io                                                sockets and their readiness
//   channel, byte_queue, send_buffer                  a socket with asyncore's operations
//   dispatcher                                        the callbacks
//   driver                                            one channel's reactor
//   map                                               the map and its loop
//   pass, handle, work                                lock-step passes, handles, async work
//   chat                                              asynchat
// (`guide` is documentation only.)
mod address;
mod byte_queue;
mod channel;
pub mod chat;
mod dispatcher;
mod driver;
mod error;
mod event;
pub mod guide;
mod handle;
mod io;
mod loop_state;
mod map;
mod pass;
mod send_buffer;
mod snapshot;
pub mod tls;
mod water_marks;
mod work;

pub use address::{Address, Family, ToAddress};
pub use channel::{Channel, NativeStream, TlsStream};
pub use dispatcher::Dispatcher;
pub use error::ExitNow;
pub use event::{ChannelId, Event, Interest, InterestScope, Ready};
pub use handle::{ChannelHandle, MapHandle};
pub use map::{socket_map, Map};
pub use pass::Pass;
pub use send_buffer::{SendBuffer, SEND_CHUNK};
pub use snapshot::{Buffered, ChannelSnapshot, ChannelState, MapSnapshot, Rates, Totals};
pub use work::Work;

/// Re-exported for [`Channel::socket`]'s socket options.
pub use socket2;

use std::time::Duration;

/// Adds a channel to the thread's default map ([`Map::add`]).
pub fn add<D: Dispatcher>(channel: Channel, dispatcher: D) -> std::io::Result<ChannelId> {
    socket_map().add(channel, dispatcher)
}

/// Runs the thread's default map until it is empty ([`Map::run`]): asyncore's `loop()`.
pub async fn run() -> std::io::Result<()> {
    socket_map().run().await
}

/// Runs at most `count` lock-step passes over the default map ([`Map::run_count`]): asyncore's
/// `loop(timeout, count=count)`.
pub async fn run_count(timeout: Duration, count: usize) -> std::io::Result<()> {
    socket_map().run_count(timeout, count).await
}

/// One lock-step pass over the default map ([`Map::poll`]): asyncore's `poll(timeout)`.
pub async fn poll(timeout: Duration) -> std::io::Result<Pass> {
    socket_map().poll(timeout).await
}

/// Closes every channel of the default map ([`Map::close_all`]).
pub fn close_all() {
    socket_map().close_all()
}

/// Completes when the process receives SIGINT or SIGTERM: the `stop` future for
/// [`Map::run_until`] in a server's `main`.
///
/// # Errors
/// If the signal handlers cannot be installed (no Tokio runtime with signal support).
pub async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// The code blocks of README.md and MIGRATION.md, compiled and run as doctests.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../MIGRATION.md")]
    struct Migration;
}
