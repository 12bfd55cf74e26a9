//! Hand-over: a connection leaves the map as a native Tokio stream, or a native stream joins a
//! map as a channel, with no byte lost either way.
//!
//! Out: [`Channel::take_stream`] removes the channel from its map (no `handle_close`; its
//! async work is aborted) and returns the socket as a [`NativeStream`], still registered with
//! Tokio, which implements `AsyncRead`/`AsyncWrite` for `tokio-util`'s `Framed` and friends.
//! The channel itself keeps no unread input (every `recv` hands its bytes to the dispatcher),
//! so what was read but not yet consumed is the dispatcher's to pass on, together with the
//! stream; a dispatcher built on a framing or output buffer gives both back.
//!
//! In: [`Channel::from_tcp`] and [`Channel::from_unix`] adopt a connected Tokio stream; a
//! native reader that already buffered input feeds it to the dispatcher it creates.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::channel::Channel;
use crate::error::closed_channel;
use crate::io::{Io, Stream};

/// A connected stream taken out of a map ([`Channel::take_stream`]).
#[derive(Debug)]
pub enum NativeStream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl Channel {
    /// Takes the connection out of the map as a native stream: the channel leaves the map as
    /// with [`close`](Channel::close) (no `handle_close`), but the socket stays open and is
    /// returned. Call it from a callback (or a [`Map::with`](crate::Map::with) closure) at a
    /// protocol switch, and hand the stream, plus any input your dispatcher buffered, to a
    /// native task.
    ///
    /// # Errors
    /// `InvalidInput` if the channel is not a connected (or connecting) stream;
    /// `NotConnected` if it is closed.
    pub fn take_stream(&mut self) -> io::Result<NativeStream> {
        if self.is_closed() {
            return Err(closed_channel("take_stream"));
        }
        if !matches!(self.io, Io::Stream(_)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "take_stream: channel {} is not a stream connection",
                    self.id()
                ),
            ));
        }
        let Io::Stream(stream) = std::mem::replace(&mut self.io, Io::Closed) else {
            unreachable!("checked above")
        };
        self.close();
        Ok(match stream {
            Stream::Tcp(s) => NativeStream::Tcp(s),
            Stream::Unix(s) => NativeStream::Unix(s),
        })
    }
}

impl AsyncRead for NativeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NativeStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            NativeStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NativeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NativeStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            NativeStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NativeStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            NativeStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NativeStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            NativeStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
