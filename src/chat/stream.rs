//! Handing a chat connection over to native async code with every buffered byte.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Framed};

use crate::channel::Channel;
use crate::channel::NativeStream;
use crate::chat::state::Chat;

/// A connection taken out of a chat: the socket, the input already read but not framed, and
/// the output queued but not sent. Nothing is lost: read `unparsed` before the socket, write
/// `unsent` before anything else (or let [`into_framed`](ChatStream::into_framed) do both).
///
/// # Example
///
/// A line protocol whose `UPGRADE` command hands the connection to native code, here a
/// `tokio-util` [`Framed`](https://docs.rs/tokio-util/0.7/tokio_util/codec/struct.Framed.html) with
/// [`LinesCodec`](https://docs.rs/tokio-util/0.7/tokio_util/codec/struct.LinesCodec.html). The line the
/// peer sent right after the command was read with it and is in `unparsed`; the reply pushed
/// before the hand-over is in `unsent`:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::io;
/// use asyncore::chat::{AsyncChat, Chat, ChatHandler, ChatStream};
/// use asyncore::{Channel, Map};
/// use futures::{SinkExt, StreamExt};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::sync::oneshot;
/// use tokio_util::codec::LinesCodec;
///
/// struct Upgrade { to_native: Option<oneshot::Sender<ChatStream>> }
///
/// impl ChatHandler for Upgrade {
///     fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
///         if chat.take_line() == "UPGRADE" {
///             chat.push_line("switching");
///             let taken = chat.take_stream(channel)?; // the channel leaves the map
///             if let Some(to_native) = self.to_native.take() {
///                 let _ = to_native.send(taken);
///             }
///         }
///         Ok(())
///     }
/// }
///
/// let (ours, mut peer) = tokio::net::UnixStream::pair()?;
/// let (to_native, from_map) = oneshot::channel();
/// let map = Map::new();
/// map.add(Channel::from_unix(ours), AsyncChat::new(Upgrade { to_native: Some(to_native) }, b"\n"))?;
/// peer.write_all(b"UPGRADE\nfirst native line\n").await?;
/// map.run().await?; // returns once the connection has left the map
/// let mut lines = from_map.await.expect("handed over").into_framed(LinesCodec::new());
/// assert_eq!(lines.next().await.transpose().map_err(io::Error::other)?.as_deref(), Some("first native line"));
/// lines.send("welcome").await.map_err(io::Error::other)?; // after the unsent "switching"
/// drop(lines);
/// let mut answers = String::new();
/// peer.read_to_string(&mut answers).await?;
/// assert_eq!(answers, "switching\nwelcome\n");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ChatStream {
    /// The socket, a Tokio stream.
    pub stream: NativeStream,
    /// Input received and not yet passed to the handler as a complete record: the record
    /// collected by the default `collect_incoming_data`, then the bytes not framed yet.
    pub unparsed: BytesMut,
    /// Output queued and not yet sent, producers run to exhaustion, in order (anything after a
    /// `close_when_done` is dropped, as it would never have been sent).
    pub unsent: Bytes,
}

impl ChatStream {
    /// A [`Framed`](https://docs.rs/tokio-util/0.7/tokio_util/codec/struct.Framed.html) over the stream whose read buffer starts with the unparsed input and whose
    /// write buffer holds the unsent output (sent on the first flush).
    pub fn into_framed<C: Decoder>(self, codec: C) -> Framed<NativeStream, C> {
        // from_parts, unlike writing into a new Framed's buffer, makes it decode the unparsed
        // input before reading the socket.
        let mut parts = Framed::new(self.stream, codec).into_parts();
        parts.read_buf = self.unparsed;
        parts.write_buf = BytesMut::from(&self.unsent[..]);
        Framed::from_parts(parts)
    }
}

impl Chat {
    /// Takes the connection out of the chat for native code ([`Channel::take_stream`]): the
    /// channel is closed (it leaves the map; no `handle_close`), and its input and output
    /// buffers come along. Works inside a hook (e.g. `found_terminator` of an upgrade command:
    /// the rest of that read is in `unparsed`) and from [`Map::with`](crate::Map::with).
    ///
    /// # Errors
    /// Those of [`Channel::take_stream`]: a closed channel, or one that is not a stream; the
    /// buffers are then left as they were.
    pub fn take_stream(&mut self, channel: &mut Channel) -> io::Result<ChatStream> {
        self.detach(channel);
        let stream = match channel.take_stream() {
            Ok(stream) => stream,
            Err(e) => {
                self.attach(channel);
                return Err(e);
            }
        };
        let unparsed = self.take_unparsed();
        let pieces = self.output_mut().drain();
        let unsent = match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.into_iter().next().expect("one piece"),
            _ => pieces.concat().into(),
        };
        Ok(ChatStream {
            stream,
            unparsed,
            unsent,
        })
    }
}
