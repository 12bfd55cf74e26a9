//! The output queue: asynchat's `producer_fifo`, with a byte count and water marks.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use crate::channel::Channel;
use crate::chat::producer::Producer;
use crate::water_marks::WaterMarks;

/// How many queued pieces one `writev` gathers at most.
const MAX_SLICES: usize = 64;

/// Pushes this small or smaller are copied into one buffer rather than queued one by one, so
/// that a read that produces a thousand short answers sends them in one system call, not in
/// sixteen `writev`s of 64 pieces.
const COALESCE: usize = 512;

enum Entry {
    Data(Bytes),
    Producer(Box<dyn Producer>),
    /// `close_when_done`'s marker (asynchat's `None` in the fifo).
    Close,
}

/// Queued output in order: buffers, producers and the close marker.
pub(crate) struct Output {
    fifo: VecDeque<Entry>,
    /// Small pushes gathered after the last entry (see COALESCE); part of the queue.
    tail: BytesMut,
    /// Bytes in `Data` entries and the tail (what producers will still make is unknown).
    queued: usize,
    marks: WaterMarks,
}

impl Output {
    pub(crate) fn new(high: usize) -> Output {
        Output {
            fifo: VecDeque::new(),
            tail: BytesMut::new(),
            queued: 0,
            marks: WaterMarks::new(high),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.tail.is_empty()
    }

    /// Ends the tail: what was gathered becomes an entry of the queue.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.fifo.push_back(Entry::Data(self.tail.split().freeze()));
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.marks.is_paused()
    }

    pub(crate) fn limits(&self) -> (usize, usize) {
        self.marks.limits()
    }

    pub(crate) fn set_limits(&mut self, high: usize, low: usize) -> io::Result<()> {
        self.marks.set(high, low, self.queued)
    }

    /// Queues `data` in pieces of at most `chunk` bytes (slices of `data`, no copies).
    pub(crate) fn push(&mut self, mut data: Bytes, chunk: usize) {
        self.queued += data.len();
        if data.len() <= COALESCE.min(chunk) {
            self.tail.extend_from_slice(&data);
            self.update();
            return;
        }
        self.seal();
        while data.len() > chunk {
            self.fifo.push_back(Entry::Data(data.split_to(chunk)));
        }
        if !data.is_empty() {
            self.fifo.push_back(Entry::Data(data));
        }
        self.update();
    }

    pub(crate) fn push_producer(&mut self, producer: Box<dyn Producer>) {
        self.seal();
        self.fifo.push_back(Entry::Producer(producer));
    }

    pub(crate) fn close_when_done(&mut self) {
        self.seal();
        self.fifo.push_back(Entry::Close);
    }

    pub(crate) fn clear(&mut self) {
        self.fifo.clear();
        self.tail.clear();
        self.queued = 0;
        self.update();
    }

    /// One send attempt of at most `limit` bytes, asynchat's `initiate_send`: producers at the
    /// head are asked for more first, and when the close marker reaches the head the channel
    /// is asked to close (`handle_close` runs after the current callback).
    pub(crate) fn initiate_send(&mut self, channel: &mut Channel, limit: usize) -> io::Result<()> {
        if !channel.connected() || channel.is_closed() {
            return Ok(());
        }
        self.seal();
        if !self.head_is_data(channel) {
            return Ok(());
        }
        let sent = match self.fifo.front() {
            Some(Entry::Data(front))
                if front.len() >= limit || !matches!(self.fifo.get(1), Some(Entry::Data(_))) =>
            {
                channel.send(&front[..front.len().min(limit)])?
            }
            _ => {
                let mut slices = Vec::with_capacity(self.fifo.len().min(MAX_SLICES));
                let mut room = limit;
                for entry in self.fifo.iter().take(MAX_SLICES) {
                    let Entry::Data(piece) = entry else { break };
                    if room == 0 {
                        break;
                    }
                    let take = piece.len().min(room);
                    slices.push(IoSlice::new(&piece[..take]));
                    room -= take;
                }
                channel.send_vectored(&slices)?
            }
        };
        self.consume(sent);
        // Everything before the marker is sent: close now rather than on the next write event.
        if matches!(self.fifo.front(), Some(Entry::Close)) {
            self.head_is_data(channel);
        }
        Ok(())
    }

    /// Runs producers and the close marker at the head until a buffer is there to send.
    fn head_is_data(&mut self, channel: &mut Channel) -> bool {
        loop {
            match self.fifo.front_mut() {
                None => return false,
                Some(Entry::Data(_)) => return true,
                Some(Entry::Close) => {
                    // Anything pushed after close_when_done is never sent (as in asynchat).
                    self.clear();
                    channel.request_close();
                    return false;
                }
                Some(Entry::Producer(producer)) => {
                    let data = producer.more();
                    if data.is_empty() {
                        self.fifo.pop_front();
                    } else {
                        self.queued += data.len();
                        self.fifo.push_front(Entry::Data(data));
                        self.update();
                    }
                }
            }
        }
    }

    /// All unsent output in order, producers run to exhaustion; whether a close was queued.
    pub(crate) fn drain(&mut self) -> (Vec<Bytes>, bool) {
        self.seal();
        let mut out = Vec::new();
        let mut close = false;
        while let Some(entry) = self.fifo.pop_front() {
            match entry {
                Entry::Data(data) => out.push(data),
                Entry::Producer(mut producer) => loop {
                    let data = producer.more();
                    if data.is_empty() {
                        break;
                    }
                    out.push(data);
                },
                Entry::Close => {
                    close = true;
                    break;
                }
            }
        }
        self.clear();
        (out, close)
    }

    fn consume(&mut self, mut sent: usize) {
        self.queued -= sent;
        while sent > 0 {
            let Some(Entry::Data(front)) = self.fifo.front_mut() else {
                break;
            };
            if front.len() <= sent {
                sent -= front.len();
                self.fifo.pop_front();
            } else {
                front.advance(sent);
                sent = 0;
            }
        }
        self.update();
    }

    fn update(&mut self) {
        self.marks.update(self.queued);
    }
}
