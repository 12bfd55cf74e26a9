//! Python's asyncore on Tokio: a dispatcher per socket, a map of channels, and a loop that runs
//! until the map is empty, with every dispatcher a Tokio task.
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
//! What runs where: a map lives on one thread; each of its channels is a Tokio task on the
//! map's `LocalSet`, awaiting exactly the readiness its dispatcher asks for and turning it into
//! callbacks, one at a time. Native async code reaches a map from any thread through a
//! [`MapHandle`]. The [`driver`](crate#the-reactor-step-by-step) section below gives the order
//! of events.
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
//! # The reactor, step by step
//!
//! For each channel, repeatedly:
//!
//! 1. `readable()` and `writable()` are asked (never `WRITE` for a listener; always `WRITE` while
//!    a connect is pending);
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
//! Readiness is Tokio's cached readiness. It is cleared when an operation returns
//! `WouldBlock`, and on a stream socket also when a read or write comes back short (fewer bytes
//! than asked for: the socket is drained or full, Tokio's own rule). A handler that reads only
//! part of what is waiting is called again at once, as asyncore's level-triggered `select`
//! would call it.
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
//!
//! # asynchat
//!
//! [`chat`]: asynchat's `async_chat` as [`chat::AsyncChat`], a dispatcher that frames input at
//! a terminator (bytes of any length, a count, or none) for a [`chat::ChatHandler`]'s
//! `collect_incoming_data`/`found_terminator`, and queues output (`push`, producers,
//! `close_when_done`), with a maximum record length, water marks on the output, and a
//! hand-over of the connection, unparsed bytes included, to native Tokio code.
//!
//! # Watching it
//!
//! Everything is traced with [`tracing`] and silent until a subscriber is installed. Each
//! channel has a `channel` span (`id`, `fd`, `dispatcher`, `peer`) at `DEBUG`; each callback is
//! a `TRACE` event; busy loops and errors are `WARN` and `ERROR`. For one deterministic pass at a
//! time, [`Map::poll`] returns a [`Pass`]: who wanted what, what was ready, which callbacks ran.
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

mod address;
mod byte_queue;
mod channel;
pub mod chat;
mod dispatcher;
mod driver;
mod error;
mod event;
mod handle;
mod handover;
mod io;
mod map;
mod pass;
mod send_buffer;
mod water_marks;
mod work;

pub use address::{Address, Family, ToAddress};
pub use channel::Channel;
pub use dispatcher::Dispatcher;
pub use error::ExitNow;
pub use event::{ChannelId, Event, Interest, Ready};
pub use handle::{ChannelHandle, MapHandle};
pub use handover::NativeStream;
pub use map::{socket_map, Map};
pub use pass::Pass;
pub use send_buffer::{SendBuffer, SEND_CHUNK};
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
