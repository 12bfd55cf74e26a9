//! [`ChatHandler`] (your hooks) and [`AsyncChat`] (the [`Dispatcher`] that drives them).

use std::io;

use bytes::Bytes;

use crate::channel::Channel;
use crate::chat::state::Chat;
use crate::chat::terminator::FrameEvent;
use crate::dispatcher::Dispatcher;
use crate::event::InterestScope;

/// asynchat's hooks, each with asynchat's default except `found_terminator`, which is yours.
///
/// Every hook gets the connection's [`Chat`] (terminator, collected record, output queue) and,
/// where asynchat would touch the socket, the [`Channel`]. Returning `Err` routes the error as a
/// [`Dispatcher`] callback's does: to [`handle_error`](ChatHandler::handle_error).
pub trait ChatHandler: 'static {
    /// A record ended: take it with [`Chat::take_data`], answer with [`Chat::push`], maybe
    /// change the terminator for what follows.
    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()>;

    /// Bytes of the current record (never the terminator's). Default: append them to the
    /// chat's record, bounded by [`Chat::max_frame_len`] (asynchat's `_collect_incoming_data`;
    /// asynchat itself has no default and raises `NotImplementedError`).
    fn collect_incoming_data(&mut self, chat: &mut Chat, data: Bytes) -> io::Result<()> {
        chat.collect_incoming_data(data)
    }

    /// Whether to read now. Default: `true` (asynchat always reads). Return `false` while
    /// [`Chat::is_paused`] to stop reading from a peer that does not read its answers.
    fn readable(&self, chat: &Chat, channel: &Channel) -> bool {
        let _ = (chat, channel);
        true
    }

    /// What [`readable`](ChatHandler::readable) depends on, and so when the reactor asks again:
    /// see [`Dispatcher::interest_scope`]. Default: [`InterestScope::Shared`]. A handler whose
    /// `readable` reads only its own fields and the chat returns [`InterestScope::Own`] (the
    /// chat's own `writable` depends only on its output queue, which is filled by its own
    /// hooks or through [`Map::with`](crate::Map::with) and handles, which ask again).
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Shared
    }

    /// A connect started with [`Channel::connect`] completed; output pushed before is sent
    /// after this returns. Default: nothing.
    fn handle_connect(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let _ = (chat, channel);
        Ok(())
    }

    /// The channel's TLS handshake completed ([`Chat::start_tls`],
    /// [`Channel::start_tls`]); output pushed here is sent after it returns. Default: nothing.
    fn handle_tls_ready(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let _ = (chat, channel);
        Ok(())
    }

    /// The peer finished sending (it may still read). An unterminated last record stays
    /// collected; `found_terminator` is not called for it (nor is it in asynchat). Default:
    /// [`Chat::close_when_done`], so answers already pushed still reach the peer (asynchat
    /// closes at once and drops them).
    fn handle_read_eof(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let _ = channel;
        chat.close_when_done();
        Ok(())
    }

    /// The connection closed, or `close_when_done`'s turn came. Default: close the channel
    /// (asynchat's `handle_close` is `close()`, without a log line).
    ///
    /// Runs at most once. To say goodbye from here, push the last reply and call
    /// [`Chat::close_when_done`] instead of closing: the reply is sent as the peer takes it,
    /// and then the channel closes without a second `handle_close`.
    fn handle_close(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let _ = chat;
        channel.close();
        Ok(())
    }

    /// The channel's deadline passed ([`Channel::set_timeout`]). Default: log at `DEBUG` and
    /// close.
    fn handle_timeout(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let _ = chat;
        tracing::debug!(channel = %channel.id(), "unhandled timeout event");
        channel.close();
        Ok(())
    }

    /// A hook returned `error` (a record too long is `InvalidData`). Default: log it at
    /// `ERROR` with the channel's identity, then [`handle_close`](ChatHandler::handle_close).
    fn handle_error(&mut self, chat: &mut Chat, channel: &mut Channel, error: io::Error) {
        tracing::error!(
            channel = %channel.id(),
            handler = std::any::type_name_of_val(self),
            state = %channel,
            error = %error,
            "uncaptured error, closing channel"
        );
        if let Err(e) = self.handle_close(chat, channel) {
            tracing::error!(channel = %channel.id(), error = %e, "handle_close failed; closing");
        }
        channel.close();
    }
}

/// asynchat's `async_chat`: a [`Dispatcher`] that frames input into records for a
/// [`ChatHandler`] and sends its queued output.
///
/// Add it to a map like any dispatcher; reach it from native code with
/// [`Map::with::<AsyncChat<H>, _>`](crate::Map::with) or
/// [`ChannelHandle::call::<AsyncChat<H>, ..>`](crate::ChannelHandle::call) to push output or
/// look at the handler:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::io;
/// use asyncore::chat::{AsyncChat, Chat, ChatHandler};
/// use asyncore::{Channel, Map};
///
/// /// Answers every line with its length.
/// struct Counter { lines: usize }
///
/// impl ChatHandler for Counter {
///     fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
///         let line = chat.take_data();
///         self.lines += 1;
///         chat.push(format!("{}\n", line.len()));
///         Ok(())
///     }
/// }
///
/// let (ours, mut theirs) = tokio::net::UnixStream::pair()?;
/// let map = Map::new();
/// let id = map.add(Channel::from_unix(ours), AsyncChat::new(Counter { lines: 0 }, b"\n"))?;
/// // Native code pushes to the connection and reads the handler's state.
/// map.with::<AsyncChat<Counter>, _>(id, |chat, _| chat.push("hi\n"))?;
/// let peer = async {
///     use tokio::io::{AsyncReadExt, AsyncWriteExt};
///     let mut answer = [0; 5];
///     theirs.read_exact(&mut answer[..3]).await?;
///     theirs.write_all(b"abc\n").await?;
///     theirs.read_exact(&mut answer[3..]).await?;
///     assert_eq!(&answer, b"hi\n3\n");
///     let lines = map.with::<AsyncChat<Counter>, _>(id, |chat, _| chat.handler().lines)?;
///     assert_eq!(lines, 1);
///     drop(theirs); // end of file: the chat closes and the map empties
///     io::Result::Ok(())
/// };
/// let (served, checked) = tokio::join!(map.run_until(std::future::pending()), peer);
/// served?;
/// checked?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncChat<H> {
    chat: Chat,
    handler: H,
}

impl<H: ChatHandler> AsyncChat<H> {
    /// A chat for `handler`, framing by `terminator`.
    pub fn new(handler: H, terminator: impl Into<crate::chat::Terminator>) -> AsyncChat<H> {
        AsyncChat::with_chat(handler, Chat::new(terminator))
    }

    /// A chat for `handler` with a [`Chat`] configured beforehand (sizes, limits).
    pub fn with_chat(handler: H, chat: Chat) -> AsyncChat<H> {
        AsyncChat { chat, handler }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The chat state.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// The chat state, mutably (terminator, sizes, output).
    pub fn chat_mut(&mut self) -> &mut Chat {
        &mut self.chat
    }

    /// Both at once, for code that needs the handler and the chat together.
    pub fn parts_mut(&mut self) -> (&mut H, &mut Chat) {
        (&mut self.handler, &mut self.chat)
    }

    /// Queues output ([`Chat::push`]); from native code it is sent on the next write event, or
    /// by [`Channel::close`] if that comes first.
    pub fn push(&mut self, data: impl Into<Bytes>) {
        self.chat.push(data);
    }

    /// Takes the handler back, with the chat state.
    pub fn into_parts(self) -> (H, Chat) {
        (self.handler, self.chat)
    }

    /// Frames what is buffered, calling the handler, until the input is used up, the channel
    /// closes, or a hook fails.
    fn frame(&mut self, channel: &mut Channel) -> io::Result<()> {
        while !channel.is_closed() {
            let Some(event) = self.chat.framer_mut().next_event() else {
                break;
            };
            match event {
                FrameEvent::Data(data) => {
                    self.handler.collect_incoming_data(&mut self.chat, data)?
                }
                FrameEvent::Terminator => self.handler.found_terminator(&mut self.chat, channel)?,
            }
        }
        Ok(())
    }

    /// Sends after a callback, if it pushed anything.
    fn flush(&mut self, channel: &mut Channel) -> io::Result<()> {
        if self.chat.writable(channel) && !channel.is_closed() {
            self.chat.initiate_send(channel)?;
        }
        Ok(())
    }
}

impl<H: ChatHandler> Dispatcher for AsyncChat<H> {
    fn interest_scope(&self) -> InterestScope {
        self.handler.interest_scope()
    }

    fn handle_added(&mut self, channel: &mut Channel) {
        // From now on a close sends what the socket takes of the queued output first.
        self.chat.attach(channel);
    }

    fn readable(&self, channel: &Channel) -> bool {
        self.handler.readable(&self.chat, channel)
    }

    fn writable(&self, channel: &Channel) -> bool {
        self.chat.writable(channel)
    }

    fn has_buffered_input(&self, _: &Channel) -> bool {
        self.chat.framer().has_event()
    }

    fn buffered(&self, _: &Channel) -> crate::snapshot::Buffered {
        let (low, high) = self.chat.write_buffer_limits();
        crate::snapshot::Buffered::default()
            .input(self.chat.buffered_input())
            .output(self.chat.queued_bytes())
            .water_marks(low, high, self.chat.is_paused())
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        // Input already read and not framed (the terminator changed from outside a hook) is
        // framed first, without waiting for the socket; the socket's turn comes next.
        if !self.chat.framer().has_event() {
            let data = channel.recv(self.chat.ac_in_buffer_size())?;
            if data.is_empty() {
                return Ok(()); // end of file: handle_read_eof or handle_close follows
            }
            self.chat.framer_mut().feed(data);
        }
        let framed = self.frame(channel);
        self.chat.compact();
        framed?;
        self.flush(channel)
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.chat.initiate_send(channel)
    }

    fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.handler.handle_connect(&mut self.chat, channel)?;
        self.flush(channel)
    }

    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.handler.handle_read_eof(&mut self.chat, channel)?;
        self.flush(channel)
    }

    fn handle_tls_ready(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.handler.handle_tls_ready(&mut self.chat, channel)?;
        self.flush(channel)
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.handler.handle_close(&mut self.chat, channel)
    }

    fn handle_timeout(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.handler.handle_timeout(&mut self.chat, channel)?;
        self.flush(channel)
    }

    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.handler.handle_error(&mut self.chat, channel, error);
    }
}
