//! Handing a chat connection over to native async code with every buffered byte.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Framed};

use crate::channel::Channel;
use crate::chat::state::Chat;
use crate::handover::NativeStream;

/// A connection taken out of a chat: the socket, the input already read but not framed, and
/// the output queued but not sent. Nothing is lost: read `unparsed` before the socket, write
/// `unsent` before anything else (or let [`into_framed`](ChatStream::into_framed) do both).
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
    /// A [`Framed`] over the stream whose read buffer starts with the unparsed input and whose
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
