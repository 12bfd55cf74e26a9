//! [`TlsStream`]: a TLS connection taken out of a map, as Tokio's `AsyncRead` and
//! `AsyncWrite`.

use std::fmt;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::NativeStream;
use crate::io::Tls;
use crate::tls::{closed_during_handshake, failure, truncated};

/// A TLS connection handed over to native code: the socket and its rustls session, with
/// everything the session holds (decrypted bytes not yet read, records not yet sent, a
/// handshake still running: reading and writing drive it on). It implements Tokio's
/// [`AsyncRead`](https://docs.rs/tokio/1/tokio/io/trait.AsyncRead.html) and
/// [`AsyncWrite`](https://docs.rs/tokio/1/tokio/io/trait.AsyncWrite.html), as tokio-rustls's
/// streams do; `poll_shutdown` sends `close_notify`, then shuts the socket's write side.
///
/// Reads follow the channel's rules: `Ok(0)` is the peer's `close_notify`; a connection that
/// ends without it is an `UnexpectedEof` error ([`is_truncation`](crate::tls::is_truncation)).
///
/// Get one from [`Channel::take_stream`](crate::Channel::take_stream) on a TLS channel, as
/// [`NativeStream::Tls`].
pub struct TlsStream {
    io: NativeStream,
    conn: rustls::Connection,
    /// Plaintext owed before the first record, if the channel had not sent it yet.
    prelude: Bytes,
    /// `close_notify` is queued.
    closed_write: bool,
    /// The server's name, for a client's messages.
    peer: Option<String>,
}

impl TlsStream {
    pub(crate) fn from_session(io: NativeStream, tls: Tls) -> TlsStream {
        TlsStream {
            io,
            conn: tls.conn,
            prelude: tls.prelude,
            closed_write: tls.closed_write,
            peer: tls.peer,
        }
    }

    /// The rustls session (peer certificates, ALPN, version, cipher suite).
    pub fn connection(&self) -> &rustls::Connection {
        &self.conn
    }

    /// The socket under the session (a TCP or Unix stream).
    pub fn get_ref(&self) -> &NativeStream {
        &self.io
    }

    /// The socket and the session, apart.
    pub fn into_parts(self) -> (NativeStream, rustls::Connection) {
        (self.io, self.conn)
    }

    /// Writes the owed plaintext, then the records, until none is left or the socket is full.
    fn poll_flush_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.prelude.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.prelude) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.prelude.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        while self.conn.wants_write() {
            let mut io = Adapter {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads records once and processes them: `Ok(false)` at the end of the socket's stream.
    fn poll_read_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut io = Adapter {
            io: &mut self.io,
            cx,
        };
        let more = match self.conn.read_tls(&mut io) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let handshaking = self.conn.is_handshaking();
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.poll_flush_records(cx); // the alert, if the socket takes it
            return Poll::Ready(Err(failure(e, handshaking, self.peer.as_deref())));
        }
        if !more && self.conn.is_handshaking() {
            return Poll::Ready(Err(closed_during_handshake(self.peer.as_deref())));
        }
        Poll::Ready(Ok(more))
    }

    /// Drives a handshake still running to its end.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.is_handshaking() {
            if let Poll::Ready(Err(e)) = self.poll_flush_records(cx) {
                return Poll::Ready(Err(e));
            }
            if !self.conn.is_handshaking() {
                break;
            }
            match self.poll_read_records(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("io", &self.io)
            .field("handshaking", &self.conn.is_handshaking())
            .field("peer", &self.peer)
            .finish()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Err(truncated()))
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Handshake messages (or an answer to a key update) go out before we wait to read.
            if let Poll::Ready(Err(e)) = this.poll_flush_records(cx) {
                return Poll::Ready(Err(e));
            }
            match this.poll_read_records(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed_write {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the TLS session was shut down (close_notify sent)",
            )));
        }
        match this.poll_handshake(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        loop {
            let taken = this.conn.writer().write(buf)?;
            let flushed = this.poll_flush_records(cx);
            if let Poll::Ready(Err(e)) = flushed {
                return Poll::Ready(Err(e));
            }
            if taken > 0 || buf.is_empty() {
                return Poll::Ready(Ok(taken));
            }
            if flushed.is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_flush_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closed_write {
            this.conn.send_close_notify();
            this.closed_write = true;
        }
        match this.poll_flush_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}

/// The socket as rustls's `Read` and `Write` inside a poll: `Pending` is `WouldBlock`.
struct Adapter<'a, 'b> {
    io: &'a mut NativeStream,
    cx: &'a mut Context<'b>,
}

impl Read for Adapter<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut read) {
            Poll::Ready(Ok(())) => Ok(read.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Adapter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
