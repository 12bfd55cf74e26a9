//! Urgent (out-of-band) TCP data: asyncore's `handle_expt`, and `recv(n, MSG_OOB)`.
//!
//! The model is documented on [`Channel::set_urgent_events`], where users find it.

use super::Channel;
use crate::error::{closed_channel, context};
use crate::io::{Io, Stream, UrgentWatch};
use std::io;
use std::mem::MaybeUninit;

impl Channel {
    /// Turns urgent-data events on or off for a TCP channel: while on, a peer's out-of-band
    /// byte (`send(.., MSG_OOB)`) runs the dispatcher's
    /// [`handle_expt`](crate::Dispatcher::handle_expt), as asyncore's exceptional condition does;
    /// read it there with [`recv_urgent`](Channel::recv_urgent).
    ///
    /// Off by default, unlike asyncore, where every socket is in `select`'s `e` set: Tokio
    /// cannot watch a stream for urgent data (tokio-rs/tokio#5784), so a watched channel holds
    /// a second, duplicated descriptor registered for `PRIORITY` readiness, and ordinary
    /// channels should not pay for that. Call it after [`connect`](Channel::connect), or on an
    /// accepted channel before adding it to a map (or in a callback).
    ///
    /// Turn it on for any peer that may send urgent data (telnet, FTP's `ABOR`): without it
    /// the byte is invisible, and since a read stops short at the urgent mark, which the
    /// reactor takes for "the socket is drained" (see the crate docs), ordinary data queued
    /// behind an unread urgent byte waits until the peer sends more or closes. A watched
    /// channel does not take short reads for drained.
    ///
    /// Event rules:
    ///
    /// - The channel is watched while it waits for anything (`readable()` or `writable()`), as
    ///   `select` watches the `e` set only for sockets in `r` or `w`. Urgent events run after
    ///   the read and write events of the same wake-up, as in asyncore.
    /// - One `handle_expt` per urgent byte that arrives: the readiness is cleared when it is
    ///   seen, so a handler that leaves the byte unread is not called again for it (asyncore's
    ///   `select` would call it until the byte is read). TCP keeps only one urgent byte: a new
    ///   one replaces one not yet read.
    /// - As asyncore's `handle_expt_event`, a pending socket error (`SO_ERROR`) at that moment
    ///   runs `handle_close` instead of `handle_expt`.
    ///
    /// # Errors
    /// `InvalidInput` unless the channel is a TCP stream (a Unix socket has no urgent data);
    /// `Unsupported` on systems other than Linux and Android; what `dup` reports.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// use std::io;
    /// use asyncore::{Channel, Dispatcher, Map};
    ///
    /// struct Client;
    ///
    /// impl Dispatcher for Client {
    ///     fn writable(&self, _: &Channel) -> bool {
    ///         false
    ///     }
    ///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
    ///         channel.recv(1024)?;
    ///         Ok(())
    ///     }
    ///     fn handle_expt(&mut self, channel: &mut Channel) -> io::Result<()> {
    ///         assert_eq!(channel.recv_urgent()?, b'!');
    ///         channel.close();
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let ours = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (theirs, _) = listener.accept()?;
    /// let mut channel = Channel::from_tcp(ours);
    /// channel.set_urgent_events(true)?;
    /// asyncore::socket2::SockRef::from(&theirs).send_out_of_band(b"!")?;
    /// let map = Map::new();
    /// map.add(channel, Client)?;
    /// map.run().await // handle_expt closes the channel
    /// # }
    /// ```
    pub fn set_urgent_events(&mut self, on: bool) -> io::Result<()> {
        let stream = match &self.io {
            Io::Stream(Stream::Tcp(stream)) => stream,
            Io::Closed => return Err(closed_channel("set_urgent_events")),
            _ => {
                return Err(self.misuse(
                    "set_urgent_events",
                    "is not a TCP stream (only TCP has urgent data)",
                ))
            }
        };
        if !on {
            self.urgent = None; // closes the duplicate descriptor
        } else if self.urgent.is_none() {
            let watch =
                UrgentWatch::new(stream).map_err(|e| context(e, "watch for urgent data"))?;
            self.urgent = Some(Box::new(watch));
        }
        Ok(())
    }

    /// Whether urgent-data events are on ([`set_urgent_events`](Channel::set_urgent_events)).
    pub fn urgent_events(&self) -> bool {
        self.urgent.is_some()
    }

    /// Reads the urgent byte: Python's `recv(1, MSG_OOB)`. Works on any TCP channel, watched or
    /// not.
    ///
    /// # Errors
    /// `WouldBlock` when no urgent byte is waiting (Linux says `EINVAL`; returned from a
    /// callback, it is "nothing to do"), also when it was already read, or when `SO_OOBINLINE`
    /// puts urgent data in the ordinary stream; `NotConnected` on a closed channel; other
    /// errors of `recv(2)` with context.
    pub fn recv_urgent(&mut self) -> io::Result<u8> {
        if self.is_closed() {
            return Err(closed_channel("recv_urgent"));
        }
        self.progress = true;
        let mut byte = [MaybeUninit::new(0u8)];
        match self.socket()?.recv_out_of_band(&mut byte) {
            Ok(1) => Ok(byte_value(byte[0])),
            Ok(_) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || crate::error::would_block(&e) => {
                Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "recv_urgent: no urgent byte is waiting",
                ))
            }
            Err(e) => Err(context(e, "recv_urgent")),
        }
    }

    /// Takes the urgent event the reactor saw, if any (the reactor's `handle_expt_event`).
    pub(crate) fn take_urgent_event(&mut self) -> bool {
        self.urgent.as_mut().is_some_and(|watch| watch.take())
    }
}

#[allow(unsafe_code)]
fn byte_value(byte: MaybeUninit<u8>) -> u8 {
    // SAFETY: the byte was initialised (to 0) before the call and `recv` wrote it; socket2
    // offers no initialised-buffer variant of `recv_out_of_band`.
    unsafe { byte.assume_init() }
}
