//! A channel's TLS session: rustls's connection, and its records moved over the channel's
//! stream.
//!
//! The session sits beside the stream (the channel's `tls` field), never in place of it: the
//! socket keeps its Tokio readiness and its rules for clearing it ([`do_io`](super::do_io)
//! runs every read and write of a record). What changes is what the dispatcher is told:
//!
//! - **Records to flush** (handshake messages, encrypted output the socket did not take, the
//!   plaintext owed before the first record) make the channel wait for the socket's write
//!   readiness whatever `writable()` says, and are written when it comes, without a callback.
//!   The dispatcher hears of write readiness only once nothing is left to flush: `send` then
//!   has room.
//! - **Records to read** are read while the handshake wants them, whatever `readable()` says,
//!   and afterwards only while the dispatcher wants to read and no decrypted byte waits: a
//!   dispatcher that stops reading stops the peer (rustls holds at most one record).
//! - **Decrypted bytes**, and the end of the stream, are input the channel holds: the channel
//!   is readable while they wait, though its socket may have nothing more to say
//!   ([`has_input`](Tls::has_input)).
//! - **Events** for the dispatcher: the handshake completed (`handle_tls_ready`), or the
//!   session failed while no callback was running (`handle_error`).

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};

use super::Stream;
use crate::error::would_block;
use crate::event::{Interest, Ready};
use crate::tls::{closed_during_handshake, failure, truncated};

/// How many rounds of flushing and reading one poll makes before it lets other tasks run.
const POLL_ROUNDS: usize = 8;

/// How many reads of records one call makes at most (each up to rustls's buffer).
const READS: usize = 16;

/// What a flush or a read of records did.
#[derive(Default, Clone, Copy)]
pub(crate) struct Step {
    /// Bytes moved.
    pub(crate) moved: bool,
    /// The socket was found drained (or full): its readiness is cleared, and a poll must ask
    /// for it again to be woken when it comes back.
    pub(crate) blocked: bool,
}

impl Step {
    fn blocked(mut self) -> Step {
        self.blocked = true;
        self
    }
}

/// What the session owes the dispatcher.
pub(crate) enum TlsEvent {
    /// The handshake completed: `handle_tls_ready`.
    Ready,
    /// The session failed outside a callback: `handle_error` (or `handle_close` for a
    /// disconnect).
    Error(io::Error),
}

pub(crate) struct Tls {
    pub(crate) conn: rustls::Connection,
    /// Plaintext owed before the first record (the reply to a STARTTLS command).
    pub(crate) prelude: Bytes,
    /// The server's name, for a client's messages.
    pub(crate) peer: Option<String>,
    /// Decrypted bytes waiting in `conn`.
    plaintext: usize,
    /// The peer's `close_notify` arrived.
    peer_closed: bool,
    /// The socket reported end of file.
    socket_eof: bool,
    /// `recv` reported the end of the stream (end of file, or the truncation).
    end_reported: bool,
    /// The handshake completed.
    handshaken: bool,
    /// `handle_tls_ready` is owed.
    owes_ready: bool,
    /// An error found outside a callback, owed to the dispatcher.
    owed_error: Option<io::Error>,
    /// The session failed: what every later operation reports.
    failed: Option<(io::ErrorKind, String)>,
    /// `close_notify` is queued: nothing more may be sent.
    pub(crate) closed_write: bool,
    /// Shut the socket's write side once every record is flushed (half-close).
    shutdown_after_flush: bool,
}

impl Tls {
    pub(crate) fn new(conn: rustls::Connection, prelude: Bytes, peer: Option<String>) -> Tls {
        Tls {
            conn,
            prelude,
            peer,
            plaintext: 0,
            peer_closed: false,
            socket_eof: false,
            end_reported: false,
            handshaken: false,
            owes_ready: false,
            owed_error: None,
            failed: None,
            closed_write: false,
            shutdown_after_flush: false,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        !self.handshaken
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Input the channel holds for the dispatcher: decrypted bytes, or the end of the stream
    /// not yet reported.
    #[inline]
    pub(crate) fn has_input(&self) -> bool {
        self.handshaken
            && self.failed.is_none()
            && (self.plaintext > 0 || (!self.end_reported && (self.peer_closed || self.socket_eof)))
    }

    /// Whether an event waits for the dispatcher.
    #[inline]
    pub(crate) fn has_event(&self) -> bool {
        self.owes_ready || self.owed_error.is_some()
    }

    /// What is ready without the socket: [`Ready::TLS`] for an event, [`Ready::READ`] for
    /// input (when `read` is wanted).
    #[inline]
    pub(crate) fn ready_now(&self, read: bool) -> Ready {
        let mut ready = Ready::NONE;
        if self.has_event() {
            ready = ready | Ready::TLS;
        }
        if read && self.has_input() {
            ready = ready | Ready::READ;
        }
        ready
    }

    pub(crate) fn take_event(&mut self) -> Option<TlsEvent> {
        if std::mem::take(&mut self.owes_ready) {
            return Some(TlsEvent::Ready);
        }
        self.owed_error.take().map(TlsEvent::Error)
    }

    /// Records (or owed plaintext) wait to be written.
    #[inline]
    pub(crate) fn wants_flush(&self) -> bool {
        !self.prelude.is_empty() || self.conn.wants_write() || self.shutdown_after_flush
    }

    /// The error of a failed session, for an operation after the failure.
    fn failure_again(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|(kind, message)| {
            io::Error::new(*kind, format!("the TLS session failed earlier: {message}"))
        })
    }

    /// The session failed: later operations say so, and the dispatcher is owed the error if
    /// `owed` (found outside its callbacks).
    fn fail(&mut self, error: io::Error, owed: bool) -> Option<io::Error> {
        if self.failed.is_none() {
            self.failed = Some((error.kind(), error.to_string()));
        }
        if owed {
            self.owed_error.get_or_insert(error);
            None
        } else {
            Some(error)
        }
    }

    /// Makes the reactor's poll of a TLS channel: flushes what waits, reads the records the
    /// handshake or the dispatcher wants, and reports what the dispatcher is to hear: `TLS`
    /// for an event, `READ` for input when `want` reads, `WRITE` when `want` writes, the
    /// handshake is done and nothing is left to flush. `Pending` leaves the task registered
    /// with the socket for what the session waits for.
    pub(crate) fn poll(
        &mut self,
        stream: &Stream,
        cx: &mut Context<'_>,
        want: Interest,
    ) -> Poll<Ready> {
        for _ in 0..POLL_ROUNDS {
            if self.failed.is_some() {
                // Nothing more moves over a failed session; its error is reported once.
                return if self.has_event() {
                    Poll::Ready(Ready::TLS)
                } else {
                    Poll::Pending
                };
            }
            // Whether to look again: something moved, or an operation found the socket drained
            // or full, which cleared its readiness without registering the task for the next
            // (a second readiness poll does).
            let mut again = false;
            if self.wants_flush() && stream.poll_ready(cx, Interest::WRITE).is_write() {
                match self.flush(stream) {
                    Ok(step) => again |= step.moved || step.blocked,
                    Err(e) => {
                        self.fail(e, true);
                        continue;
                    }
                }
            }
            if self.wants_records(want) && stream.poll_ready(cx, Interest::READ).is_read() {
                match self.read_records(stream) {
                    Ok(step) => again |= step.moved || step.blocked,
                    Err(e) => {
                        self.fail(e, true);
                        continue;
                    }
                }
            }
            let mut ready = self.ready_now(want.is_read());
            if want.is_write()
                && self.handshaken
                && !self.closed_write
                && !self.wants_flush()
                && stream.poll_ready(cx, Interest::WRITE).is_write()
            {
                ready = ready | Ready::WRITE;
            }
            if !ready.is_empty() {
                return Poll::Ready(ready);
            }
            if !again {
                return Poll::Pending;
            }
        }
        // Still moving records: let the rest of the thread run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Whether to read records now: while the handshake wants them, or while the dispatcher
    /// wants input and none waits.
    fn wants_records(&self, want: Interest) -> bool {
        if self.socket_eof || self.peer_closed || self.plaintext > 0 || !self.conn.wants_read() {
            return false;
        }
        !self.handshaken || want.is_read()
    }

    /// Writes the owed plaintext, then records, until the socket is full or nothing is left.
    /// `WouldBlock` is not an error: the step says the socket was found full.
    pub(crate) fn flush(&mut self, stream: &Stream) -> io::Result<Step> {
        let mut step = Step::default();
        while !self.prelude.is_empty() {
            match stream.try_write(&self.prelude) {
                Ok(n) => {
                    self.prelude.advance(n);
                    step.moved = true;
                }
                Err(e) if would_block(&e) => return Ok(step.blocked()),
                Err(e) => return Err(e),
            }
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SocketIo(stream)) {
                Ok(0) => break,
                Ok(_) => step.moved = true,
                Err(e) if would_block(&e) => return Ok(step.blocked()),
                Err(e) => return Err(e),
            }
        }
        if self.shutdown_after_flush && !self.conn.wants_write() {
            self.shutdown_after_flush = false;
            stream.shutdown_write()?;
        }
        Ok(step)
    }

    /// Reads and processes records until input waits for the dispatcher, the socket is
    /// drained, or the stream ended; answers the handshake on the way.
    fn read_records(&mut self, stream: &Stream) -> io::Result<Step> {
        let mut step = Step::default();
        for _ in 0..READS {
            if self.socket_eof || self.peer_closed || self.plaintext > 0 || !self.conn.wants_read()
            {
                break;
            }
            match self.conn.read_tls(&mut SocketIo(stream)) {
                Ok(0) => self.socket_eof = true,
                Ok(_) => {}
                Err(e) if would_block(&e) => return Ok(step.blocked()),
                Err(e) => return Err(e),
            }
            step.moved = true;
            self.process(stream)?;
            if self.socket_eof && !self.handshaken {
                return Err(closed_during_handshake(self.peer.as_deref()));
            }
            if self.conn.wants_write() {
                self.flush(stream)?;
            }
        }
        Ok(step)
    }

    /// Processes the records read; notes a completed handshake. A rustls error sends its
    /// alert (if the socket takes it) and becomes an `InvalidData` error that says what failed.
    fn process(&mut self, stream: &Stream) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.plaintext = state.plaintext_bytes_to_read();
                self.peer_closed = state.peer_has_closed();
                if !self.handshaken && !self.conn.is_handshaking() {
                    self.handshaken = true;
                    self.owes_ready = true;
                }
                Ok(())
            }
            Err(e) => {
                let during_handshake = !self.handshaken;
                let _ = self.flush(stream); // the alert, if the socket takes it
                Err(failure(e, during_handshake, self.peer.as_deref()))
            }
        }
    }

    /// `recv` on a TLS channel: decrypted bytes into `buf`, reading records as needed and as
    /// the socket has them. `Ok(0)` is the peer's `close_notify`; a truncated stream is an
    /// `UnexpectedEof` error ([`is_truncation`](crate::tls::is_truncation)); `WouldBlock` when
    /// nothing waits (during the handshake too).
    pub(crate) fn recv(&mut self, stream: &Stream, buf: &mut impl BufMut) -> io::Result<usize> {
        if let Some(error) = self.failure_again() {
            return Err(error);
        }
        if !self.handshaken {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut total = 0;
        loop {
            while self.plaintext > 0 && buf.has_remaining_mut() {
                let mut reader = self.conn.reader();
                let chunk = reader.fill_buf()?;
                if chunk.is_empty() {
                    self.plaintext = 0; // rustls's count and ours disagree: trust rustls
                    break;
                }
                let n = chunk.len().min(buf.remaining_mut());
                buf.put_slice(&chunk[..n]);
                reader.consume(n);
                self.plaintext -= n;
                total += n;
            }
            if !buf.has_remaining_mut() {
                return Ok(total);
            }
            if self.peer_closed || self.socket_eof {
                if total > 0 {
                    return Ok(total);
                }
                self.end_reported = true;
                return if self.peer_closed {
                    Ok(0)
                } else {
                    Err(truncated())
                };
            }
            match self.read_records(stream) {
                Ok(step) if step.moved => {}
                Ok(_) if total > 0 => return Ok(total),
                Ok(_) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(e) if total > 0 => {
                    // What was decrypted before is the caller's; the error comes next.
                    self.fail(e, true);
                    return Ok(total);
                }
                Err(e) => return Err(self.fail(e, false).expect("not owed")),
            }
        }
    }

    /// `send` on a TLS channel: encrypts what rustls's buffer takes of `data` (plaintext sent
    /// during the handshake waits in rustls until it completes) and flushes what the socket
    /// takes (`stream` is `None` while the channel is still connecting). Returns how many
    /// bytes were taken, 0 when the buffer is full.
    pub(crate) fn send(
        &mut self,
        stream: Option<&Stream>,
        data: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        if let Some(error) = self.failure_again() {
            return Err(error);
        }
        if self.closed_write {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "send after the TLS session was closed for sending (close_notify sent)",
            ));
        }
        let taken = self.conn.writer().write_vectored(data)?;
        if let Some(stream) = stream {
            if let Err(e) = self.flush(stream) {
                if taken == 0 {
                    return Err(self.fail(e, false).expect("not owed"));
                }
                self.fail(e, true);
            }
        }
        Ok(taken)
    }

    /// Queues `close_notify`: nothing more will be sent. With `then_shutdown`, the socket's
    /// write side is shut once it is flushed (half-close).
    pub(crate) fn close_notify(&mut self, then_shutdown: bool) {
        if !self.closed_write {
            self.conn.send_close_notify();
            self.closed_write = true;
        }
        self.shutdown_after_flush |= then_shutdown;
    }
}

/// Flushes what a closing TLS channel still owes (its `close_notify` among it), with a bound on
/// the time it may take, then drops the socket: the kernel's way with a closed plaintext
/// socket's unsent bytes, which TLS records in user space do not get.
pub(crate) async fn linger(stream: Stream, mut tls: Box<Tls>, limit: std::time::Duration) {
    let flushed = tokio::time::timeout(
        limit,
        std::future::poll_fn(|cx| loop {
            if !tls.wants_flush() {
                return Poll::Ready(());
            }
            if !stream.poll_ready(cx, Interest::WRITE).is_write() {
                return Poll::Pending;
            }
            match tls.flush(&stream) {
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "TLS close: the rest of the output was dropped");
                    return Poll::Ready(());
                }
            }
        }),
    )
    .await;
    if flushed.is_err() {
        tracing::debug!(
            "TLS close: the peer did not take the rest of the output in {limit:?}; dropped"
        );
    }
}

/// The channel's stream as rustls's `Read` and `Write`: every transfer through
/// [`do_io`](super::do_io), so that readiness clears as for any read or write.
struct SocketIo<'a>(&'a Stream);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf, true)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    /// Shuts the write side of the socket (after a `close_notify`).
    fn shutdown_write(&self) -> io::Result<()> {
        let socket = match self {
            Stream::Tcp(s) => socket2::SockRef::from(s),
            Stream::Unix(s) => socket2::SockRef::from(s),
        };
        match socket.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}
