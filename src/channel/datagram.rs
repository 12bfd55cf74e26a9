//! Datagram channels: UDP over IPv4 and IPv6, and Unix datagram sockets.
//!
//! asyncore has no datagram support of its own: its users call
//! `create_socket(family, SOCK_DGRAM)` and then the socket's `sendto`/`recvfrom`. Here a
//! datagram channel is made with [`Channel::create_datagram_socket`] (or adopted with
//! [`Channel::from_udp`]/[`Channel::from_unix_datagram`]) and has the same two operations,
//! under Python's names: [`sendto`](Channel::sendto) and [`recvfrom`](Channel::recvfrom).
//! [`send`](Channel::send) and [`recv`](Channel::recv) work too, on a connected channel (or, for
//! `recv`, from anyone).
//!
//! The model is documented on [`Channel::create_datagram_socket`], where users find it.

use std::io;

use bytes::{BufMut, Bytes};

use super::{require_runtime, Channel};
use crate::address::{Address, Family, ToAddress};
use crate::error::{closed_channel, context, would_block};
use crate::io::{Datagram, Io};

/// The largest datagram `recv_buf` takes: every UDP datagram fits; bigger Unix datagrams need
/// `recv`/`recvfrom` with a larger `max`.
const RECV_BUF_LIMIT: usize = 64 * 1024;

impl Channel {
    /// Creates a non-blocking datagram socket of `family`, asyncore's
    /// `create_socket(family, SOCK_DGRAM)`: UDP for [`Family::Inet`] and [`Family::Inet6`], a
    /// Unix datagram socket for [`Family::Unix`]. The socket is close-on-exec.
    ///
    /// The channel is usable at once: [`bind`](Channel::bind) it to receive on a known
    /// address, [`connect`](Channel::connect) it to fix the peer, or just
    /// [`sendto`](Channel::sendto) (an IP socket then gets an ephemeral port).
    ///
    /// A UDP echo server, and a native Tokio socket that talks to it:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// use std::io;
    /// use asyncore::{Channel, Dispatcher, Family, Map};
    ///
    /// struct Echo;
    ///
    /// impl Dispatcher for Echo {
    ///     fn writable(&self, _: &Channel) -> bool {
    ///         false
    ///     }
    ///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
    ///         let (data, sender) = channel.recvfrom(65535)?;
    ///         channel.sendto(&data, sender)?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut server = Channel::create_datagram_socket(Family::Inet)?;
    /// server.bind("127.0.0.1:0")?;
    /// let address = server.local_addr()?.as_inet().unwrap();
    /// let map = Map::new();
    /// map.add(server, Echo)?;
    ///
    /// let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    /// let talk = async {
    ///     client.send_to(b"ping", address).await?;
    ///     let mut echo = [0; 16];
    ///     let (n, from) = client.recv_from(&mut echo).await?;
    ///     assert_eq!((&echo[..n], from), (&b"ping"[..], address));
    ///     io::Result::Ok(())
    /// };
    /// tokio::select! {
    ///     served = map.run() => served?,
    ///     talked = talk => talked?,
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Datagram channels
    ///
    /// - A read event means "at least one datagram is queued". Each receive takes exactly one
    ///   datagram; a handler that takes one per event is called again at once while more are
    ///   queued (readiness is level-triggered), and the event after the last one finds
    ///   `WouldBlock`, which the reactor treats as "nothing to do".
    /// - An empty datagram is a datagram: `recv` returning empty `Bytes` on a datagram channel is
    ///   never end of file, and never leads to `handle_read_eof` or `handle_close`. (Python's
    ///   asyncore `recv` calls `handle_close` on it, closing a UDP server on its first empty
    ///   datagram.)
    /// - A datagram longer than the receive asked for is an error of kind `InvalidData` that says
    ///   so, never silently cut short: the kernel discards the part that does not fit, so the
    ///   datagram is consumed and lost, and the next receive gets the next datagram.
    /// - A datagram too large to send (`EMSGSIZE`: more than 65507 bytes of UDP over IPv4, 65527
    ///   over IPv6, or more than a Unix socket's send buffer) is an error that names its size.
    /// - A send never sends part of a datagram: it sends all of it, or returns an error. A full
    ///   send buffer is `Err(WouldBlock)` (not `Ok(0)` as for streams, since `Ok(0)` is what
    ///   sending an empty datagram returns): the datagram was not sent; keep it and send it again
    ///   on a write event.
    /// - [`connect`](Channel::connect) fixes the peer, at once (there is no handshake); as for
    ///   streams, `handle_connect` then runs from the reactor before any other callback, and
    ///   [`connected`](Channel::connected) becomes true. Sends work from the moment `connect`
    ///   returns.
    /// - Errors on a datagram channel are never a disconnect: `ECONNREFUSED` (a connected UDP
    ///   socket's peer has no listener) reaches `handle_error` like any other error, with
    ///   context, and the channel stays usable if the handler lets it. As with asyncore's
    ///   `select`, a pending socket error makes the channel readable, and the next receive
    ///   (or send) returns it.
    ///
    /// # Errors
    /// What `socket(2)` reports, e.g. `EMFILE`; `Other` when no Tokio runtime is running (a
    /// datagram socket is registered with Tokio when it is made).
    pub fn create_datagram_socket(family: Family) -> io::Result<Channel> {
        require_runtime("create_datagram_socket")?;
        let made = || -> io::Result<Datagram> {
            let socket = socket2::Socket::new(family.domain(), socket2::Type::DGRAM, None)?;
            socket.set_nonblocking(true)?;
            Ok(match family {
                Family::Unix => Datagram::unix(tokio::net::UnixDatagram::from_std(socket.into())?),
                _ => Datagram::udp(tokio::net::UdpSocket::from_std(socket.into())?),
            })
        };
        let socket =
            made().map_err(|e| context(e, format_args!("create {family:?} datagram socket")))?;
        Ok(Channel::with_io(family, Io::Datagram(socket)))
    }

    /// Adopts a Tokio UDP socket. If it is connected, the channel starts
    /// [`connected`](Channel::connected), with the peer as its `addr`.
    pub fn from_udp(socket: tokio::net::UdpSocket) -> Channel {
        let family = match socket.local_addr() {
            Ok(addr) if addr.is_ipv6() => Family::Inet6,
            _ => Family::Inet,
        };
        Channel::from_datagram(family, Datagram::udp(socket))
    }

    /// Adopts a Tokio Unix datagram socket (see [`Channel::from_udp`]); both ends of
    /// `UnixDatagram::pair()` are connected.
    pub fn from_unix_datagram(socket: tokio::net::UnixDatagram) -> Channel {
        Channel::from_datagram(Family::Unix, Datagram::unix(socket))
    }

    fn from_datagram(family: Family, socket: Datagram) -> Channel {
        let peer = socket.peer_address().ok();
        let mut channel = Channel::with_io(family, Io::Datagram(socket));
        channel.connected = peer.is_some();
        channel.addr = peer;
        channel
    }

    /// Whether this is a datagram channel (UDP or Unix datagram), Python's
    /// `sock.type == SOCK_DGRAM`.
    pub fn is_datagram(&self) -> bool {
        matches!(self.io, Io::Datagram(_))
    }

    /// Sends `data` as one datagram to `address`, Python's `sock.sendto(data, address)`;
    /// returns `data.len()`. An empty `data` sends an empty datagram.
    ///
    /// # Errors
    /// `WouldBlock` when the send buffer is full: nothing was sent. `InvalidInput` when the
    /// channel is not a datagram channel or `address` does not fit its family (or is an unbound
    /// Unix sender, which cannot be replied to). A datagram too large to send names its size
    /// (`EMSGSIZE`). Other errors (`ECONNREFUSED`, `ENETUNREACH`, …) as the kernel reports them;
    /// every message names the destination.
    pub fn sendto(&mut self, data: &[u8], address: impl ToAddress) -> io::Result<usize> {
        let address = address.to_address(self.family)?;
        let result = match &self.io {
            Io::Datagram(socket) => socket.try_send_to(data, &address),
            Io::Closed => return Err(closed_channel("sendto")),
            _ => return Err(self.misuse("sendto", "is not a datagram channel")),
        };
        self.progress = true;
        let sent =
            result.map_err(|e| sent_error(e, data.len(), format_args!("sendto {address}")))?;
        self.traffic.sent += sent as u64;
        Ok(sent)
    }

    /// Receives one datagram of at most `max` bytes, with its sender: Python's
    /// `sock.recvfrom(max)`.
    ///
    /// An empty datagram is empty `Bytes`, not end of file. The sender of a Unix datagram that
    /// was never bound is [`Address::Unnamed`]. The data is read into spare capacity of a
    /// buffer the channel keeps, as for [`recv`](Channel::recv).
    ///
    /// # Errors
    /// `WouldBlock` when no datagram is queued (return it with `?`: "nothing to do").
    /// `InvalidData` when the datagram was longer than `max`: it is consumed and its data lost
    /// (the kernel keeps no part of it), and the message names the sender and `max`; receive
    /// with a larger `max` (65535 takes any UDP datagram). `InvalidInput` on a channel that is
    /// not a datagram channel. Other errors (`ECONNREFUSED` on a connected UDP socket) with
    /// context.
    pub fn recvfrom(&mut self, max: usize) -> io::Result<(Bytes, Address)> {
        let Io::Datagram(_) = &self.io else {
            if self.is_closed() {
                return Err(closed_channel("recvfrom"));
            }
            return Err(self.misuse("recvfrom", "is not a datagram channel"));
        };
        let (data, from) = self.receive_datagram(max, true)?;
        Ok((data, from.unwrap_or(Address::Unnamed)))
    }

    /// Connects a datagram channel (see [`connect`](Channel::connect)): fixes the peer now and
    /// leaves `handle_connect` to the reactor.
    pub(super) fn connect_datagram(&mut self, address: Address) -> io::Result<()> {
        let Io::Datagram(socket) = &self.io else {
            unreachable!("the caller checked the socket type")
        };
        socket
            .sock_ref()
            .connect(&address.to_sockaddr()?)
            .map_err(|e| context(e, format_args!("connect to {address}")))?;
        self.progress = true;
        self.connected = false;
        self.connecting = true;
        self.addr = Some(address);
        Ok(())
    }

    /// Completes a datagram connect: there is nothing to wait for, only an error to collect.
    pub(super) fn finish_datagram_connect(&mut self) -> io::Result<bool> {
        let Io::Datagram(socket) = &self.io else {
            return Ok(false);
        };
        self.connecting = false;
        if let Some(error) = socket.take_error()? {
            return Err(context(error, "connect"));
        }
        self.connected = true;
        Ok(true)
    }

    /// `send`/`send_vectored` on a datagram channel: one datagram to the connected peer.
    pub(super) fn send_datagram(&mut self, data: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let Io::Datagram(socket) = &self.io else {
            unreachable!("the caller checked the socket type")
        };
        let len: usize = data.iter().map(|slice| slice.len()).sum();
        let result = match data {
            [one] => socket.try_send(one),
            _ => socket.try_send_vectored(data),
        };
        self.progress = true;
        if let Ok(sent) = &result {
            self.traffic.sent += *sent as u64;
        }
        result.map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTCONN)
                || e.raw_os_error() == Some(libc::EDESTADDRREQ)
            {
                // Not `NotConnected`: that kind would count as a disconnect and close the
                // channel, when the fix is a `connect` or a `sendto`.
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "send: datagram channel {} has no peer; connect it first, or use sendto ({e})",
                        self.id
                    ),
                )
            } else {
                sent_error(e, len, "send")
            }
        })
    }

    /// `recv`/`recv_buf`/`recv_into` on a datagram channel: one datagram, from the connected
    /// peer or anyone.
    pub(super) fn recv_datagram_buf<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        let max = buf.remaining_mut().min(RECV_BUF_LIMIT);
        let (data, _) = self.receive_datagram(max, false)?;
        buf.put_slice(&data);
        Ok(data.len())
    }

    /// Receives one datagram of at most `max` bytes (and its sender, if `from`).
    ///
    /// Tokio does not report `MSG_TRUNC`, so the receive is offered `max + 1` bytes: a datagram
    /// that fills them was longer than `max`.
    pub(super) fn receive_datagram(
        &mut self,
        max: usize,
        from: bool,
    ) -> io::Result<(Bytes, Option<Address>)> {
        let what = if from { "recvfrom" } else { "recv" };
        let Io::Datagram(socket) = &mut self.io else {
            unreachable!("the caller checked the socket type")
        };
        if let Some(error) = socket.take_pending_error() {
            self.progress = true;
            return Err(context(error, what));
        }
        // One byte more than asked for tells a longer datagram from one that fits exactly.
        let max = max.min(super::RECV_LIMIT - 1);
        let result = super::with_receive_buffer(max + 1, |limited| {
            if from {
                socket
                    .try_recv_buf_from(limited)
                    .map(|(n, sender)| (n, Some(sender)))
            } else {
                socket.try_recv_buf(limited).map(|n| (n, None))
            }
        });
        self.progress = true;
        match result {
            Ok((_, (n, sender))) if n > max => {
                let origin = match &sender {
                    Some(address) => format!(" from {address}"),
                    None => String::new(),
                };
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{what}: a datagram{origin} was longer than the {max} bytes asked for; \
                         it was truncated and discarded (receive with a larger max: 65535 takes \
                         any UDP datagram)"
                    ),
                ))
            }
            Ok((data, (_, sender))) => {
                self.traffic.received += data.len() as u64;
                Ok((data, sender))
            }
            Err(e) if would_block(&e) => Err(e),
            Err(e) => Err(context(e, what)),
        }
    }
}

/// A send error with context; `EMSGSIZE` also names the size and the limits.
fn sent_error(error: io::Error, len: usize, what: impl std::fmt::Display) -> io::Error {
    if would_block(&error) {
        return error;
    }
    if error.raw_os_error() == Some(libc::EMSGSIZE) {
        return context(
            error,
            format_args!(
                "{what}: a datagram of {len} bytes is too large to send (EMSGSIZE; UDP carries \
                 at most 65507 bytes over IPv4 and 65527 over IPv6, a Unix datagram at most the \
                 socket's send buffer)"
            ),
        );
    }
    context(error, what)
}
