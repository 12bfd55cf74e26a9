//! The socket under a datagram channel: a `tokio::net::UdpSocket` (IPv4 or IPv6) or a
//! `tokio::net::UnixDatagram`.
//!
//! Readiness is Tokio's cached receive/send readiness (`poll_recv_ready`/`poll_send_ready`),
//! cleared only when an operation returns `WouldBlock`, as for streams: a handler that takes one
//! datagram per read event is called again at once while more are queued, and the event after
//! the last one finds `WouldBlock` ("nothing to do").
//!
//! Receives read into the spare capacity of the caller's buffer (no zeroing). Tokio reports no
//! `MSG_TRUNC`, so the channel detects truncation by offering one byte more than it was asked
//! for (see `Channel::recvfrom`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::task::Context;

use bytes::BufMut;
use tokio::net::{UdpSocket, UnixDatagram};

use crate::address::Address;
use crate::event::{Interest, Ready};

pub(crate) enum Datagram {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Datagram {
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, want: Interest) -> Ready {
        // As for streams, an `Err` (runtime shutting down) counts as ready so that the next
        // operation reports it.
        let mut ready = Ready::NONE;
        if want.is_read() {
            let polled = match self {
                Datagram::Udp(s) => s.poll_recv_ready(cx),
                Datagram::Unix(s) => s.poll_recv_ready(cx),
            };
            if polled.is_ready() {
                ready = ready | Ready::READ;
            }
        }
        if want.is_write() {
            let polled = match self {
                Datagram::Udp(s) => s.poll_send_ready(cx),
                Datagram::Unix(s) => s.poll_send_ready(cx),
            };
            if polled.is_ready() {
                ready = ready | Ready::WRITE;
            }
        }
        ready
    }

    pub(crate) fn fd(&self) -> RawFd {
        match self {
            Datagram::Udp(s) => s.as_raw_fd(),
            Datagram::Unix(s) => s.as_raw_fd(),
        }
    }

    pub(crate) fn sock_ref(&self) -> socket2::SockRef<'_> {
        match self {
            Datagram::Udp(s) => socket2::SockRef::from(s),
            Datagram::Unix(s) => socket2::SockRef::from(s),
        }
    }

    /// Receives one datagram from the connected peer (or anyone, if unconnected) into `buf`.
    pub(crate) fn try_recv_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        match self {
            Datagram::Udp(s) => s.try_recv_buf(buf),
            Datagram::Unix(s) => s.try_recv_buf(buf),
        }
    }

    /// Receives one datagram into `buf`, with its sender.
    pub(crate) fn try_recv_buf_from<B: BufMut>(&self, buf: &mut B) -> io::Result<(usize, Address)> {
        match self {
            Datagram::Udp(s) => s
                .try_recv_buf_from(buf)
                .map(|(n, from)| (n, Address::Inet(from))),
            Datagram::Unix(s) => s
                .try_recv_buf_from(buf)
                .map(|(n, from)| (n, Address::from_unix(&from.into()))),
        }
    }

    /// Sends one datagram to the connected peer.
    pub(crate) fn try_send(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Datagram::Udp(s) => s.try_send(data),
            Datagram::Unix(s) => s.try_send(data),
        }
    }

    /// Sends one datagram, gathered from `data`, to the connected peer.
    pub(crate) fn try_send_vectored(&self, data: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Tokio has no vectored datagram send; `try_io` keeps its readiness cache right.
        match self {
            Datagram::Udp(s) => s.try_io(tokio::io::Interest::WRITABLE, || {
                socket2::SockRef::from(s).send_vectored(data)
            }),
            Datagram::Unix(s) => s.try_io(tokio::io::Interest::WRITABLE, || {
                socket2::SockRef::from(s).send_vectored(data)
            }),
        }
    }

    /// Sends one datagram to `target`, an address of the socket's family (checked by the
    /// caller).
    pub(crate) fn try_send_to(&self, data: &[u8], target: &Address) -> io::Result<usize> {
        match (self, target) {
            (Datagram::Udp(s), Address::Inet(addr)) => s.try_send_to(data, *addr),
            (Datagram::Unix(s), Address::Unix(path)) => s.try_send_to(data, path),
            (_, Address::Unnamed) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the sender is an unbound Unix datagram socket: it has no address to reply to",
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("address {target} does not fit the socket's family"),
            )),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Datagram::Udp(s) => s.take_error(),
            Datagram::Unix(s) => s.take_error(),
        }
    }

    pub(crate) fn peer_address(&self) -> io::Result<Address> {
        match self {
            Datagram::Udp(s) => s.peer_addr().map(Address::Inet),
            Datagram::Unix(s) => s.peer_addr().map(|a| Address::from_unix(&a.into())),
        }
    }
}
