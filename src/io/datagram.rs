//! The socket under a datagram channel: a `tokio::net::UdpSocket` (IPv4 or IPv6) or a
//! `tokio::net::UnixDatagram`.
//!
//! Readiness is Tokio's cached receive/send readiness (`poll_recv_ready`/`poll_send_ready`),
//! cleared only when an operation returns `WouldBlock`, as for streams: a handler that takes one
//! datagram per read event is called again at once while more are queued, and the event after
//! the last one finds `WouldBlock` ("nothing to do").
//!
//! A pending socket error (`ECONNREFUSED` on a connected UDP socket whose peer has no
//! listener, from an ICMP message) is readiness too, as in asyncore's `select`: Tokio's
//! receive readiness leaves it out (`EPOLLERR` comes without `EPOLLIN`), so the socket also
//! waits for Tokio's `ERROR` readiness while it waits to read, and the next receive returns the
//! error.
//!
//! Receives read into the spare capacity of the caller's buffer (no zeroing). Tokio reports no
//! `MSG_TRUNC`, so the channel detects truncation by offering one byte more than it was asked
//! for (see `Channel::recvfrom`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Context;

use bytes::BufMut;
use tokio::net::{UdpSocket, UnixDatagram};

use super::do_io;
use super::latch::Latch;
use crate::address::Address;
use crate::event::{Interest, Ready};

pub(crate) struct Datagram {
    socket: Socket,
    /// Tokio's `ERROR` readiness, seen and not yet collected by a receive.
    error: Latch,
}

/// Shared with the error waiter, which needs a socket of its own to await.
enum Socket {
    Udp(Rc<UdpSocket>),
    Unix(Rc<UnixDatagram>),
}

use Socket::{Udp, Unix};

impl Datagram {
    pub(crate) fn udp(socket: UdpSocket) -> Datagram {
        Datagram::new(Udp(Rc::new(socket)))
    }

    pub(crate) fn unix(socket: UnixDatagram) -> Datagram {
        Datagram::new(Unix(Rc::new(socket)))
    }

    fn new(socket: Socket) -> Datagram {
        Datagram {
            socket,
            error: Latch::default(),
        }
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>, want: Interest) -> Ready {
        // As for streams, an `Err` (runtime shutting down) counts as ready so that the next
        // operation reports it.
        let mut ready = Ready::NONE;
        if want.is_read() {
            let polled = match &self.socket {
                Udp(s) => s.poll_recv_ready(cx),
                Unix(s) => s.poll_recv_ready(cx),
            };
            if polled.is_ready() || self.poll_error(cx) {
                ready = ready | Ready::READ;
            }
        }
        if want.is_write() {
            let polled = match &self.socket {
                Udp(s) => s.poll_send_ready(cx),
                Unix(s) => s.poll_send_ready(cx),
            };
            if polled.is_ready() {
                ready = ready | Ready::WRITE;
            }
        }
        ready
    }

    /// Whether a socket error is pending; registers for a wake-up when there is none.
    fn poll_error(&mut self, cx: &mut Context<'_>) -> bool {
        let socket = &self.socket;
        self.error.poll(cx, || match socket {
            Udp(s) => {
                let s = Rc::clone(s);
                Box::pin(async move {
                    // An `Err` (the runtime shutting down) counts as seen: the receive reports it.
                    let _ = s.ready(tokio::io::Interest::ERROR).await;
                    true
                })
            }
            Unix(s) => {
                let s = Rc::clone(s);
                Box::pin(async move {
                    let _ = s.ready(tokio::io::Interest::ERROR).await;
                    true
                })
            }
        })
    }

    /// The pending socket error, if `ERROR` readiness was seen: collected (`SO_ERROR`), and the
    /// readiness cleared so that the next error wakes the channel again.
    ///
    /// The error is collected inside [`do_io`], so that the readiness cleared is the one seen
    /// before `SO_ERROR` was read: an error that comes after raises an event that the clear
    /// leaves alone. (Collected first and cleared after, that event could be erased, leaving
    /// the error in the socket and the channel not woken for it.)
    pub(crate) fn take_pending_error(&mut self) -> Option<io::Error> {
        if !self.error.take() {
            return None;
        }
        let collect = || Ok(self.take_error().unwrap_or_else(Some));
        let always = |_: &Option<io::Error>| true;
        let collected = match &self.socket {
            Udp(s) => do_io(&**s, tokio::io::Interest::ERROR, collect, always),
            Unix(s) => do_io(&**s, tokio::io::Interest::ERROR, collect, always),
        };
        // Without `ERROR` readiness (the wait ended because the runtime is shutting down),
        // `do_io` ran nothing: collect whatever is there.
        collected.unwrap_or_else(|_| self.take_error().unwrap_or_else(Some))
    }

    pub(crate) fn fd(&self) -> RawFd {
        match &self.socket {
            Udp(s) => s.as_raw_fd(),
            Unix(s) => s.as_raw_fd(),
        }
    }

    pub(crate) fn sock_ref(&self) -> socket2::SockRef<'_> {
        match &self.socket {
            Udp(s) => socket2::SockRef::from(&**s),
            Unix(s) => socket2::SockRef::from(&**s),
        }
    }

    /// Receives one datagram from the connected peer (or anyone, if unconnected) into `buf`.
    pub(crate) fn try_recv_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        match &self.socket {
            Udp(s) => s.try_recv_buf(buf),
            Unix(s) => s.try_recv_buf(buf),
        }
    }

    /// Receives one datagram into `buf`, with its sender.
    pub(crate) fn try_recv_buf_from<B: BufMut>(&self, buf: &mut B) -> io::Result<(usize, Address)> {
        match &self.socket {
            Udp(s) => s
                .try_recv_buf_from(buf)
                .map(|(n, from)| (n, Address::Inet(from))),
            Unix(s) => s
                .try_recv_buf_from(buf)
                .map(|(n, from)| (n, Address::from_unix(&from.into()))),
        }
    }

    /// Sends one datagram to the connected peer.
    pub(crate) fn try_send(&self, data: &[u8]) -> io::Result<usize> {
        match &self.socket {
            Udp(s) => s.try_send(data),
            Unix(s) => s.try_send(data),
        }
    }

    /// Sends one datagram, gathered from `data`, to the connected peer.
    pub(crate) fn try_send_vectored(&self, data: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Tokio has no vectored datagram send; `try_io` keeps its readiness cache right.
        match &self.socket {
            Udp(s) => s.try_io(tokio::io::Interest::WRITABLE, || {
                socket2::SockRef::from(&**s).send_vectored(data)
            }),
            Unix(s) => s.try_io(tokio::io::Interest::WRITABLE, || {
                socket2::SockRef::from(&**s).send_vectored(data)
            }),
        }
    }

    /// Sends one datagram to `target`, an address of the socket's family (checked by the
    /// caller).
    pub(crate) fn try_send_to(&self, data: &[u8], target: &Address) -> io::Result<usize> {
        match (&self.socket, target) {
            (Udp(s), Address::Inet(addr)) => s.try_send_to(data, *addr),
            (Unix(s), Address::Unix(path)) => s.try_send_to(data, path),
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
        match &self.socket {
            Udp(s) => s.take_error(),
            Unix(s) => s.take_error(),
        }
    }

    pub(crate) fn peer_address(&self) -> io::Result<Address> {
        match &self.socket {
            Udp(s) => s.peer_addr().map(Address::Inet),
            Unix(s) => s.peer_addr().map(|a| Address::from_unix(&a.into())),
        }
    }
}
