//! [`Channel`]: a socket with asyncore's operations and flags, the `self` of a dispatcher's
//! socket calls.
//!
//! In Python a dispatcher object is both the socket wrapper and the callback target. In Rust the
//! two are split so that each can be borrowed on its own: the [`Dispatcher`](crate::Dispatcher)
//! is your struct with the `handle_*` callbacks, and the `Channel` owns the socket, the flags
//! (`accepting`, `connected`, `connecting`) and the map membership. Every callback receives
//! `&mut Channel` next to `&mut self`.
//!
//! # Non-blocking semantics
//!
//! Every operation is non-blocking and follows asyncore, with its traps removed:
//!
//! | call | asyncore | here |
//! |---|---|---|
//! | [`recv`](Channel::recv) at end of file | `b''`, `handle_close()` inside `recv` | empty `Bytes`; `handle_read_eof` runs right after the current callback returns, and by default calls `handle_close` |
//! | `recv` with nothing to read | raises `BlockingIOError` → `handle_error` → closed | `Err(WouldBlock)`; a callback that returns it (`?`) is simply done: no error, no close |
//! | [`send`](Channel::send) with a full buffer | `0` | `Ok(0)` |
//! | `send`/`recv` on a disconnect (`ECONNRESET`, `EPIPE`, …) | `handle_close()`, `0`/`b''` | the same, with `handle_close` after the callback |
//! | [`accept`](Channel::accept) with nothing pending | `None` | `Ok(None)` |
//! | [`connect`](Channel::connect) | `handle_connect` may run inside `connect()` | `handle_connect` always runs from the reactor, before the first read or write callback |
//! | [`close`](Channel::close) | leaves the map, closes the socket | the same; idempotent; never calls `handle_close` |
//!
//! Datagram channels (UDP, Unix datagram sockets) have their own rules: an empty datagram is
//! not end of file, a datagram never arrives or leaves in part; see
//! [`create_datagram_socket`](Channel::create_datagram_socket).
//!
//! After end of file the channel no longer asks for read readiness (Tokio keeps reporting a
//! closed read side as ready forever, which would spin); `handle_close` runs at most once.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::RawFd;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use crate::address::{Address, Family, ToAddress};
use crate::error::{closed_channel, context, is_disconnect, would_block};
use crate::event::{ChannelId, Interest, Ready};
use crate::io::{Io, Listener, Stream};

mod adopt;
mod closing;
mod datagram;
mod file;
mod link;
mod native;
mod tls;
mod tls_stream;
mod urgent;

pub(crate) use closing::{Closing, Owed};
pub(crate) use link::{MapLink, Membership, Traffic};
pub use native::NativeStream;
pub use tls_stream::TlsStream;

/// A socket and its asyncore state, owned by the map once added.
///
/// Make one with [`Channel::create_socket`] (then `bind`/`listen` or `connect`), or adopt a
/// connected Tokio stream with [`Channel::from_tcp`]/[`Channel::from_unix`], or any socket,
/// in whatever state, with [`Channel::from_socket`] (std's sockets convert with `TryFrom`);
/// then give it to a map with a dispatcher: [`Map::add`](crate::Map::add).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use asyncore::{Channel, Family};
///
/// let mut listener = Channel::create_socket(Family::Inet)?;
/// listener.set_reuse_addr()?;
/// listener.bind("127.0.0.1:0")?;
/// listener.listen(128)?;
/// assert!(listener.accepting());
/// assert_eq!(listener.local_addr()?.as_inet().unwrap().ip().to_string(), "127.0.0.1");
/// # Ok(()) }
/// ```
pub struct Channel {
    id: ChannelId,
    family: Family,
    pub(crate) io: Io,
    /// The map the channel is in (see `link`).
    pub(crate) link: MapLink,
    addr: Option<Address>,
    accepting: bool,
    connected: bool,
    connecting: bool,
    /// Open, closing, closed: what the reactor owes the dispatcher on the way.
    pub(crate) closing: Closing,
    /// Whether the current callback touched the socket (spin detection).
    pub(crate) progress: bool,
    /// Bytes moved since the channel was made, for snapshots.
    pub(crate) traffic: Traffic,
    /// When `handle_timeout` runs, if set.
    deadline: Option<Instant>,
    /// Work started with `spawn`/`call_later`, aborted on close.
    pub(crate) work: Vec<tokio::task::AbortHandle>,
    /// The urgent-data watch of a TCP channel ([`set_urgent_events`](Channel::set_urgent_events));
    /// beside the stream rather than in it, so that ordinary streams pay nothing for it.
    pub(crate) urgent: Option<Box<crate::io::UrgentWatch>>,
    /// The TLS session, from `start_tls` on (module `tls`); beside the stream, as `urgent`.
    tls: Option<Box<crate::io::Tls>>,
}

/// The most one `recv` reads: more than a socket's receive buffer usually holds, and a bound
/// on the shared buffer (which holds two reads).
const RECV_LIMIT: usize = 1 << 20;

/// How far reads may move into the shared receive buffer before `recv` tries to go back to its
/// start: about what a core's L1 data cache holds.
const RECLAIM_AFTER: usize = 32 * 1024;

/// The buffer `recv` reads into, shared by the thread's channels: callbacks run one at a time,
/// so one buffer serves them all. Each read is split off as `Bytes`; the rest stays for the next.
#[derive(Default)]
struct ReceiveBuffer {
    buf: BytesMut,
    /// The capacity of `buf`'s allocation, as seen when `buf` stood at its start.
    allocation: usize,
}

thread_local! {
    static RECV_BUFFER: std::cell::RefCell<ReceiveBuffer> = std::cell::RefCell::default();
}

/// Runs `read` on the thread's shared receive buffer with room for at least `room` bytes
/// (at most [`RECV_LIMIT`]), and returns what it appended, frozen.
fn with_receive_buffer<T>(
    room: usize,
    read: impl FnOnce(&mut bytes::buf::Limit<&mut BytesMut>) -> io::Result<T>,
) -> io::Result<(Bytes, T)> {
    let room = room.min(RECV_LIMIT);
    RECV_BUFFER.with_borrow_mut(|ReceiveBuffer { buf, allocation }| {
        if buf.capacity() + RECLAIM_AFTER < *allocation {
            // If no `Bytes` of the earlier reads is alive any more (an echo sent, a line
            // parsed), read at the start of the allocation again, into memory the cache still
            // holds, as a reused buffer would, rather than walking the whole allocation. While
            // some `Bytes` holds a part of it, this does nothing and allocates nothing.
            let _ = buf.try_reclaim(*allocation);
        }
        if buf.capacity() < room {
            // Room for many reads at once: a new allocation (when handlers still hold `Bytes`
            // of this one) once per many messages, not once per message.
            buf.reserve(room.saturating_mul(2));
            *allocation = (*allocation).max(buf.capacity());
        }
        let result = read(&mut buf.limit(room));
        let data = buf.split().freeze();
        result.map(|value| (data, value))
    })
}

impl Channel {
    /// Creates a non-blocking stream socket of `family`, asyncore's
    /// `create_socket(family, SOCK_STREAM)`. The socket is close-on-exec.
    ///
    /// # Errors
    /// What `socket(2)` reports, e.g. `EMFILE` when the process is out of file descriptors.
    pub fn create_socket(family: Family) -> io::Result<Channel> {
        let socket = socket2::Socket::new(family.domain(), socket2::Type::STREAM, None)
            .map_err(|e| context(e, format_args!("create {family:?} socket")))?;
        socket.set_nonblocking(true)?;
        Ok(Channel::with_io(family, Io::Fresh(socket)))
    }

    /// Adopts a connected Tokio TCP stream: asyncore's `dispatcher(sock)`. The channel starts
    /// connected; `handle_connect` never runs for it.
    pub fn from_tcp(stream: tokio::net::TcpStream) -> Channel {
        let family = match stream.local_addr() {
            Ok(addr) if addr.is_ipv6() => Family::Inet6,
            _ => Family::Inet,
        };
        Channel::from_stream(family, Stream::Tcp(stream), None)
    }

    /// Adopts a connected Tokio Unix stream (see [`Channel::from_tcp`]).
    pub fn from_unix(stream: tokio::net::UnixStream) -> Channel {
        Channel::from_stream(Family::Unix, Stream::Unix(stream), None)
    }

    pub(crate) fn from_stream(family: Family, stream: Stream, peer: Option<Address>) -> Channel {
        let peer = peer.or_else(|| stream.peer_address().ok());
        let mut channel = Channel::with_io(family, Io::Stream(stream));
        channel.connected = true;
        channel.addr = peer;
        channel
    }

    fn with_io(family: Family, io: Io) -> Channel {
        Channel {
            id: ChannelId::next(),
            family,
            io,
            link: MapLink::default(),
            addr: None,
            accepting: false,
            connected: false,
            connecting: false,
            closing: Closing::default(),
            progress: false,
            traffic: Traffic::default(),
            deadline: None,
            work: Vec::new(),
            urgent: None,
            tls: None,
        }
    }

    /// This channel's id, its key in the map.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The socket's address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The socket's file descriptor, or `None` once closed.
    pub fn fileno(&self) -> Option<RawFd> {
        self.io.fd()
    }

    /// asyncore's `addr`: the address given to `bind` or `connect` (as given: port 0 stays 0),
    /// or the peer of an accepted connection. See [`local_addr`](Channel::local_addr) for the
    /// bound address.
    pub fn addr(&self) -> Option<&Address> {
        self.addr.as_ref()
    }

    /// Whether the channel is listening (`listen` succeeded).
    pub fn accepting(&self) -> bool {
        self.accepting
    }

    /// Whether the channel is connected: accepted, adopted, or its connect completed.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Whether a `connect` is in progress.
    pub fn connecting(&self) -> bool {
        self.connecting
    }

    /// Whether [`close`](Channel::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closing.is_closed()
    }

    /// A borrowed `socket2` view of the socket, for options this type does not wrap
    /// (`set_nodelay`, `set_linger`, buffer sizes, …).
    ///
    /// # Errors
    /// `NotConnected` once the channel is closed.
    pub fn socket(&self) -> io::Result<socket2::SockRef<'_>> {
        self.io.sock_ref().ok_or_else(|| closed_channel("socket"))
    }

    /// Sets `SO_REUSEADDR`, so a restarted server can bind its port at once. Unlike asyncore,
    /// a failure is reported rather than ignored.
    pub fn set_reuse_addr(&mut self) -> io::Result<()> {
        self.socket()?
            .set_reuse_address(true)
            .map_err(|e| context(e, "set SO_REUSEADDR"))
    }

    /// Binds the socket to `address`.
    ///
    /// # Errors
    /// `InvalidInput` for an address that does not parse, resolve or fit the socket's family;
    /// `AddrInUse`, `AddrNotAvailable`, `PermissionDenied` as `bind(2)` reports them. The
    /// message names the address.
    pub fn bind(&mut self, address: impl ToAddress) -> io::Result<()> {
        let address = address.to_address(self.family)?;
        let sockaddr = address.to_sockaddr()?;
        match &self.io {
            Io::Datagram(socket) => socket.sock_ref().bind(&sockaddr),
            _ => self.fresh("bind")?.bind(&sockaddr),
        }
        .map_err(|e| context(e, format_args!("bind {address}")))?;
        self.addr = Some(address);
        Ok(())
    }

    /// Starts listening with a backlog of `backlog` connections; the channel becomes
    /// [`accepting`](Channel::accepting) and its read events become `handle_accept`.
    ///
    /// asyncore's examples use `listen(5)`; a server meant to take bursts of connections
    /// wants 128 or more (a full backlog drops SYNs, which come back a second later).
    ///
    /// # Errors
    /// What `listen(2)` reports; `Other` when no Tokio runtime is running.
    pub fn listen(&mut self, backlog: u32) -> io::Result<()> {
        let Io::Fresh(_) = self.io else {
            return Err(self.misuse("listen", "needs a fresh socket from create_socket"));
        };
        require_runtime("listen")?;
        let Io::Fresh(socket) = std::mem::replace(&mut self.io, Io::Closed) else {
            unreachable!("checked above")
        };
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        let listened = socket.listen(backlog).and_then(|()| {
            Ok(match self.family {
                Family::Unix => Listener::unix(tokio::net::UnixListener::from_std(socket.into())?),
                _ => Listener::tcp(tokio::net::TcpListener::from_std(socket.into())?),
            })
        });
        match listened {
            Ok(listener) => {
                self.io = Io::Listener(Box::new(listener));
                self.accepting = true;
                Ok(())
            }
            Err(e) => {
                self.closing.close();
                Err(context(e, "listen"))
            }
        }
    }

    /// Starts a non-blocking connect to `address`.
    ///
    /// The channel is [`connecting`](Channel::connecting) until the reactor sees the socket
    /// become writable (it waits for that whatever `writable()` says); then `handle_connect`
    /// runs, before any read or write callback, with [`connected`](Channel::connected) already
    /// true, and `handle_write` follows only if `writable()` said yes. A `handle_connect` that
    /// fails leaves the connect pending, to be run again at the next event, as in asyncore
    /// (see [`Dispatcher::handle_connect`](crate::Dispatcher::handle_connect)). A connect that
    /// fails later (refused, unreachable) reaches `handle_error` with the OS error.
    ///
    /// A datagram channel's connect fixes its peer at once (there is no handshake); it is
    /// `connecting` only until the reactor runs `handle_connect`, and may send before that.
    ///
    /// # Errors
    /// Errors known at once: a bad address, a family mismatch, `connect(2)` failing
    /// synchronously (e.g. `ECONNREFUSED` for a Unix socket nobody listens on); `Other` when no
    /// Tokio runtime is running.
    pub fn connect(&mut self, address: impl ToAddress) -> io::Result<()> {
        let address = address.to_address(self.family)?;
        if let Io::Datagram(_) = self.io {
            return self.connect_datagram(address);
        }
        let Io::Fresh(socket) = &self.io else {
            return Err(self.misuse("connect", "needs a fresh socket from create_socket"));
        };
        require_runtime("connect")?;
        match socket.connect(&address.to_sockaddr()?) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || would_block(&e) => {}
            Err(e) => return Err(context(e, format_args!("connect to {address}"))),
        }
        let Io::Fresh(socket) = std::mem::replace(&mut self.io, Io::Closed) else {
            unreachable!("checked above")
        };
        let stream = match self.family {
            Family::Unix => tokio::net::UnixStream::from_std(socket.into()).map(Stream::Unix),
            _ => tokio::net::TcpStream::from_std(socket.into()).map(Stream::Tcp),
        };
        self.io = Io::Stream(stream.map_err(|e| context(e, "register socket with Tokio"))?);
        self.connecting = true;
        self.addr = Some(address);
        Ok(())
    }

    /// Completes a pending connect: `Ok(true)` when connected, `Ok(false)` when the wake-up was
    /// early, `Err` with the OS error when the connect failed.
    pub(crate) fn finish_connect(&mut self) -> io::Result<bool> {
        if let Io::Datagram(_) = self.io {
            return self.finish_datagram_connect();
        }
        let Io::Stream(stream) = &self.io else {
            return Ok(false);
        };
        let target = self.addr.clone();
        let failed = |e: io::Error| match &target {
            Some(address) => context(e, format_args!("connect to {address}")),
            None => context(e, "connect"),
        };
        if let Some(error) = stream.take_error()? {
            self.connecting = false;
            return Err(failed(error));
        }
        match stream.peer_address() {
            Ok(_) => {
                self.connecting = false;
                self.connected = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => {
                self.connecting = false;
                Err(failed(e))
            }
        }
    }

    /// `handle_connect` failed: the connect counts as pending again, so that the next event
    /// runs it again (asyncore sets `connected` only once `handle_connect` has returned).
    pub(crate) fn connect_pending_again(&mut self) {
        if !self.is_closed() {
            self.connected = false;
            self.connecting = true;
        }
    }

    /// Takes one pending connection from a listening channel, asyncore's `accept()`.
    ///
    /// Returns `Ok(None)` when there is none (a spurious wake-up, or a client that gave up:
    /// `ECONNABORTED`). The new channel is connected, its `addr` is the peer; hand it to a map
    /// with a dispatcher to serve it.
    ///
    /// # Errors
    /// `InvalidInput` if the channel is not listening; other `accept(2)` errors as they come.
    pub fn accept(&mut self) -> io::Result<Option<(Channel, Address)>> {
        let family = self.family;
        let Io::Listener(listener) = &mut self.io else {
            return Err(self.misuse("accept", "is not listening"));
        };
        self.progress = true;
        Ok(listener
            .accept()
            .map_err(|e| context(e, "accept"))?
            .map(|(stream, peer)| {
                let channel = Channel::from_stream(family, stream, Some(peer.clone()));
                (channel, peer)
            }))
    }

    /// Sends as much of `data` as the socket takes now; returns how many bytes that was.
    ///
    /// Returns `Ok(0)` when the send buffer is full, and also when the peer is gone
    /// (`ECONNRESET`, `EPIPE`, …, or the channel was never connected): then `handle_close` runs
    /// once the current callback returns, as asyncore's `send` calls it.
    ///
    /// On a datagram channel ([`create_datagram_socket`](Channel::create_datagram_socket)),
    /// `send` sends all of `data` as one datagram to the connected peer, or nothing: a full
    /// send buffer is `Err(WouldBlock)`, since `Ok(0)` is an empty datagram sent; a channel
    /// without a peer is `InvalidInput` (use [`sendto`](Channel::sendto)).
    ///
    /// # Errors
    /// `NotConnected` on a closed channel; any other send error, with context.
    #[inline]
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tls.is_some() {
            return self.tls_send(&[io::IoSlice::new(data)]);
        }
        let result = match &self.io {
            Io::Stream(stream) => stream.try_write(data),
            Io::File(file) => file.try_write(data),
            Io::Datagram(_) => return self.send_datagram(&[io::IoSlice::new(data)]),
            Io::Closed => return Err(closed_channel("send")),
            _ => Err(io::ErrorKind::NotConnected.into()),
        };
        self.progress = true;
        self.sent(result)
    }

    /// Like [`send`](Channel::send), for several buffers in one system call (`writev`).
    pub fn send_vectored(&mut self, data: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if self.tls.is_some() {
            return self.tls_send(data);
        }
        let result = match &self.io {
            Io::Stream(stream) => stream.try_write_vectored(data),
            Io::File(file) => file.try_write_vectored(data),
            Io::Datagram(_) => return self.send_datagram(data),
            Io::Closed => return Err(closed_channel("send")),
            _ => Err(io::ErrorKind::NotConnected.into()),
        };
        self.progress = true;
        self.sent(result)
    }

    #[inline]
    fn sent(&mut self, result: io::Result<usize>) -> io::Result<usize> {
        match result {
            Ok(n) => {
                self.traffic.sent += n as u64;
                Ok(n)
            }
            Err(e) if would_block(&e) => Ok(0),
            Err(e) if is_disconnect(&e) => {
                self.closing.disconnected();
                Ok(0)
            }
            Err(e) => Err(context(e, "send")),
        }
    }

    /// Receives up to `max` bytes: asyncore's `recv(buffer_size)`.
    ///
    /// Reads into spare capacity of a buffer that all channels of the thread share: nothing is
    /// zeroed, an idle channel holds no receive buffer at all, and when the handlers have
    /// dropped the `Bytes` of earlier reads, reads go back to the start of that buffer, into
    /// memory still in the cache, as with a reused buffer. A handler that keeps a `Bytes` keeps
    /// its part of the buffer alive and intact; later reads go after it, and a new buffer is
    /// started when that one is used up.
    /// One call reads at most 1 MiB, whatever `max` says (Python would allocate `max` bytes):
    /// like any short read, the rest comes with the next read event.
    ///
    /// Returns empty `Bytes` at end of file or on a disconnect; once the current callback
    /// returns, `handle_read_eof` (end of file; by default it leads to `handle_close`) or
    /// `handle_close` (disconnect) runs.
    ///
    /// On a TLS channel ([`start_tls`](Channel::start_tls)) it returns decrypted bytes, reading
    /// records from the socket as it needs them; `WouldBlock` during the handshake; end of
    /// file is the peer's `close_notify`, and a stream that ends without one is an
    /// `UnexpectedEof` error ([`tls::is_truncation`](crate::tls::is_truncation)), reported once.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is there yet (a spurious wake-up): return it from the
    /// callback with `?` and the reactor treats it as "nothing to do", never as an error.
    /// `NotConnected` on a closed channel; other receive errors with context.
    ///
    /// On a datagram channel, `recv` takes one datagram (empty `Bytes` for an empty datagram,
    /// never end of file), and a datagram longer than `max` is an `InvalidData` error, not a
    /// silently shortened datagram; see [`recvfrom`](Channel::recvfrom).
    #[inline]
    pub fn recv(&mut self, max: usize) -> io::Result<Bytes> {
        match &self.io {
            // The common case, one layer shorter than through `recv_buf` (which a TLS
            // channel's records go through).
            Io::Stream(stream) if max > 0 && self.tls.is_none() => {
                let drains = self.urgent.is_none();
                let (data, read) =
                    with_receive_buffer(max, |buf| Ok(stream.try_read_buf(buf, drains)))?;
                self.received(read).map(|_| data)
            }
            Io::Datagram(_) => self.receive_datagram(max, false).map(|(data, _)| data),
            _ => with_receive_buffer(max, |buf| self.recv_buf(buf)).map(|(data, _)| data),
        }
    }

    /// Receives into `buf`'s spare capacity, appending at most `buf.remaining_mut()` bytes;
    /// returns the count, 0 at end of file or on a disconnect. Same rules as
    /// [`recv`](Channel::recv). On a datagram channel it takes one datagram of at most
    /// `buf.remaining_mut()` bytes, and at most 64 KiB (every UDP datagram fits; larger Unix
    /// datagrams need `recv` or `recvfrom` with a larger `max`).
    pub fn recv_buf<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        if !buf.has_remaining_mut() {
            return Ok(0);
        }
        if self.tls.is_some() {
            return self.tls_recv_buf(buf);
        }
        let result = match &self.io {
            Io::Stream(stream) => stream.try_read_buf(buf, self.urgent.is_none()),
            Io::File(file) => file.try_read_buf(buf),
            Io::Datagram(_) => return self.recv_datagram_buf(buf),
            Io::Closed => return Err(closed_channel("recv")),
            _ => Err(io::ErrorKind::NotConnected.into()),
        };
        self.received(result)
    }

    /// Receives into `buf` (Python's `recv_into`); returns the count, 0 at end of file.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.tls.is_some() {
            return self.tls_recv_buf(&mut &mut *buf);
        }
        let result = match &self.io {
            Io::Stream(stream) => stream.try_read(buf, self.urgent.is_none()),
            Io::File(file) => file.try_read(buf),
            Io::Datagram(_) => return self.recv_datagram_buf(&mut &mut *buf),
            Io::Closed => return Err(closed_channel("recv")),
            _ => Err(io::ErrorKind::NotConnected.into()),
        };
        self.received(result)
    }

    #[inline]
    fn received(&mut self, result: io::Result<usize>) -> io::Result<usize> {
        self.progress = true;
        match result {
            Ok(0) => {
                self.closing.end_of_file();
                Ok(0)
            }
            Ok(n) => {
                self.traffic.received += n as u64;
                Ok(n)
            }
            Err(e) if would_block(&e) => Err(e),
            Err(e) if is_disconnect(&e) => {
                self.closing.disconnected();
                Ok(0)
            }
            Err(e) => Err(context(e, "recv")),
        }
    }

    /// Asks the reactor to run `handle_close` once the current callback returns (at most once
    /// per channel, as always; once it has run, this closes the channel instead). This is what
    /// the default [`handle_read_eof`](crate::Dispatcher::handle_read_eof) does.
    pub fn request_close(&mut self) {
        self.closing.request_close();
    }

    /// Shuts down one or both directions of the connection (`shutdown(2)`).
    ///
    /// On a TLS channel, shutting down the write side (`Write` or `Both`) first queues TLS's
    /// `close_notify`; the socket's write side is shut once it and the records before it are
    /// out (at once if the socket takes them, else on its write readiness). The peer may go
    /// on sending: a half-close.
    pub fn shutdown(&mut self, mut how: Shutdown) -> io::Result<()> {
        if self.tls.is_some() && how != Shutdown::Read {
            self.tls_shutdown_write()?;
            if how == Shutdown::Write {
                return Ok(());
            }
            how = Shutdown::Read;
        }
        self.socket()?
            .shutdown(how)
            .map_err(|e| context(e, "shutdown"))
    }

    /// The socket's own address (`getsockname`): the real port after binding port 0.
    pub fn local_addr(&self) -> io::Result<Address> {
        let addr = self
            .socket()?
            .local_addr()
            .map_err(|e| context(e, "getsockname"))?;
        Ok(Address::from_sockaddr(&addr))
    }

    /// The peer's address (`getpeername`).
    pub fn peer_addr(&self) -> io::Result<Address> {
        let addr = self
            .socket()?
            .peer_addr()
            .map_err(|e| context(e, "getpeername"))?;
        Ok(Address::from_sockaddr(&addr))
    }

    /// Closes the channel: it leaves its map and its socket is closed, now. Idempotent.
    ///
    /// As in asyncore, `close` does not call `handle_close`; it is what `handle_close` calls.
    /// When the last channel of a map closes, [`Map::run`](crate::Map::run) returns. Work
    /// started with [`spawn`](Channel::spawn) is aborted and the deadline cleared.
    ///
    /// The channel of an [`AsyncChat`](crate::chat::AsyncChat) first sends what the socket
    /// takes of the chat's queued output (see [`Chat::push`](crate::chat::Chat::push)).
    ///
    /// A TLS channel sends `close_notify`. Records its socket has no room for yet (its last
    /// output, the `close_notify`) are flushed by a member task of the map for up to 10 s, as
    /// the kernel goes on sending a closed plaintext socket's bytes: [`Map::run`](crate::Map::run)
    /// returns once they are out. [`Map::close_all`](crate::Map::close_all) drops them.
    pub fn close(&mut self) {
        if self.is_closed() {
            return;
        }
        if let Some(flush) = self.closing.take_before_close() {
            flush(self); // while the socket is still open
        }
        if self.tls.is_some() {
            self.close_tls(); // close_notify, while the socket is still open
        }
        self.closing.close();
        self.accepting = false;
        self.connected = false;
        self.connecting = false;
        self.io = Io::Closed;
        self.urgent = None;
        self.deadline = None;
        for work in self.work.drain(..) {
            work.abort();
        }
        self.link.leave(self.id, self.traffic);
    }

    /// Sets (or with `None` clears) the channel's deadline; when it passes,
    /// [`Dispatcher::handle_timeout`](crate::Dispatcher::handle_timeout) runs (asyncore has no
    /// timers; this is the idle timeout its users wrote by hand). One deadline per channel:
    /// setting it again replaces it. Deadlines are served while the map runs freely; lock-step
    /// passes leave them for the next free run.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Sets the deadline to `after` from now: call it on every read for an idle timeout.
    pub fn set_timeout(&mut self, after: std::time::Duration) {
        self.deadline = Some(Instant::now() + after);
    }

    /// The channel's deadline, if one is set.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The deadline, if it has passed: it is cleared, and `handle_timeout` is due.
    pub(crate) fn take_due_deadline(&mut self) -> bool {
        let due = self.deadline.is_some_and(|at| at <= Instant::now());
        if due {
            self.deadline = None;
        }
        due
    }

    /// Keeps `work` (started by a callback) to abort when the channel closes.
    pub(crate) fn keep_work(&mut self, work: tokio::task::AbortHandle) {
        self.work.retain(|work| !work.is_finished());
        self.work.push(work);
    }

    /// Polls the socket for `want`, and a channel watched for urgent data for that too while
    /// it waits for anything (asyncore's `select` puts every socket it waits on in the `e` set).
    /// `Pending` leaves the task registered for a wake-up. The reactor's one readiness poll.
    #[inline]
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>, want: Interest) -> Poll<Ready> {
        if self.tls.is_some() {
            return self.poll_tls(cx, want);
        }
        let polled = self.io.poll_ready(cx, want);
        let Some(watch) = &mut self.urgent else {
            return polled;
        };
        if want.is_empty() || !watch.poll(cx) {
            return polled;
        }
        let ready = match polled {
            Poll::Ready(ready) => ready,
            Poll::Pending => Ready::NONE,
        };
        Poll::Ready(ready | Ready::EXPT)
    }

    /// Logs `message` in this channel's span, asyncore's `log_info(message, type)`: `"info"`,
    /// `"warning"` and `"error"` become `tracing` levels `INFO`, `WARN` and `ERROR`; anything
    /// else is `INFO` with the type as its `kind` field (asyncore prints it before the
    /// message). Nothing is printed on stdout. asyncore hides `"warning"` by default
    /// (`ignore_log_types`); here the subscriber's level filter decides.
    pub fn log_info(&self, message: &str, kind: &str) {
        let id = self.id;
        match kind {
            "error" => tracing::error!(channel = %id, "{message}"),
            "warning" => tracing::warn!(channel = %id, "{message}"),
            "info" => tracing::info!(channel = %id, "{message}"),
            _ => tracing::info!(channel = %id, kind, "{message}"),
        }
    }

    fn fresh(&self, what: &str) -> io::Result<&socket2::Socket> {
        match &self.io {
            Io::Fresh(socket) => Ok(socket),
            _ => Err(self.misuse(what, "needs a fresh socket from create_socket")),
        }
    }

    fn misuse(&self, what: &str, why: &str) -> io::Error {
        if self.is_closed() {
            return closed_channel(what);
        }
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: channel {} {why} (it is {})", self.id, self.state()),
        )
    }

    fn state(&self) -> &'static str {
        if self.is_closed() {
            "closed"
        } else if self.accepting {
            "listening"
        } else if self.connected {
            "connected"
        } else if self.connecting {
            "connecting"
        } else {
            "not connected"
        }
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Channel");
        d.field("id", &self.id).field("state", &self.state());
        if let Some(addr) = &self.addr {
            d.field("addr", &format_args!("{addr}"));
        }
        if let Some(fd) = self.fileno() {
            d.field("fd", &fd);
        }
        d.finish()
    }
}

/// asyncore's `repr`: `<#3 connected 127.0.0.1:45833>`.
impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} {}", self.id, self.state())?;
        if let Some(addr) = &self.addr {
            write!(f, " {addr}")?;
        }
        f.write_str(">")
    }
}

fn require_runtime(what: &str) -> io::Result<()> {
    tokio::runtime::Handle::try_current().map(drop).map_err(|_| {
        io::Error::other(format!(
            "{what}: no Tokio runtime is running; create channels inside a runtime with I/O and time enabled"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// Fills the shared buffer with `n` bytes of `byte`, as a read would.
    fn read(room: usize, n: usize, byte: u8) -> Bytes {
        with_receive_buffer(room, |buf| {
            buf.put_bytes(byte, n);
            Ok(())
        })
        .unwrap()
        .0
    }

    /// Reads go back to the start of the allocation once nothing holds the earlier ones (after
    /// at most `RECLAIM_AFTER` bytes), and never while something does: what a handler keeps is
    /// never written over.
    #[test]
    fn the_receive_buffer_is_reused_only_when_free() {
        const ROOM: usize = 128 * 1024; // echo_server's reads: a buffer far larger than the walk
        const N: usize = 4096;
        let start = read(ROOM, N, 1).as_ptr();
        let walk = (1..=RECLAIM_AFTER / N + 1)
            .find(|_| read(ROOM, N, 2).as_ptr() == start)
            .expect("reads never went back to the start of the buffer");
        assert!(walk * N <= RECLAIM_AFTER + N, "walked {walk} reads");

        // Now hold on to reads: the buffer is never reused under them.
        let kept: Vec<Bytes> = (0..3 * ROOM / N).map(|i| read(ROOM, N, i as u8)).collect();
        for (i, data) in kept.iter().enumerate() {
            assert!(
                data.iter().all(|&b| b == i as u8),
                "read {i} was written over"
            );
        }
    }
}
