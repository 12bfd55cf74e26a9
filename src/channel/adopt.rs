//! Adopting a socket made elsewhere, in whatever state it is: asyncore's `dispatcher(sock)`
//! and `set_socket(sock)`.
//!
//! [`Channel::from_socket`] takes a `socket2::Socket` and finds out what it is: its type
//! (`SO_TYPE`: stream or datagram), its family (from its local address: IPv4, IPv6 or Unix),
//! whether it listens (`SO_ACCEPTCONN`) and whether it is connected (`getpeername`). It makes
//! the socket non-blocking and gives it the channel state that fits, exactly as if the channel
//! had made it. The standard library's sockets and Tokio's listeners convert the same way.

use std::io;
use std::os::fd::OwnedFd;

use super::{require_runtime, Channel};
use crate::address::{Address, Family};
use crate::error::context;
use crate::io::{Io, Listener, Stream};

impl Channel {
    /// Adopts a socket in any state: asyncore's `dispatcher(sock)` / `set_socket(sock)`.
    ///
    /// The socket is made non-blocking, and the channel starts in the state the socket is in:
    ///
    /// | the socket | the channel |
    /// |---|---|
    /// | stream, fresh or bound | as from [`create_socket`](Channel::create_socket): [`bind`](Channel::bind), [`listen`](Channel::listen) or [`connect`](Channel::connect) next; a bound socket's address is its `addr`, as after `bind` |
    /// | stream, listening | [`accepting`](Channel::accepting), as after `listen`: read events are `handle_accept`; [`addr`](Channel::addr) is the local address |
    /// | stream, connected | [`connected`](Channel::connected), as from [`from_tcp`](Channel::from_tcp): `handle_connect` never runs; `addr` is the peer |
    /// | datagram (UDP or Unix), bound or not, connected or not | a datagram channel, as from [`from_udp`](Channel::from_udp) (connected, with the peer as `addr`, if it has one) |
    ///
    /// Differences from asyncore: asyncore's `dispatcher(sock)` marks every socket connected
    /// and then asks `getpeername`, so an adopted listening socket is neither connected nor
    /// accepting there, and its read events reach `handle_read`; here it is accepting, as if
    /// `listen` had been called on the channel. Detecting a listening socket needs
    /// `SO_ACCEPTCONN` (Linux, Android, FreeBSD, Fuchsia); elsewhere a listening socket is
    /// taken for a fresh one, and calling `listen` on the channel makes it accepting. A socket
    /// whose non-blocking connect is still in progress is taken for a fresh one too: adopt it
    /// once the connect has completed.
    ///
    /// # Errors
    /// - `Unsupported` for a socket that is neither a stream nor a datagram socket
    ///   (`SOCK_SEQPACKET`, raw sockets), or of another family than IPv4, IPv6 and Unix;
    /// - the OS error, with context, when the descriptor is not a socket (`ENOTSOCK`; use
    ///   [`from_owned_fd`](Channel::from_owned_fd) for other descriptors) or cannot be made
    ///   non-blocking;
    /// - `Other` when no Tokio runtime is running and the socket must be registered with it
    ///   (every state but fresh).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// use asyncore::{socket2, Channel};
    ///
    /// // A listener made by other code, options and all.
    /// let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    /// socket.set_reuse_address(true)?;
    /// socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())?;
    /// socket.listen(128)?;
    /// let listener = Channel::from_socket(socket)?;
    /// assert!(listener.accepting() && !listener.connected());
    ///
    /// // A socket fresh from socket(2) is ready to bind, listen or connect.
    /// let fresh = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    /// let fresh = Channel::from_socket(fresh)?;
    /// assert!(!fresh.accepting() && !fresh.connected() && !fresh.connecting());
    /// # Ok(()) }
    /// ```
    pub fn from_socket(socket: socket2::Socket) -> io::Result<Channel> {
        let kind = socket
            .r#type()
            .map_err(|e| context(e, "adopt a socket: SO_TYPE"))?;
        let local = socket
            .local_addr()
            .map_err(|e| context(e, "adopt a socket: getsockname"))?;
        let domain = local.domain();
        let family = if domain == socket2::Domain::IPV4 {
            Family::Inet
        } else if domain == socket2::Domain::IPV6 {
            Family::Inet6
        } else if domain == socket2::Domain::UNIX {
            Family::Unix
        } else {
            return Err(unsupported(format_args!("a socket of {domain:?}")));
        };
        let stream = if kind == socket2::Type::STREAM {
            true
        } else if kind == socket2::Type::DGRAM {
            false
        } else {
            return Err(unsupported(format_args!("a {kind:?} socket")));
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| context(e, "adopt a socket: set O_NONBLOCK"))?;
        if !stream {
            require_runtime("adopt a datagram socket")?;
            let registered = match family {
                Family::Unix => tokio::net::UnixDatagram::from_std(socket.into())
                    .map(Channel::from_unix_datagram),
                _ => tokio::net::UdpSocket::from_std(socket.into()).map(Channel::from_udp),
            };
            return registered.map_err(|e| context(e, "adopt a socket: register with Tokio"));
        }
        if listening(&socket)? {
            require_runtime("adopt a listening socket")?;
            let listener = match family {
                Family::Unix => {
                    tokio::net::UnixListener::from_std(socket.into()).map(Listener::unix)
                }
                _ => tokio::net::TcpListener::from_std(socket.into()).map(Listener::tcp),
            }
            .map_err(|e| context(e, "adopt a socket: register with Tokio"))?;
            return Ok(Channel::adopted_listener(
                family,
                listener,
                Address::from_sockaddr(&local),
            ));
        }
        match socket.peer_addr() {
            Ok(peer) => {
                require_runtime("adopt a connected socket")?;
                let stream = match family {
                    Family::Unix => {
                        tokio::net::UnixStream::from_std(socket.into()).map(Stream::Unix)
                    }
                    _ => tokio::net::TcpStream::from_std(socket.into()).map(Stream::Tcp),
                }
                .map_err(|e| context(e, "adopt a socket: register with Tokio"))?;
                Ok(Channel::from_stream(
                    family,
                    stream,
                    Some(Address::from_sockaddr(&peer)),
                ))
            }
            // Not connected (asyncore also takes EINVAL to mean that).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::EINVAL)) => {
                let mut channel = Channel::with_io(family, Io::Fresh(socket));
                // Bound already: the address a `bind` on the channel would have kept.
                channel.addr = match Address::from_sockaddr(&local) {
                    Address::Inet(ip) if ip.port() == 0 => None,
                    Address::Unnamed => None,
                    bound => Some(bound),
                };
                Ok(channel)
            }
            Err(e) => Err(context(e, "adopt a socket: getpeername")),
        }
    }

    /// Adopts a listening Tokio TCP listener: the channel is
    /// [`accepting`](Channel::accepting), as after [`listen`](Channel::listen).
    pub fn from_tcp_listener(listener: tokio::net::TcpListener) -> Channel {
        let (family, local) = match listener.local_addr() {
            Ok(addr) if addr.is_ipv6() => (Family::Inet6, Some(Address::Inet(addr))),
            Ok(addr) => (Family::Inet, Some(Address::Inet(addr))),
            Err(_) => (Family::Inet, None),
        };
        let mut channel = Channel::with_io(family, Io::Listener(Box::new(Listener::tcp(listener))));
        channel.accepting = true;
        channel.addr = local;
        channel
    }

    /// Adopts a listening Tokio Unix listener (see [`Channel::from_tcp_listener`]).
    pub fn from_unix_listener(listener: tokio::net::UnixListener) -> Channel {
        let local = listener
            .local_addr()
            .ok()
            .map(|addr| Address::from_unix(&addr.into()));
        let mut channel = Channel::with_io(
            Family::Unix,
            Io::Listener(Box::new(Listener::unix(listener))),
        );
        channel.accepting = true;
        channel.addr = local;
        channel
    }

    fn adopted_listener(family: Family, listener: Listener, local: Address) -> Channel {
        let mut channel = Channel::with_io(family, Io::Listener(Box::new(listener)));
        channel.accepting = true;
        channel.addr = Some(local);
        channel
    }
}

/// Whether `listen(2)` was called on the socket (`SO_ACCEPTCONN`).
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia"
))]
fn listening(socket: &socket2::Socket) -> io::Result<bool> {
    socket
        .is_listener()
        .map_err(|e| context(e, "adopt a socket: SO_ACCEPTCONN"))
}

/// `SO_ACCEPTCONN` is not available here: a listening socket is taken for a fresh one, which
/// `listen` makes accepting (documented on [`Channel::from_socket`]).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia"
)))]
fn listening(_: &socket2::Socket) -> io::Result<bool> {
    Ok(false)
}

fn unsupported(what: std::fmt::Arguments<'_>) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "adopt a socket: {what} is not supported (stream and datagram sockets of IPv4, IPv6 \
             and Unix are)"
        ),
    )
}

/// Adopts the socket ([`Channel::from_socket`]).
impl TryFrom<socket2::Socket> for Channel {
    type Error = io::Error;
    fn try_from(socket: socket2::Socket) -> io::Result<Channel> {
        Channel::from_socket(socket)
    }
}

macro_rules! adopt_std {
    ($($(#[$doc:meta])* $std:ty;)*) => {$(
        $(#[$doc])*
        impl TryFrom<$std> for Channel {
            type Error = io::Error;
            fn try_from(socket: $std) -> io::Result<Channel> {
                Channel::from_socket(socket2::Socket::from(OwnedFd::from(socket)))
            }
        }
    )*};
}

adopt_std! {
    /// Adopts a listening std TCP listener: the channel is accepting
    /// ([`Channel::from_socket`]).
    std::net::TcpListener;
    /// Adopts a std TCP stream: connected, or fresh if it is not connected (any more)
    /// ([`Channel::from_socket`]).
    std::net::TcpStream;
    /// Adopts a std UDP socket: a datagram channel, connected if the socket is
    /// ([`Channel::from_socket`]).
    std::net::UdpSocket;
    /// Adopts a listening std Unix listener: the channel is accepting
    /// ([`Channel::from_socket`]).
    std::os::unix::net::UnixListener;
    /// Adopts a std Unix stream: connected, or fresh if it is not connected
    /// ([`Channel::from_socket`]).
    std::os::unix::net::UnixStream;
    /// Adopts a std Unix datagram socket: a datagram channel, connected if the socket is
    /// ([`Channel::from_socket`]).
    std::os::unix::net::UnixDatagram;
}

/// Adopts a Tokio TCP listener ([`Channel::from_tcp_listener`]).
impl From<tokio::net::TcpListener> for Channel {
    fn from(listener: tokio::net::TcpListener) -> Channel {
        Channel::from_tcp_listener(listener)
    }
}

/// Adopts a Tokio Unix listener ([`Channel::from_unix_listener`]).
impl From<tokio::net::UnixListener> for Channel {
    fn from(listener: tokio::net::UnixListener) -> Channel {
        Channel::from_unix_listener(listener)
    }
}
