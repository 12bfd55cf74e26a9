//! The output queue: asynchat's `producer_fifo`, with a byte count and water marks.
//!
//! Data that can be sent now sits in a [`ByteQueue`] (the same queue, and the same send, as a
//! [`SendBuffer`](crate::SendBuffer)'s). Whatever waits behind a producer or a
//! `close_when_done` marker stays in `later`, in order, until the send reaches it.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;

use crate::byte_queue::ByteQueue;
use crate::channel::Channel;
use crate::chat::producer::Producer;
use crate::water_marks::WaterMarks;

enum Queued {
    Data(Bytes),
    Producer(Box<dyn Producer>),
    /// `close_when_done`'s marker (asynchat's `None` in the fifo).
    Close,
}

/// Queued output in order: buffers, producers and the close marker.
pub(crate) struct Output {
    /// Data ahead of the first producer or marker: sendable now.
    ready: ByteQueue,
    /// From the first producer or marker on.
    later: VecDeque<Queued>,
    /// Bytes in `later`'s `Data` entries (what producers will still make is unknown).
    later_len: usize,
    marks: WaterMarks,
    /// The most one send takes (asynchat's `ac_out_buffer_size`).
    chunk: usize,
}

/// The most sends a closing chat makes ([`Output::send_before_close`]): with the default
/// `ac_out_buffer_size`, 4 MiB, a bound on the time `close` can take when a reader keeps up.
const CLOSE_SENDS: usize = 64;

impl Output {
    pub(crate) fn new(high: usize, chunk: usize) -> Output {
        Output {
            ready: ByteQueue::default(),
            later: VecDeque::new(),
            later_len: 0,
            marks: WaterMarks::new(high),
            chunk,
        }
    }

    pub(crate) fn chunk(&self) -> usize {
        self.chunk
    }

    pub(crate) fn set_chunk(&mut self, chunk: usize) {
        self.chunk = chunk.max(1);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.later.is_empty()
    }

    /// Bytes queued (not counting what queued producers will make).
    pub(crate) fn queued(&self) -> usize {
        self.ready.len() + self.later_len
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.marks.is_paused()
    }

    pub(crate) fn limits(&self) -> (usize, usize) {
        self.marks.limits()
    }

    pub(crate) fn set_limits(&mut self, high: usize, low: usize) -> io::Result<()> {
        self.marks.set(high, low, self.queued())
    }

    /// Queues `data` (no copy, unless it is small enough to be gathered with its neighbours).
    pub(crate) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if self.later.is_empty() {
            self.ready.push(data);
        } else {
            self.later_len += data.len();
            self.later.push_back(Queued::Data(data));
        }
        self.update();
    }

    pub(crate) fn push_producer(&mut self, producer: Box<dyn Producer>) {
        self.later.push_back(Queued::Producer(producer));
    }

    pub(crate) fn close_when_done(&mut self) {
        self.later.push_back(Queued::Close);
    }

    pub(crate) fn clear(&mut self) {
        self.ready.clear();
        self.later.clear();
        self.later_len = 0;
        self.update();
    }

    /// One send attempt of at most `chunk` bytes, asynchat's `initiate_send`: producers at the
    /// head are asked for more first, and when the close marker reaches the head the channel
    /// is asked to close (`handle_close` runs after the current callback). Returns how many
    /// bytes were sent.
    pub(crate) fn initiate_send(&mut self, channel: &mut Channel) -> io::Result<usize> {
        if !channel.connected() || channel.is_closed() {
            return Ok(0);
        }
        if !self.fill(channel) {
            return Ok(0);
        }
        let sent = self.ready.send(channel, self.chunk)?;
        self.update();
        // Everything before the marker is sent: close now rather than on the next write event.
        if self.ready.is_empty() && matches!(self.later.front(), Some(Queued::Close)) {
            self.fill(channel);
        }
        Ok(sent)
    }

    /// The channel is closing: sends what the socket takes now, without waiting (at most
    /// [`CLOSE_SENDS`] sends); the rest is dropped with the socket. asynchat's `push` sends at
    /// once, so a reply pushed right before `close()` reaches the peer there; this is what
    /// makes it reach the peer here, where `push` only queues.
    pub(crate) fn send_before_close(&mut self, channel: &mut Channel) {
        for _ in 0..CLOSE_SENDS {
            match self.initiate_send(channel) {
                Ok(sent) if sent > 0 && !self.is_empty() => {}
                _ => break,
            }
        }
    }

    /// Moves what `later` holds at its head into `ready` until there is data to send, running
    /// producers and the close marker on the way; whether there is data.
    fn fill(&mut self, channel: &mut Channel) -> bool {
        while self.ready.is_empty() {
            match self.later.pop_front() {
                None => return false,
                Some(Queued::Data(data)) => {
                    self.later_len -= data.len();
                    self.ready.push(data);
                }
                Some(Queued::Producer(mut producer)) => {
                    let data = producer.more();
                    if !data.is_empty() {
                        self.ready.push(data);
                        self.later.push_front(Queued::Producer(producer));
                        self.update();
                    }
                }
                Some(Queued::Close) => {
                    // Anything pushed after close_when_done is never sent (as in asynchat).
                    self.clear();
                    channel.request_close();
                    return false;
                }
            }
        }
        // Data that followed the head and waits behind nothing now is sendable too.
        while let Some(Queued::Data(_)) = self.later.front() {
            let Some(Queued::Data(data)) = self.later.pop_front() else {
                unreachable!("matched above")
            };
            self.later_len -= data.len();
            self.ready.push(data);
        }
        true
    }

    /// Whether a `close_when_done` marker is queued.
    pub(crate) fn closes(&self) -> bool {
        self.later
            .iter()
            .any(|entry| matches!(entry, Queued::Close))
    }

    /// All unsent output in order up to a close marker, producers run to exhaustion.
    pub(crate) fn drain(&mut self) -> Vec<Bytes> {
        let mut out: Vec<Bytes> = self.ready.take_all().collect();
        while let Some(entry) = self.later.pop_front() {
            match entry {
                Queued::Data(data) => out.push(data),
                Queued::Producer(mut producer) => loop {
                    let data = producer.more();
                    if data.is_empty() {
                        break;
                    }
                    out.push(data);
                },
                Queued::Close => break,
            }
        }
        self.clear();
        out
    }

    fn update(&mut self) {
        self.marks.update(self.queued());
    }
}
