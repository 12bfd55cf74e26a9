//! asynchat on this crate: a connection that frames its input into records and queues its
//! output, Python's `async_chat`.
//!
//! # The model
//!
//! You write a [`ChatHandler`]: at least `found_terminator`. You wrap it in an [`AsyncChat`],
//! which is the channel's [`Dispatcher`](crate::Dispatcher), and add that to a map. Then, on
//! the map's thread, for each read event:
//!
//! 1. `AsyncChat` reads up to [`Chat::ac_in_buffer_size`] bytes (asynchat's `handle_read`) and
//!    feeds them to the connection's [`Framer`];
//! 2. the framer splits the input at the terminator ([`Terminator`]: a delimiter of any
//!    length, a byte count, or none): the bytes of a record go to `collect_incoming_data`
//!    (by default appended to the chat's record, at most [`Chat::max_frame_len`] bytes), the
//!    end of a record calls `found_terminator`, which takes the record
//!    ([`Chat::take_data`]) and may [`push`](Chat::push) an answer or change the terminator,
//!    which then applies to the rest of the input already read;
//! 3. when the input is used up, what the hooks pushed is sent at once, in one system call
//!    (`writev`) of at most [`Chat::ac_out_buffer_size`] bytes; what the socket does not take
//!    waits for write events, which the chat asks for exactly while output is queued (or a
//!    connect is pending).
//!
//! [`Chat::close_when_done`] closes the connection after everything queued before it is
//! sent; [`Producer`]s make output on demand. Native code reaches a connection with
//! [`Map::with`](crate::Map::with) or a [`ChannelHandle`](crate::ChannelHandle) to push to it,
//! and can take it over with [`Chat::take_stream`] without losing a byte.
//!
//! # A line server
//!
//! ```no_run
//! use std::io;
//! use asyncore::chat::{AsyncChat, Chat, ChatHandler};
//! use asyncore::Channel;
//!
//! /// Answers each line with it in upper case.
//! struct Shout;
//!
//! impl ChatHandler for Shout {
//!     fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
//!         let line = chat.take_line();
//!         chat.push_line(line.to_ascii_uppercase());
//!         Ok(())
//!     }
//! }
//!
//! # fn serve(map: &asyncore::Map, connection: Channel) -> io::Result<()> {
//! map.add(connection, AsyncChat::new(Shout, b"\n"))?;
//! # Ok(()) }
//! # let _ = serve;
//! ```
//!
//! # Differences from asynchat
//!
//! - The terminator is given to [`AsyncChat::new`]; asynchat has none and fails on the first
//!   read. Terminators are bytes, a count or none; asynchat's unvalidated `str` terminators and
//!   `use_encoding` do not exist.
//! - The default `collect_incoming_data` collects (asynchat raises `NotImplementedError`), and
//!   bounds the record by [`Chat::max_frame_len`]: a longer record is an `InvalidData` error
//!   that reaches `handle_error` (by default: logged, channel closed). asynchat grows without
//!   bound.
//! - [`Chat::push`] queues; the send happens when the hook returns (asynchat sends one chunk
//!   inside `push`). Output pushed by several records of one read goes out in one `writev`.
//!   A reply pushed right before [`Channel::close`](crate::Channel::close) still reaches the
//!   peer: closing a chat's channel first sends what the socket takes of its output (at least
//!   what asynchat's `push` would have sent; see [`Chat::push`]).
//! - End of file from the peer runs `handle_read_eof`, whose default is
//!   [`Chat::close_when_done`]: answers already pushed are still sent (asynchat closes at once).
//! - Producers are a trait, not "anything that raises `TypeError` when sliced".
//! - Queued output is counted ([`Chat::queued_bytes`]) with water marks
//!   ([`Chat::is_paused`]), so a handler can stop reading from a peer that does not read.

mod adapter;
mod output;
mod producer;
mod state;
mod stream;
mod terminator;
mod tls;

pub use adapter::{AsyncChat, ChatHandler};
pub use producer::{Producer, SimpleProducer};
pub use state::{Chat, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_FRAME_LEN};
pub use stream::ChatStream;
pub use terminator::{find_prefix_at_end, FrameEvent, Framer, Terminator};
