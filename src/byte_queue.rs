//! Bytes waiting to be sent on a stream, in order: the queue under [`SendBuffer`](crate::SendBuffer)
//! and asynchat's output, and the one place that turns it into `send`/`writev` calls.
//!
//! Pieces are kept as the [`Bytes`] they were pushed as (a `Bytes` from `recv` is queued
//! without a copy), except small ones: those are copied into one buffer at the end of the queue,
//! so that a callback that pushes a thousand short answers has them sent in one system call,
//! not in sixteen `writev`s of 64 pieces. A send takes at most a given number of bytes from the
//! front, as one `send` when the front piece covers it and as one `writev` otherwise.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use crate::channel::Channel;

/// Pushes this small or smaller are copied into the queue's last buffer.
const COALESCE: usize = 512;

/// How many queued pieces one send gathers at most (well under every system's `IOV_MAX`).
const MAX_SLICES: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct ByteQueue {
    pieces: VecDeque<Bytes>,
    /// Small pushes gathered after the last piece; part of the queue.
    tail: BytesMut,
    len: usize,
}

impl ByteQueue {
    /// Bytes queued and not yet sent.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `data` at the end. Empty data is ignored.
    pub(crate) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if data.len() <= COALESCE {
            self.tail.extend_from_slice(&data);
        } else {
            self.seal();
            self.pieces.push_back(data);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.pieces.clear();
        self.tail.clear();
        self.len = 0;
    }

    /// One send of at most `limit` bytes from the front; returns how many left the queue.
    ///
    /// # Errors
    /// What [`Channel::send`] and [`Channel::send_vectored`] report.
    pub(crate) fn send(&mut self, channel: &mut Channel, limit: usize) -> io::Result<usize> {
        self.seal();
        let sent = match self.pieces.front() {
            None => return Ok(0),
            Some(front) if front.len() >= limit || self.pieces.len() == 1 => {
                channel.send(&front[..front.len().min(limit)])?
            }
            Some(_) => {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                let mut room = limit;
                for piece in self.pieces.iter().take(MAX_SLICES) {
                    if room == 0 {
                        break;
                    }
                    let take = piece.len().min(room);
                    slices[count] = IoSlice::new(&piece[..take]);
                    count += 1;
                    room -= take;
                }
                channel.send_vectored(&slices[..count])?
            }
        };
        self.consume(sent);
        Ok(sent)
    }

    /// Everything queued, in order, leaving the queue empty.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Bytes> {
        self.seal();
        self.len = 0;
        std::mem::take(&mut self.pieces).into_iter()
    }

    /// Ends the tail: what was gathered becomes a piece of its own.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.pieces.push_back(self.tail.split().freeze());
        }
    }

    /// Drops the first `sent` bytes.
    pub(crate) fn consume(&mut self, mut sent: usize) {
        self.seal();
        self.len -= sent;
        while sent > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            if front.len() <= sent {
                sent -= front.len();
                self.pieces.pop_front();
            } else {
                front.advance(sent);
                sent = 0;
            }
        }
    }

    /// How many pieces the queue holds (a sealed tail counts as one).
    #[cfg(test)]
    pub(crate) fn pieces(&self) -> usize {
        self.pieces.len() + usize::from(!self.tail.is_empty())
    }
}
