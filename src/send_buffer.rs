//! [`SendBuffer`]: asyncore's `dispatcher_with_send` as a part any dispatcher can own, with
//! asyncio's high and low water marks.
//!
//! # The model
//!
//! `dispatcher_with_send` keeps an output buffer: `send(data)` appends to it and makes one send
//! attempt at once; `writable()` is true while the buffer holds data (or a connect is
//! pending); each write event sends one chunk of at most 64 KiB. A `SendBuffer` is that buffer.
//! Put one in your dispatcher and route three calls to it:
//!
//! | asyncore (`dispatcher_with_send`) | here |
//! |---|---|
//! | `self.send(data)` | `self.out.send(channel, data)?` |
//! | `writable()` | `self.out.writable(channel)` |
//! | `handle_write()` (`initiate_send`) | `self.out.handle_write(channel)` |
//! | `out_buffer` | [`len`](SendBuffer::len), [`is_empty`](SendBuffer::is_empty) |
//!
//! Data is queued as [`Bytes`]: pushing the `Bytes` a `recv` returned copies nothing (pieces
//! of 512 bytes or less are gathered into one buffer instead, so that many short pushes go out
//! in one system call), and a write event sends up to 64 KiB gathered from the queue in one
//! `writev`.
//!
//! # Water marks
//!
//! asyncore's buffer grows without bound: a peer that reads slower than the dispatcher
//! produces makes the process grow until it dies. A `SendBuffer` has asyncio's two marks
//! (`set_write_buffer_limits`, default high 64 KiB, low 16 KiB) and a state,
//! [`is_paused`](SendBuffer::is_paused), that turns true when the queued bytes exceed the high
//! mark and false again only once they have drained to the low mark or below: asyncio's
//! `pause_writing()`/`resume_writing()`, as a state rather than callbacks, because asyncore's
//! reactor already asks `readable()`/`writable()` before every wait. Respecting it is the
//! producer's job, in those predicates:
//!
//! - a producer stops producing while paused: `writable()` is
//!   `out.writable(ch) || (!out.is_paused() && more_to_produce)`, and `handle_write` flushes,
//!   then pushes only while `!out.is_paused()`; the buffer then never holds more than the high
//!   mark plus one push;
//! - a relay (an echo, a proxy) stops reading while paused: `readable()` is
//!   `!out.is_paused()`, and the kernel's flow control pushes back on whoever sends to it.
//!
//! Nothing is refused: [`push`](SendBuffer::push) past the high mark still queues (as asyncio's
//! `write` does), so a producer that ignores the state grows the buffer as asyncore would.

use std::io;

use bytes::Bytes;

use crate::byte_queue::ByteQueue;
use crate::channel::Channel;
use crate::snapshot::Buffered;
use crate::water_marks::WaterMarks;

/// The most one write event sends, as asyncore's `initiate_send` (`out_buffer[:65536]`).
pub const SEND_CHUNK: usize = 64 * 1024;

/// asyncio's default high water mark; the low mark defaults to a quarter of the high one.
const DEFAULT_HIGH: usize = 64 * 1024;

/// An output queue for a stream channel with high and low water marks: asyncore's
/// `dispatcher_with_send` `out_buffer`, bounded the way asyncio's transports are.
///
/// The echo handler of asyncore's documentation (`class EchoHandler(dispatcher_with_send)`):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::io;
/// use asyncore::{Channel, Dispatcher, SendBuffer};
///
/// #[derive(Default)]
/// struct EchoHandler {
///     out: SendBuffer,
/// }
///
/// impl Dispatcher for EchoHandler {
///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
///         let data = channel.recv(8192)?;
///         self.out.send(channel, data)
///     }
///     fn readable(&self, _: &Channel) -> bool {
///         !self.out.is_paused() // stop reading while the peer is not reading
///     }
///     fn writable(&self, channel: &Channel) -> bool {
///         self.out.writable(channel)
///     }
///     fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
///         self.out.handle_write(channel)
///     }
/// }
///
/// let (ours, mut theirs) = tokio::net::UnixStream::pair()?;
/// let map = asyncore::Map::new();
/// map.add(Channel::from_unix(ours), EchoHandler::default())?;
/// let peer = async move {
///     use tokio::io::{AsyncReadExt, AsyncWriteExt};
///     let data = vec![7u8; 300_000];
///     let (mut reader, mut writer) = theirs.split();
///     let mut echo = vec![0; data.len()];
///     let (wrote, read) = tokio::join!(writer.write_all(&data), reader.read_exact(&mut echo));
///     wrote?;
///     read?;
///     assert!(echo == data);
///     io::Result::Ok(())
/// };
/// tokio::select! {
///     served = map.run() => served?,
///     checked = peer => checked?,
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SendBuffer {
    queue: ByteQueue,
    marks: WaterMarks,
}

impl Default for SendBuffer {
    fn default() -> Self {
        SendBuffer::new()
    }
}

impl SendBuffer {
    /// An empty buffer with asyncio's default marks: high 64 KiB, low 16 KiB.
    pub fn new() -> SendBuffer {
        SendBuffer {
            queue: ByteQueue::default(),
            marks: WaterMarks::new(DEFAULT_HIGH),
        }
    }

    /// An empty buffer with the given marks (see
    /// [`set_write_buffer_limits`](SendBuffer::set_write_buffer_limits)).
    ///
    /// # Errors
    /// `InvalidInput` when `low > high`.
    pub fn with_limits(high: usize, low: usize) -> io::Result<SendBuffer> {
        let mut buffer = SendBuffer::new();
        buffer.set_write_buffer_limits(high, low)?;
        Ok(buffer)
    }

    /// Sets the marks, asyncio's `set_write_buffer_limits(high, low)`: the buffer is paused
    /// once it holds more than `high` bytes, and resumes once it holds `low` or fewer. `high`
    /// 0 pauses at any queued byte; `low == high` gives no hysteresis. The state is updated
    /// at once.
    ///
    /// # Errors
    /// `InvalidInput` when `low > high`; the marks are then unchanged.
    pub fn set_write_buffer_limits(&mut self, high: usize, low: usize) -> io::Result<()> {
        self.marks.set(high, low, self.queue.len())
    }

    /// The marks as `(low, high)`, asyncio's `get_write_buffer_limits()`.
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        self.marks.limits()
    }

    /// Bytes queued and not yet sent: asyncio's `get_write_buffer_size()`, asyncore's
    /// `len(out_buffer)`.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the producer should stop: true from the moment more than the high mark is
    /// queued until the queue has drained to the low mark (asyncio's `pause_writing()` …
    /// `resume_writing()`).
    pub fn is_paused(&self) -> bool {
        self.marks.is_paused()
    }

    /// Queues `data` without sending anything. Empty data is ignored. Never refuses: past the
    /// high mark the buffer is paused, and it is up to the producer to respect that.
    pub fn push(&mut self, data: impl Into<Bytes>) {
        self.queue.push(data.into());
        self.update();
    }

    /// Queues `data` and makes one send attempt at once: asyncore's
    /// `dispatcher_with_send.send`. Nothing is sent before the channel is connected (asyncore
    /// tries, and may fail or not depending on the kernel); the queue is flushed by write
    /// events once it is.
    ///
    /// # Errors
    /// As [`initiate_send`](SendBuffer::initiate_send). The data is queued whatever happens.
    pub fn send(&mut self, channel: &mut Channel, data: impl Into<Bytes>) -> io::Result<()> {
        self.push(data);
        self.initiate_send(channel).map(drop)
    }

    /// asyncore's `dispatcher_with_send.writable()`: a connect is pending or data is queued.
    pub fn writable(&self, channel: &Channel) -> bool {
        channel.connecting() || !self.is_empty()
    }

    /// asyncore's `dispatcher_with_send.handle_write()`: one send attempt
    /// ([`initiate_send`](SendBuffer::initiate_send)).
    pub fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.initiate_send(channel).map(drop)
    }

    /// Makes one send attempt of at most [`SEND_CHUNK`] bytes from the front of the queue, if
    /// the channel is connected; returns how many bytes left the queue.
    ///
    /// A full socket buffer sends nothing (`Ok(0)`); so does a disconnect, after which the
    /// channel's `handle_close` runs ([`Channel::send`]).
    ///
    /// # Errors
    /// `InvalidInput` on a datagram channel (a byte queue has no datagram boundaries); send
    /// errors as [`Channel::send_vectored`] reports them.
    pub fn initiate_send(&mut self, channel: &mut Channel) -> io::Result<usize> {
        if channel.is_datagram() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "send buffer: channel {} is a datagram channel; queue datagrams, not bytes",
                    channel.id()
                ),
            ));
        }
        if self.is_empty() || !channel.connected() {
            return Ok(0);
        }
        let sent = self.queue.send(channel, SEND_CHUNK)?;
        self.update();
        Ok(sent)
    }

    /// What the buffer holds, for [`Dispatcher::buffered`](crate::Dispatcher::buffered):
    /// the queued bytes, the water marks and whether it is paused.
    pub fn buffered(&self) -> Buffered {
        let (low, high) = self.write_buffer_limits();
        Buffered::default()
            .output(self.len())
            .water_marks(low, high, self.is_paused())
    }

    /// Drops everything queued (asynchat's `discard_buffers` for output); resumes.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.update();
    }

    fn update(&mut self) {
        self.marks.update(self.queue.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_pause_above_high_and_resume_at_low() {
        let mut buffer = SendBuffer::with_limits(10, 4).unwrap();
        buffer.push(vec![0; 10]);
        assert!(!buffer.is_paused(), "exactly the high mark is not above it");
        buffer.push(vec![0; 1]);
        assert!(buffer.is_paused());
        buffer.queue.consume(6);
        buffer.update();
        assert!(buffer.is_paused(), "5 bytes is still above the low mark");
        buffer.queue.consume(1);
        buffer.update();
        assert!(!buffer.is_paused());
        assert_eq!(buffer.len(), 4);
    }

    #[test]
    fn consume_splits_pieces_in_order() {
        let mut buffer = SendBuffer::new();
        buffer.push(&b"abc"[..]);
        buffer.push(&b""[..]);
        buffer.push(&b"defg"[..]);
        buffer.queue.consume(4);
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.queue.pieces(), 1);
        let rest: Vec<u8> = buffer.queue.take_all().flat_map(|b| b.to_vec()).collect();
        assert_eq!(rest, b"efg");
    }

    #[test]
    fn limits_are_checked_and_apply_at_once() {
        let error = SendBuffer::with_limits(4, 5).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("low mark (5)"), "{error}");
        let mut buffer = SendBuffer::new();
        assert_eq!(buffer.write_buffer_limits(), (16 * 1024, 64 * 1024));
        buffer.push(vec![0; 100]);
        buffer.set_write_buffer_limits(50, 10).unwrap();
        assert!(buffer.is_paused());
        buffer.clear();
        assert!(!buffer.is_paused() && buffer.is_empty());
    }
}
