//! [`Chat`]: one connection's asynchat state — the framer, the collected record, the output
//! queue and the sizes — without the user's handler.

use std::cell::RefCell;
use std::io;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};

use crate::channel::Channel;
use crate::chat::output::Output;
use crate::chat::producer::Producer;
use crate::chat::terminator::{Framer, Terminator};

/// asynchat's `ac_in_buffer_size` and `ac_out_buffer_size` default: 64 KiB.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// The default [`Chat::max_frame_len`]: 64 KiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024;

/// The state asynchat keeps on `self`, given to every [`ChatHandler`](crate::chat::ChatHandler)
/// callback next to the [`Channel`].
///
/// Input: the [`Framer`] (asynchat's `ac_in_buffer` and terminator) and the record collected so
/// far (asynchat's `incoming`, filled by the default `collect_incoming_data` and emptied by
/// [`take_data`](Chat::take_data)). Output: a queue of buffers and producers (asynchat's
/// `producer_fifo`).
///
/// Pushing only queues: the [`AsyncChat`](crate::chat::AsyncChat) sends when the callback that
/// pushed returns (and on write events), in one `writev` for all lines a read produced. From
/// native code ([`Map::with`](crate::Map::with), a handle's `call`) a push is sent on the next
/// write event, since the reactor asks `writable()` again after such a call. A
/// [`Channel::close`] before then sends what the socket takes first (see [`push`](Chat::push)).
///
/// # Example
///
/// A protocol of sized messages, `LENGTH\n` then that many bytes: the handler switches the
/// terminator between a delimiter and a count, and each switch applies to the input already
/// read.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::io;
/// use asyncore::chat::{AsyncChat, Chat, ChatHandler, Terminator};
/// use asyncore::{Channel, Map};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// struct Sized;
///
/// impl ChatHandler for Sized {
///     fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
///         let record = chat.take_data();
///         if let Terminator::Count(_) = chat.get_terminator() {
///             // A body ended: answer it, and read the next header.
///             chat.set_terminator(b"\n");
///             chat.push_line(format!("got {}", String::from_utf8_lossy(&record))); // + "\n"
///         } else {
///             // A header ended: the body is the next `length` bytes.
///             let length: usize = std::str::from_utf8(&record)
///                 .ok()
///                 .and_then(|text| text.parse().ok())
///                 .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
///             chat.set_terminator(length);
///         }
///         Ok(())
///     }
/// }
///
/// let (ours, mut peer) = tokio::net::UnixStream::pair()?;
/// let map = Map::new();
/// map.add(Channel::from_unix(ours), AsyncChat::new(Sized, b"\n"))?;
/// let talk = async move {
///     peer.write_all(b"5\nhello3\nabc").await?; // two messages in one write
///     peer.shutdown().await?; // end of file: the chat sends what is queued, then closes
///     let mut answers = String::new();
///     peer.read_to_string(&mut answers).await?;
///     assert_eq!(answers, "got hello\ngot abc\n");
///     io::Result::Ok(())
/// };
/// let (served, talked) = tokio::join!(map.run(), talk);
/// served?;
/// talked?;
/// # Ok(()) }
/// ```
pub struct Chat {
    framer: Framer,
    incoming: Incoming,
    /// Shared with the channel's close, which sends what it can before the socket goes.
    output: Rc<RefCell<Output>>,
    in_buffer_size: usize,
    max_frame_len: usize,
}

/// The record collected so far: usually one slice of a read (no copy); joined when a record
/// spans reads.
enum Incoming {
    Empty,
    One(Bytes),
    Joined(BytesMut),
}

impl Incoming {
    fn len(&self) -> usize {
        match self {
            Incoming::Empty => 0,
            Incoming::One(b) => b.len(),
            Incoming::Joined(b) => b.len(),
        }
    }

    fn take(&mut self) -> Bytes {
        match std::mem::replace(self, Incoming::Empty) {
            Incoming::Empty => Bytes::new(),
            Incoming::One(b) => b,
            Incoming::Joined(b) => b.freeze(),
        }
    }
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("terminator", self.framer.terminator())
            .field("buffered", &self.framer.buffered())
            .field("incoming", &self.incoming.len())
            .field("queued", &self.output.try_borrow().map(|o| o.queued()).ok())
            .finish()
    }
}

impl Default for Chat {
    fn default() -> Self {
        Chat::new(Terminator::None)
    }
}

impl Chat {
    /// A chat framing by `terminator` (asynchat has no default terminator and fails on the
    /// first read; here you choose one up front).
    pub fn new(terminator: impl Into<Terminator>) -> Chat {
        Chat {
            framer: Framer::new(terminator),
            incoming: Incoming::Empty,
            output: Rc::new(RefCell::new(Output::new(
                DEFAULT_BUFFER_SIZE,
                DEFAULT_BUFFER_SIZE,
            ))),
            in_buffer_size: DEFAULT_BUFFER_SIZE,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }

    // ----- input -----

    /// Sets the terminator. It applies at once, to input already buffered too: set inside
    /// `found_terminator`, it frames the rest of the read that ended the record.
    pub fn set_terminator(&mut self, terminator: impl Into<Terminator>) {
        self.framer.set_terminator(terminator);
    }

    /// The current terminator; for a count, how many bytes are still missing (0 inside
    /// `found_terminator`).
    pub fn get_terminator(&self) -> &Terminator {
        self.framer.terminator()
    }

    /// The default `collect_incoming_data`: appends `data` to the record being collected.
    ///
    /// # Errors
    /// `InvalidData` when the record would grow past [`max_frame_len`](Chat::max_frame_len):
    /// a peer that never sends the terminator cannot make the chat grow without bound. The
    /// record is dropped; returned from the callback, the error reaches `handle_error`, whose
    /// default logs it and closes the channel.
    pub fn collect_incoming_data(&mut self, data: Bytes) -> io::Result<()> {
        let len = self.incoming.len() + data.len();
        if len > self.max_frame_len {
            let terminator = self.framer.terminator().clone();
            self.incoming = Incoming::Empty;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "record longer than {} bytes without its terminator ({})",
                    self.max_frame_len,
                    describe(&terminator)
                ),
            ));
        }
        self.incoming = match std::mem::replace(&mut self.incoming, Incoming::Empty) {
            Incoming::Empty => Incoming::One(data),
            Incoming::One(first) => {
                let mut joined = BytesMut::with_capacity(len);
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
                Incoming::Joined(joined)
            }
            Incoming::Joined(mut joined) => {
                joined.extend_from_slice(&data);
                Incoming::Joined(joined)
            }
        };
        Ok(())
    }

    /// Takes the record collected so far (asynchat's `_get_data`): the bytes before the
    /// terminator, without it. A record that arrived in one read is a slice of it, not a copy.
    pub fn take_data(&mut self) -> Bytes {
        self.incoming.take()
    }

    /// [`take_data`](Chat::take_data) without one trailing `\r`: a line whether the peer ended
    /// it with `\n` or `\r\n` (with terminator `b"\n"`).
    pub fn take_line(&mut self) -> Bytes {
        let mut line = self.take_data();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        line
    }

    /// How many bytes the record collected so far holds.
    pub fn incoming_len(&self) -> usize {
        self.incoming.len()
    }

    /// How many received bytes wait to be framed (at most one read).
    pub fn buffered_input(&self) -> usize {
        self.framer.buffered()
    }

    /// The framer (unparsed input and terminator), for inspection.
    pub fn framer(&self) -> &Framer {
        &self.framer
    }

    pub(crate) fn framer_mut(&mut self) -> &mut Framer {
        &mut self.framer
    }

    /// Stops the collected record and held-back input from pinning the read buffer they are
    /// slices of (called after each read).
    pub(crate) fn compact(&mut self) {
        self.framer.compact();
        if let Incoming::One(b) = &self.incoming {
            self.incoming = Incoming::Joined(BytesMut::from(&b[..]));
        }
    }

    /// Takes the unparsed input: the collected record (if the default `collect_incoming_data`
    /// kept it) followed by the bytes not framed yet.
    pub fn take_unparsed(&mut self) -> BytesMut {
        let incoming = self.incoming.take();
        let rest = self.framer.take_buffered();
        let mut out = BytesMut::with_capacity(incoming.len() + rest.len());
        out.extend_from_slice(&incoming);
        out.extend_from_slice(&rest);
        out
    }

    // ----- output -----

    /// Queues `data` for sending; each send takes at most
    /// [`ac_out_buffer_size`](Chat::ac_out_buffer_size) bytes of the queue. Unlike asynchat,
    /// this does not send by itself: the reactor sends when the current callback returns.
    ///
    /// # Push, then close
    ///
    /// asynchat's `push` sends at once (one chunk of at most `ac_out_buffer_size` bytes, as
    /// much of it as the socket takes), so a reply pushed right before `close()` reaches the
    /// peer. So it does here: [`Channel::close`] on a chat's channel first sends, without
    /// waiting, what the socket takes of the queued output (up to a `close_when_done` marker;
    /// at most 64 sends of `ac_out_buffer_size`), then closes. That is at least what asynchat
    /// delivers, and all of a reply that fits in the socket's send buffer. The rest of a
    /// larger reply is dropped with the socket, as in asynchat: the peer receives a prefix,
    /// then end of file. To deliver everything, whatever its size, close with
    /// [`close_when_done`](Chat::close_when_done) instead (the reply then goes out as the peer
    /// reads it, and the channel closes after it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// use std::io;
    /// use asyncore::chat::{AsyncChat, Chat, ChatHandler};
    /// use asyncore::{Channel, Map};
    ///
    /// struct Bye;
    /// impl ChatHandler for Bye {
    ///     fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
    ///         chat.take_data();
    ///         chat.push("bye\n");
    ///         channel.close(); // the reply is sent first
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let (ours, mut theirs) = tokio::net::UnixStream::pair()?;
    /// let map = Map::new();
    /// map.add(Channel::from_unix(ours), AsyncChat::new(Bye, b"\n"))?;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// theirs.write_all(b"quit\n").await?;
    /// map.run().await?;
    /// let mut reply = String::new();
    /// theirs.read_to_string(&mut reply).await?;
    /// assert_eq!(reply, "bye\n");
    /// # Ok(()) }
    /// ```
    pub fn push(&mut self, data: impl Into<Bytes>) {
        self.output.borrow_mut().push(data.into());
    }

    /// Queues `data` followed by the current terminator (Twisted's `sendLine`). With a count
    /// or no terminator, only `data`.
    pub fn push_line(&mut self, data: impl Into<Bytes>) {
        self.push(data);
        if let Terminator::Bytes(terminator) = self.framer.terminator() {
            let terminator = terminator.clone();
            self.push(terminator);
        }
    }

    /// Queues a producer, asked for output when everything queued before it is sent.
    pub fn push_with_producer(&mut self, producer: impl Producer) {
        self.output.borrow_mut().push_producer(Box::new(producer));
    }

    /// Closes the channel (through `handle_close`) once everything queued so far is sent.
    /// Output pushed afterwards is never sent, as in asynchat.
    pub fn close_when_done(&mut self) {
        self.output.borrow_mut().close_when_done();
    }

    /// Drops the unparsed input, the collected record and all queued output (asynchat's
    /// `discard_buffers`).
    pub fn discard_buffers(&mut self) {
        self.framer.take_buffered();
        self.incoming = Incoming::Empty;
        self.output.borrow_mut().clear();
    }

    /// One send attempt now (asynchat's `initiate_send`); the reactor calls it after callbacks
    /// and on write events, so a handler rarely needs to.
    ///
    /// # Errors
    /// What [`Channel::send`] reports; a disconnect is not an error (`handle_close` follows).
    pub fn initiate_send(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.output.borrow_mut().initiate_send(channel).map(drop)
    }

    /// Lets `channel`'s [`close`](Channel::close) send what the socket takes of the queued
    /// output before the socket goes (done when the chat joins a map).
    pub(crate) fn attach(&self, channel: &mut Channel) {
        if channel.closing.has_before_close() {
            return;
        }
        let output: Weak<RefCell<Output>> = Rc::downgrade(&self.output);
        channel
            .closing
            .set_before_close(Some(Box::new(move |channel: &mut Channel| {
                if let Some(output) = output.upgrade() {
                    if let Ok(mut output) = output.try_borrow_mut() {
                        output.send_before_close(channel);
                    }
                }
            })));
    }

    /// Undoes [`attach`](Chat::attach): the connection leaves with its output (hand-over).
    pub(crate) fn detach(&self, channel: &mut Channel) {
        channel.closing.set_before_close(None);
    }

    /// asynchat's `writable()`: output is queued, or a connect is pending.
    pub fn writable(&self, channel: &Channel) -> bool {
        !self.output.borrow().is_empty() || channel.connecting()
    }

    /// How many bytes of output are queued (not counting what queued producers will make).
    pub fn queued_bytes(&self) -> usize {
        self.output.borrow().queued()
    }

    /// Whether queued output is above the high water mark (and has not yet fallen to the low
    /// one): a handler that produces output for a slow reader should stop reading, e.g. by
    /// returning `false` from [`readable`](crate::chat::ChatHandler::readable) while paused.
    /// [`SendBuffer`](crate::SendBuffer)'s rule; default marks 64 KiB and 16 KiB.
    pub fn is_paused(&self) -> bool {
        self.output.borrow().is_paused()
    }

    /// Sets the water marks of [`is_paused`](Chat::is_paused).
    ///
    /// # Errors
    /// `InvalidInput` if `low > high`.
    pub fn set_write_buffer_limits(&mut self, high: usize, low: usize) -> io::Result<()> {
        self.output.borrow_mut().set_limits(high, low)
    }

    /// The water marks, `(low, high)`.
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        self.output.borrow().limits()
    }

    pub(crate) fn output_mut(&mut self) -> std::cell::RefMut<'_, Output> {
        self.output.borrow_mut()
    }

    // ----- sizes -----

    /// The most one read takes (asynchat's `ac_in_buffer_size`, default 64 KiB).
    pub fn ac_in_buffer_size(&self) -> usize {
        self.in_buffer_size
    }

    /// Sets [`ac_in_buffer_size`](Chat::ac_in_buffer_size) (at least 1).
    pub fn set_ac_in_buffer_size(&mut self, size: usize) {
        self.in_buffer_size = size.max(1);
    }

    /// The largest piece `push` queues and one send takes (asynchat's `ac_out_buffer_size`,
    /// default 64 KiB).
    pub fn ac_out_buffer_size(&self) -> usize {
        self.output.borrow().chunk()
    }

    /// Sets [`ac_out_buffer_size`](Chat::ac_out_buffer_size) (at least 1).
    pub fn set_ac_out_buffer_size(&mut self, size: usize) {
        self.output.borrow_mut().set_chunk(size);
    }

    /// The longest record the default `collect_incoming_data` collects (default 64 KiB).
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Sets [`max_frame_len`](Chat::max_frame_len).
    pub fn set_max_frame_len(&mut self, len: usize) {
        self.max_frame_len = len;
    }
}

fn describe(terminator: &Terminator) -> String {
    match terminator {
        Terminator::Bytes(b) => format!("{:?}", b),
        Terminator::Count(n) => format!("{n} more bytes"),
        Terminator::None => "none".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_line_strips_one_carriage_return() {
        let mut chat = Chat::new(b"\n");
        chat.collect_incoming_data(Bytes::from_static(b"a\r"))
            .unwrap();
        assert_eq!(&chat.take_line()[..], b"a");
        chat.collect_incoming_data(Bytes::from_static(b"b\r\r"))
            .unwrap();
        assert_eq!(&chat.take_line()[..], b"b\r");
        assert!(chat.take_line().is_empty());
    }

    #[test]
    fn push_line_appends_the_terminator_only_for_delimiters() {
        let mut chat = Chat::new(b"\r\n");
        chat.push_line("x");
        assert_eq!(chat.queued_bytes(), 3);
        chat.set_terminator(5);
        chat.push_line("y");
        assert_eq!(chat.queued_bytes(), 4);
    }

    #[test]
    fn record_limit_is_inclusive_and_resets() {
        let mut chat = Chat::new(b"\n");
        chat.set_max_frame_len(4);
        chat.collect_incoming_data(Bytes::from_static(b"abcd"))
            .unwrap();
        let error = chat
            .collect_incoming_data(Bytes::from_static(b"e"))
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(chat.incoming_len(), 0, "the over-long record is dropped");
    }

    #[test]
    fn unparsed_is_the_record_then_the_buffered_input() {
        let mut chat = Chat::new(b"\r\n");
        chat.framer_mut().feed(Bytes::from_static(b"abc\r"));
        while let Some(crate::chat::FrameEvent::Data(d)) = chat.framer_mut().next_event() {
            chat.collect_incoming_data(d).unwrap();
        }
        assert_eq!(&chat.take_unparsed()[..], b"abc\r");
        assert_eq!(chat.buffered_input() + chat.incoming_len(), 0);
    }
}
