//! The socket under a channel, and how its readiness is awaited.
//!
//! A channel's socket goes through states that asyncore keeps in flags: created (and perhaps
//! bound), then either listening or connecting/connected, then closed. Each state is a variant of
//! [`Io`], holding the Tokio type that fits it:
//!
//! - **Fresh**: a `socket2::Socket` from `create_socket`, not yet known to Tokio. It reports no
//!   readiness: asyncore's `select` would, but nothing useful can be done with it until
//!   `listen` or `connect`.
//! - **Stream**: a `tokio::net::TcpStream` or `UnixStream`, connected or connecting. Readiness is
//!   Tokio's cached readiness (`poll_read_ready`/`poll_write_ready`, see below): it stays set
//!   until the channel learns that the socket is drained or full, which is what makes dispatch
//!   level-triggered as in asyncore.
//! - **Listener**: a `tokio::net::TcpListener` or `UnixListener`. Tokio offers no readiness for
//!   listeners, only `poll_accept`, so the listener accepts when polled and keeps the connection
//!   in a one-slot stash: "readable" means "the stash is full", and `accept()` empties it (or
//!   returns `None`, asyncore's spurious wake-up). Resource exhaustion (`EMFILE`, `ENFILE`,
//!   `ENOBUFS`, `ENOMEM`) is logged and retried after a pause instead of spinning or closing
//!   the listener (asyncore's defect S10).
//!
//! - **Datagram**: a `tokio::net::UdpSocket` or `UnixDatagram` (module `datagram`), from
//!   `create_datagram_socket` on: usable at once, bound or not, connected or not.
//! - **File**: any other descriptor, from `from_fd` (module `file`): a pipe, terminal or device
//!   through `AsyncFd`, or a regular file, which epoll refuses, as always ready.
//!
//! # Cached readiness, and when it clears
//!
//! Tokio keeps, per registered descriptor, a readiness word: the directions (read, write,
//! error, ...) that epoll reported, and a tick that its I/O driver advances with every event it
//! records. The driver only sets readiness, from whichever thread polls it (in a multi-thread
//! runtime, a worker, while the map runs on another thread); a readiness poll only reads it. It
//! is cleared only by an operation that shows it gone:
//!
//! - an operation that returns `WouldBlock`;
//! - on edge-triggered systems, a read or write of a stream, or of a pipe, that transfers
//!   fewer bytes than it was offered: the socket is drained or full ([`short_transfer`]).
//!   Not a read of a stream watched for urgent data, which stops short at the urgent mark,
//!   and not a vectored write, which also stops at `IOV_MAX` buffers;
//! - collecting a datagram socket's pending error (`SO_ERROR`), which clears its `ERROR`
//!   readiness (module `datagram`).
//!
//! Each time it is cleared with the snapshot of the readiness (and its tick) taken *before*
//! the operation, never after: every such operation runs inside Tokio's `try_io`, through one
//! function, [`do_io`]. Tokio ignores a clear whose tick is not the latest, so an event the
//! driver recorded while the operation ran (data that came after the read had drained the
//! socket) stays set and wakes the channel. A clear with a snapshot taken after the operation
//! would erase it, and edge-triggered epoll never reports it again. (The urgent-data watch,
//! module `urgent`, clears `PRIORITY` through the guard of the event it waited for, which
//! carries that event's tick: the same rule.)
//!
//! Readiness polls go through Tokio's I/O registration, which consumes the task's cooperative
//! budget, so a channel that is always ready still yields to other tasks (the reactor relies on
//! this: it charges the budget itself only for wake-ups that are not readiness).

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BufMut;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::time::Sleep;

use crate::address::Address;
use crate::event::{Interest, Ready};

mod datagram;
mod file;
mod latch;
mod tls;
mod urgent;

pub(crate) use datagram::Datagram;
pub(crate) use file::FileIo;
pub(crate) use tls::{linger, Tls, TlsEvent};
pub(crate) use urgent::UrgentWatch;

/// Whether readiness events are edge-triggered (epoll, kqueue), so that a short read or write
/// proves the socket drained or full (see [`short_transfer`]).
const EDGE_TRIGGERED: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "illumos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "macos",
    target_os = "ios",
));

/// Whether a transfer of `n` bytes out of `asked` proves the descriptor drained (a read) or
/// full (a write), so that Tokio's cached readiness can be forgotten at once ([`do_io`]) rather
/// than after one more `recv` or `send` that would only return `WouldBlock` (a whole dispatch
/// and a system call per message). Tokio's own `poll_read` does the same. This is sound with
/// edge-triggered readiness only: data (or room) that comes later raises a new event. File
/// channels apply it to pipes only.
#[inline]
pub(crate) fn short_transfer(n: usize, asked: usize) -> bool {
    EDGE_TRIGGERED && 0 < n && n < asked
}

const READABLE: tokio::io::Interest = tokio::io::Interest::READABLE;
const WRITABLE: tokio::io::Interest = tokio::io::Interest::WRITABLE;

/// A Tokio I/O resource with cached readiness: what [`do_io`] needs of it.
pub(crate) trait CachedReadiness {
    /// Tokio's `try_io`: if the cached readiness has `interest`, takes a snapshot of it, runs
    /// `op`, and clears the readiness of that snapshot if `op` returns `WouldBlock`; without
    /// the readiness, returns `WouldBlock` at once.
    fn attempt<R>(
        &self,
        interest: tokio::io::Interest,
        op: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R>;
}

macro_rules! cached_readiness {
    ($($socket:ty),*) => {$(
        impl CachedReadiness for $socket {
            #[inline]
            fn attempt<R>(
                &self,
                interest: tokio::io::Interest,
                op: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                self.try_io(interest, op)
            }
        }
    )*};
}

cached_readiness!(
    TcpStream,
    UnixStream,
    tokio::net::UdpSocket,
    tokio::net::UnixDatagram
);

/// Runs one operation on `io` that may prove a readiness gone: every read and write of a
/// stream or file channel goes through here, and so does the collection of a datagram
/// socket's pending error.
///
/// The operation runs inside Tokio's `try_io`, which snapshots the readiness before it. When
/// the operation returns `WouldBlock`, or succeeds with a result that `gone` says proves the
/// readiness gone (a short read: the socket is drained), the readiness is cleared with that
/// snapshot. A clear carries the snapshot's tick, and Tokio ignores a clear whose tick is not
/// the latest: an event that the I/O driver (perhaps on another thread) recorded while the
/// operation ran survives, and wakes the channel for the data that came with it. Clearing with
/// a snapshot taken after the operation would erase that event, and with edge-triggered epoll
/// it never comes again: the channel would sleep with data in its socket.
///
/// A result that proves the readiness gone is kept aside while `try_io` sees `WouldBlock`, so
/// that it clears, then returned.
#[inline]
pub(crate) fn do_io<R>(
    io: &impl CachedReadiness,
    interest: tokio::io::Interest,
    op: impl FnOnce() -> io::Result<R>,
    gone: impl FnOnce(&R) -> bool,
) -> io::Result<R> {
    let kept = Cell::new(None);
    let result = io.attempt(interest, || {
        let value = op()?;
        if gone(&value) {
            kept.set(Some(value));
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(value)
    });
    match kept.into_inner() {
        Some(value) => {
            // `result` is the marker made above: an error of a bare kind, which owns nothing,
            // so forgetting it leaks nothing and skips its out-of-line destructor (this runs
            // once per short read or write).
            std::mem::forget(result);
            Ok(value)
        }
        None => result,
    }
}

/// The descriptor under a Tokio socket, for a system call made inside [`do_io`]'s `try_io`.
/// `send` and `send_vectored` pass `MSG_NOSIGNAL`: a peer gone is `EPIPE`, never `SIGPIPE`.
#[inline]
fn socket(fd: &impl std::os::fd::AsFd) -> socket2::SockRef<'_> {
    socket2::SockRef::from(fd)
}

/// How long a listener pauses after running out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) enum Io {
    Fresh(socket2::Socket),
    Stream(Stream),
    /// Boxed: a listener is three times the size of a stream, and every channel pays for the
    /// largest variant (memory per idle connection).
    Listener(Box<Listener>),
    Datagram(Datagram),
    File(FileIo),
    Closed,
}

pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

pub(crate) struct Listener {
    socket: ListenerSocket,
    stash: Option<io::Result<(Stream, Address)>>,
    backoff: Option<Pin<Box<Sleep>>>,
}

enum ListenerSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Io {
    /// Polls for the readiness `want` asks for; `Pending` registers the task for a wake-up.
    #[inline]
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>, want: Interest) -> Poll<Ready> {
        let ready = match self {
            Io::Stream(stream) => stream.poll_ready(cx, want),
            Io::Listener(listener) if want.is_read() => listener.poll_ready(cx),
            Io::Datagram(socket) => socket.poll_ready(cx, want),
            Io::File(file) => file.poll_ready(cx, want),
            _ => Ready::NONE,
        };
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(ready)
        }
    }

    pub(crate) fn fd(&self) -> Option<RawFd> {
        match self {
            Io::Fresh(socket) => Some(socket.as_raw_fd()),
            Io::Stream(Stream::Tcp(s)) => Some(s.as_raw_fd()),
            Io::Stream(Stream::Unix(s)) => Some(s.as_raw_fd()),
            Io::Listener(l) => Some(match &l.socket {
                ListenerSocket::Tcp(s) => s.as_raw_fd(),
                ListenerSocket::Unix(s) => s.as_raw_fd(),
            }),
            Io::Datagram(socket) => Some(socket.fd()),
            Io::File(file) => Some(file.fd()),
            Io::Closed => None,
        }
    }

    /// A borrowed `socket2` view of the socket, for options and calls Tokio does not wrap.
    pub(crate) fn sock_ref(&self) -> Option<socket2::SockRef<'_>> {
        Some(match self {
            Io::Fresh(socket) => socket2::SockRef::from(socket),
            Io::Stream(Stream::Tcp(s)) => socket2::SockRef::from(s),
            Io::Stream(Stream::Unix(s)) => socket2::SockRef::from(s),
            Io::Listener(l) => match &l.socket {
                ListenerSocket::Tcp(s) => socket2::SockRef::from(s),
                ListenerSocket::Unix(s) => socket2::SockRef::from(s),
            },
            Io::Datagram(socket) => socket.sock_ref(),
            Io::File(file) => file.sock_ref(),
            Io::Closed => return None,
        })
    }
}

impl Stream {
    #[inline]
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, want: Interest) -> Ready {
        // An `Err` here means the runtime is shutting down; report readiness so that the next
        // operation surfaces the error to the dispatcher instead of the channel hanging.
        let mut ready = Ready::NONE;
        if want.is_read() {
            let polled = match self {
                Stream::Tcp(s) => s.poll_read_ready(cx),
                Stream::Unix(s) => s.poll_read_ready(cx),
            };
            if polled.is_ready() {
                ready = ready | Ready::READ;
            }
        }
        if want.is_write() {
            let polled = match self {
                Stream::Tcp(s) => s.poll_write_ready(cx),
                Stream::Unix(s) => s.poll_write_ready(cx),
            };
            if polled.is_ready() {
                ready = ready | Ready::WRITE;
            }
        }
        ready
    }

    /// Reads into `buf`. A short read proves the socket drained and clears the cached read
    /// readiness (see [`do_io`]), unless `short_read_drains` is false: a stream watched for
    /// urgent data stops short at the urgent mark with more data behind it.
    #[inline]
    pub(crate) fn try_read_buf<B: BufMut>(
        &self,
        buf: &mut B,
        short_read_drains: bool,
    ) -> io::Result<usize> {
        let asked = buf.chunk_mut().len();
        let drained = |&n: &usize| short_read_drains && short_transfer(n, asked);
        match self {
            Stream::Tcp(s) => do_io(s, READABLE, || s.try_read_buf(buf), drained),
            Stream::Unix(s) => do_io(s, READABLE, || s.try_read_buf(buf), drained),
        }
    }

    /// As [`try_read_buf`](Stream::try_read_buf), into `buf`.
    ///
    /// This and [`try_write`](Stream::try_write) make their system call on the descriptor
    /// directly (through `socket2`), inside the one `try_io` of [`do_io`]: Tokio's own
    /// `try_read`/`try_write` would open a second `try_io` inside it, a second look at the
    /// readiness for nothing (some 45 instructions). Reading into a `BufMut`'s uninitialised
    /// room cannot be done that way without `unsafe`, so
    /// [`try_read_buf`](Stream::try_read_buf) keeps Tokio's, and so does the rarer vectored
    /// write.
    pub(crate) fn try_read(&self, buf: &mut [u8], short_read_drains: bool) -> io::Result<usize> {
        let asked = buf.len();
        let drained = |&n: &usize| short_read_drains && short_transfer(n, asked);
        match self {
            Stream::Tcp(s) => do_io(s, READABLE, || (&*socket(s)).read(buf), drained),
            Stream::Unix(s) => do_io(s, READABLE, || (&*socket(s)).read(buf), drained),
        }
    }

    /// Writes from `buf`. A short write proves the send buffer full and clears the cached
    /// write readiness (see [`do_io`]).
    #[inline]
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let full = |&n: &usize| short_transfer(n, buf.len());
        match self {
            Stream::Tcp(s) => do_io(s, WRITABLE, || socket(s).send(buf), full),
            Stream::Unix(s) => do_io(s, WRITABLE, || socket(s).send(buf), full),
        }
    }

    /// A short `writev` clears nothing: it also stops short when it is given more buffers than
    /// the system takes at once (`IOV_MAX`), which proves nothing about the socket (Tokio's own
    /// vectored write makes the same exception).
    pub(crate) fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let never = |_: &usize| false;
        match self {
            // Tokio's (std's) `writev` takes at most `IOV_MAX` buffers, as said above;
            // `socket2`'s `sendmsg` would fail with more.
            Stream::Tcp(s) => do_io(s, WRITABLE, || s.try_write_vectored(bufs), never),
            Stream::Unix(s) => do_io(s, WRITABLE, || s.try_write_vectored(bufs), never),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }

    pub(crate) fn peer_address(&self) -> io::Result<Address> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(Address::Inet),
            Stream::Unix(s) => s.peer_addr().map(|a| Address::from_unix(&a.into())),
        }
    }
}

impl Listener {
    pub(crate) fn tcp(listener: TcpListener) -> Listener {
        Listener::new(ListenerSocket::Tcp(listener))
    }

    pub(crate) fn unix(listener: UnixListener) -> Listener {
        Listener::new(ListenerSocket::Unix(listener))
    }

    fn new(socket: ListenerSocket) -> Listener {
        Listener {
            socket,
            stash: None,
            backoff: None,
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Ready {
        if self.stash.is_some() {
            // Readiness without a poll of the socket: charge it to the cooperative budget as
            // the socket's own readiness poll would be, so that a dispatcher that never
            // accepts still lets the rest of the thread run.
            return match tokio::task::coop::poll_proceed(cx) {
                Poll::Ready(progress) => {
                    progress.made_progress();
                    Ready::READ
                }
                Poll::Pending => Ready::NONE,
            };
        }
        if let Some(backoff) = &mut self.backoff {
            if backoff.as_mut().poll(cx).is_pending() {
                return Ready::NONE;
            }
            self.backoff = None;
        }
        loop {
            match self.poll_accept(cx) {
                Poll::Pending => return Ready::NONE,
                Poll::Ready(Ok(accepted)) => {
                    self.stash = Some(Ok(accepted));
                    return Ready::READ;
                }
                // The peer gave up before we accepted: nothing to report (asyncore's accept()
                // returns None for ECONNABORTED), look for the next one.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Poll::Ready(Err(e)) if is_resource_exhaustion(&e) => {
                    tracing::error!(error = %e, "accept failed; pausing the listener for {:?}", ACCEPT_BACKOFF);
                    let mut sleep = Box::pin(tokio::time::sleep(ACCEPT_BACKOFF));
                    // Registers the wake-up; a fresh sleep is never already elapsed.
                    let _ = sleep.as_mut().poll(cx);
                    self.backoff = Some(sleep);
                    return Ready::NONE;
                }
                Poll::Ready(Err(e)) => {
                    self.stash = Some(Err(e));
                    return Ready::READ;
                }
            }
        }
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, Address)>> {
        match &self.socket {
            ListenerSocket::Tcp(l) => l
                .poll_accept(cx)
                .map_ok(|(s, a): (TcpStream, SocketAddr)| (Stream::Tcp(s), Address::Inet(a))),
            ListenerSocket::Unix(l) => l
                .poll_accept(cx)
                .map_ok(|(s, a)| (Stream::Unix(s), Address::from_unix(&a.into()))),
        }
    }

    /// Takes the stashed connection, or accepts one now if the backlog has one; `Ok(None)` when
    /// there is none.
    pub(crate) fn accept(&mut self) -> io::Result<Option<(Stream, Address)>> {
        if let Some(stashed) = self.stash.take() {
            return stashed.map(Some);
        }
        // A no-op waker: the channel's task polls the listener again, with its own waker,
        // before it sleeps, so no wake-up is lost.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_accept(&mut cx) {
            Poll::Ready(Ok(accepted)) => Ok(Some(accepted)),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => Ok(None),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(None),
        }
    }
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
