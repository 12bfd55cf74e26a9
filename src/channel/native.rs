//! Hand-over of a connection between a map and native code: [`NativeStream`] and
//! [`Channel::take_stream`], whose docs say how.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::channel::{Channel, TlsStream};
use crate::error::closed_channel;
use crate::io::Io;

/// A connected stream taken out of a map ([`Channel::take_stream`]), for native Tokio code.
///
/// Out: [`Channel::take_stream`] removes the channel from its map (no `handle_close`; its
/// async work is aborted) and returns the socket, still open and still registered with Tokio.
/// A `NativeStream` implements [`AsyncRead`](https://docs.rs/tokio/1/tokio/io/trait.AsyncRead.html) and
/// [`AsyncWrite`](https://docs.rs/tokio/1/tokio/io/trait.AsyncWrite.html), so it works with `tokio::io::AsyncReadExt`,
/// `tokio-util`'s `Framed` and friends. A plaintext channel itself keeps
/// no unread input (every `recv` hands its bytes to the dispatcher): what the dispatcher read
/// but did not use is the dispatcher's to pass on with the stream; an asynchat connection does
/// both with [`Chat::take_stream`](crate::chat::Chat::take_stream). A TLS channel comes out as
/// [`NativeStream::Tls`], its session with it, decrypted bytes not yet read included.
///
/// In: [`Channel::from_tcp`] and [`Channel::from_unix`] adopt a connected Tokio stream (match
/// on the variants to get it back); a native reader that already buffered input feeds it to
/// the dispatcher it creates.
///
/// # Example
///
/// A dispatcher hands its connection to native code at the first sign of input, without
/// reading it; native code reads the bytes the dispatcher left and answers:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::io;
/// use asyncore::{Channel, Dispatcher, Map, NativeStream};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::sync::oneshot;
///
/// struct Handover { to_native: Option<oneshot::Sender<NativeStream>> }
///
/// impl Dispatcher for Handover {
///     fn writable(&self, _: &Channel) -> bool { false }
///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
///         let stream = channel.take_stream()?; // leaves the map; the socket stays open
///         if let Some(to_native) = self.to_native.take() {
///             let _ = to_native.send(stream);
///         }
///         Ok(())
///     }
/// }
///
/// let (ours, mut peer) = tokio::net::UnixStream::pair()?;
/// let (to_native, from_map) = oneshot::channel();
/// let map = Map::new();
/// map.add(Channel::from_unix(ours), Handover { to_native: Some(to_native) })?;
/// peer.write_all(b"ping").await?;
/// map.run().await?; // returns once the channel has left the map
/// let mut stream = from_map.await.expect("handed over");
/// let mut ping = [0; 4];
/// stream.read_exact(&mut ping).await?; // no byte lost
/// stream.write_all(b"pong").await?;
/// let mut pong = [0; 4];
/// peer.read_exact(&mut pong).await?;
/// assert_eq!((&ping, &pong), (b"ping", b"pong"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum NativeStream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
    /// A TLS connection (TCP or Unix underneath), from a channel that spoke TLS, with
    /// everything its session held.
    Tls(Box<TlsStream>),
}

impl Channel {
    /// Takes the connection out of the map as a native stream: the channel leaves the map as
    /// with [`close`](Channel::close) (no `handle_close`), but the socket stays open and is
    /// returned. Call it from a callback (or a [`Map::with`](crate::Map::with) closure) at a
    /// protocol switch, and hand the stream, plus any input your dispatcher buffered, to a
    /// native task; [`NativeStream`] shows one.
    ///
    /// A TLS channel's stream is a [`NativeStream::Tls`]: the session goes with the socket.
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
        let taken = self.take_tls(stream); // the TLS session, if any, goes with it
        self.close();
        Ok(taken)
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
            NativeStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
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
            NativeStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NativeStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            NativeStream::Unix(s) => Pin::new(s).poll_flush(cx),
            NativeStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NativeStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            NativeStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            NativeStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
