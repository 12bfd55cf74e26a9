//! TLS on a channel: starting it ([`Channel::start_tls`]), what it tells
//! ([`Channel::tls_connection`], [`Channel::peer_certificates`], [`Channel::alpn_protocol`]),
//! and the hooks through which `recv`, `send`, the reactor's poll, `close`, `shutdown` and
//! `take_stream` go when it is on. The session itself is `io::Tls`.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BufMut;
use rustls::pki_types::CertificateDer;

use super::{Channel, NativeStream, TlsStream};
use crate::error::{closed_channel, context};
use crate::event::{Interest, Ready};
use crate::io::{Io, Stream, Tls, TlsEvent};
use crate::tls::{ClientConfig, ServerConfig, Side, Upgrade};

/// How long a closed TLS channel keeps flushing the records its socket had no room for.
const LINGER: Duration = Duration::from_secs(10);

impl Channel {
    /// Starts TLS as the server ([`start_tls`](Channel::start_tls) with
    /// [`Upgrade::server`]): on a connection just accepted, before `Map::add`, or at a
    /// STARTTLS command.
    ///
    /// # Errors
    /// As [`start_tls`](Channel::start_tls).
    pub fn start_tls_server(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        self.start_tls(Upgrade::server(config))
    }

    /// Starts TLS as the client, for `server_name` (a DNS name or an IP address, which the
    /// server's certificate must match): right after [`connect`](Channel::connect), or once
    /// the server said yes to STARTTLS ([`start_tls`](Channel::start_tls) with
    /// [`Upgrade::client`]).
    ///
    /// # Errors
    /// `InvalidInput` for a `server_name` that is neither; otherwise as
    /// [`start_tls`](Channel::start_tls).
    pub fn start_tls_client(
        &mut self,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<()> {
        self.start_tls(Upgrade::client(config, server_name)?)
    }

    /// Starts TLS on a stream channel, connected or still connecting: from here on the bytes
    /// of the connection are TLS records, and [`recv`](Channel::recv) and
    /// [`send`](Channel::send) carry plaintext.
    ///
    /// The upgrade is exact, in both directions, at the moment of the call:
    ///
    /// - **Out.** What `send` took before went out in the clear (a plaintext `send` writes to
    ///   the socket at once). Output the dispatcher still holds and owes in the clear goes with
    ///   the upgrade: [`Upgrade::plaintext_first`]; it is written before the first record.
    ///   Whatever `send` takes afterwards is encrypted, and waits in the session until the
    ///   handshake has completed.
    /// - **In.** Every byte the socket delivers after the call goes to the TLS session, none to
    ///   the dispatcher as plaintext. Bytes the peer sent in the clear after its upgrade
    ///   command (a command injection, RFC 3207 §4.2) are not a TLS record, so the handshake
    ///   fails on them and `handle_error` gets an `InvalidData` error that says so. Bytes the
    ///   *dispatcher* already read past its upgrade command are its own business: refuse them
    ///   (RFC 3207 asks servers to discard or reject them; an asynchat channel's
    ///   [`Chat::start_tls`](crate::chat::Chat::start_tls) rejects them) rather than treat them
    ///   as protected.
    ///
    /// The reactor then drives the handshake, whatever `readable()` and `writable()` say;
    /// read and write events resume when it completes, after
    /// [`Dispatcher::handle_tls_ready`](crate::Dispatcher::handle_tls_ready). A failure (a
    /// certificate that is not trusted, has expired or names another host, an alert, bytes
    /// that are not TLS, the peer closing mid-handshake) reaches `handle_error` with an error
    /// that says which; [`tls::rustls_error`](crate::tls::rustls_error) gives the rustls error.
    ///
    /// # Errors
    /// `InvalidInput` if TLS is already on, or the channel is not a stream connection (a
    /// listener, a datagram or file channel, a fresh socket); `NotConnected` if it is closed;
    /// rustls's refusal of the configuration as `InvalidInput`.
    pub fn start_tls(&mut self, upgrade: Upgrade) -> io::Result<()> {
        if self.is_closed() {
            return Err(closed_channel("start_tls"));
        }
        if self.tls.is_some() {
            return Err(self.misuse("start_tls", "already speaks TLS"));
        }
        if !matches!(self.io, Io::Stream(_)) {
            return Err(self.misuse("start_tls", "needs a stream connection"));
        }
        let Upgrade {
            side,
            plaintext_first,
        } = upgrade;
        let refused = |e: rustls::Error| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("start_tls: rustls refused the configuration: {e}"),
            )
        };
        let (conn, peer) = match side {
            Side::Server(config) => (
                rustls::ServerConnection::new(config)
                    .map_err(refused)?
                    .into(),
                None,
            ),
            Side::Client(config, name) => {
                let peer = name.to_str().into_owned();
                (
                    rustls::ClientConnection::new(config, name)
                        .map_err(refused)?
                        .into(),
                    Some(peer),
                )
            }
        };
        self.tls = Some(Box::new(Tls::new(conn, plaintext_first, peer)));
        Ok(())
    }

    /// Whether the channel speaks TLS (from [`start_tls`](Channel::start_tls) on, the
    /// handshake included).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the channel's TLS handshake is still running. False for a plaintext channel.
    pub fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// The rustls connection of a TLS channel, for everything it tells: the protocol version
    /// and cipher suite (Python's `SSLSocket.version()` and `cipher()`), the name a client
    /// asked for (a server's `server_name()`, SNI), and more.
    pub fn tls_connection(&self) -> Option<&rustls::Connection> {
        self.tls.as_ref().map(|tls| &tls.conn)
    }

    /// The certificate chain the peer presented, its own certificate first, once the
    /// handshake has got that far: Python's `getpeercert(binary_form=True)`, and the chain
    /// too. `None` on a plaintext channel, before, and for a client that sent none.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.as_ref()?.conn.peer_certificates()
    }

    /// The application protocol agreed in the handshake (ALPN), Python's
    /// `selected_alpn_protocol()`; `None` if none was (or before the handshake completed).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref()?.conn.alpn_protocol()
    }

    /// Whether input waits in the channel itself, so that a `recv` returns at once though the
    /// socket may have nothing more to say: decrypted TLS bytes, or the end of a TLS stream,
    /// not yet received. The reactor asks it with `readable()` (as it asks
    /// [`Dispatcher::has_buffered_input`](crate::Dispatcher::has_buffered_input)) and runs
    /// `handle_read` without waiting for the socket. Always false for a plaintext channel,
    /// whose input waits in the kernel.
    pub fn has_buffered_input(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.has_input())
    }

    /// What is ready without the socket: `TLS` for an event of the TLS session, `READ` for
    /// input the channel holds (if `read`). `NONE` for a plaintext channel.
    #[inline(never)]
    pub(crate) fn ready_without_socket(&self, read: bool) -> Ready {
        match &self.tls {
            None => Ready::NONE,
            Some(tls) => tls.ready_now(read),
        }
    }

    /// The next event of the TLS session for the dispatcher.
    pub(crate) fn take_tls_event(&mut self) -> Option<TlsEvent> {
        self.tls.as_mut()?.take_event()
    }

    /// The reactor's poll of a TLS channel: through its session ([`Tls::poll`]), or, while a
    /// connect is pending, the socket's own poll (the handshake starts once it is done). Out
    /// of line, so that a plaintext channel's poll pays one test for it.
    #[cold]
    #[inline(never)]
    pub(super) fn poll_tls(&mut self, cx: &mut Context<'_>, want: Interest) -> Poll<Ready> {
        match (self.tls.as_mut(), &self.io) {
            (Some(tls), Io::Stream(stream)) if !self.connecting => tls.poll(stream, cx, want),
            _ => self.io.poll_ready(cx, want),
        }
    }

    /// Whether the reactor must poll the channel though its dispatcher wants nothing: a TLS
    /// session may have a handshake to drive or records to flush (once a pending connect is
    /// done).
    #[inline]
    pub(crate) fn polls_alone(&self) -> bool {
        self.tls.is_some() && !self.connecting
    }

    /// `recv` of a TLS channel.
    #[cold]
    pub(super) fn tls_recv_buf<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        let (Some(tls), Io::Stream(stream)) = (self.tls.as_mut(), &self.io) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let result = if self.connecting {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            tls.recv(stream, buf)
        };
        match result {
            Err(e) if crate::tls::is_truncation(&e) => {
                // Not end of file: the dispatcher hears of it as an error, once, and the
                // channel reads no more.
                self.progress = true;
                self.closing.read_finished();
                Err(e)
            }
            other => self.received(other),
        }
    }

    /// `send` of a TLS channel.
    #[cold]
    pub(super) fn tls_send(&mut self, data: &[IoSlice<'_>]) -> io::Result<usize> {
        let (Some(tls), Io::Stream(stream)) = (self.tls.as_mut(), &self.io) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let stream = (!self.connecting).then_some(stream);
        let result = tls.send(stream, data);
        self.progress = true;
        self.sent(result)
    }

    /// `shutdown(Write)` of a TLS channel: `close_notify`, then the socket's write side once
    /// every record before it is out.
    pub(super) fn tls_shutdown_write(&mut self) -> io::Result<()> {
        let (Some(tls), Io::Stream(stream)) = (self.tls.as_mut(), &self.io) else {
            return Err(closed_channel("shutdown"));
        };
        tls.close_notify(true);
        if self.connecting {
            return Ok(());
        }
        tls.flush(stream)
            .map(drop)
            .map_err(|e| context(e, "shutdown"))
    }

    /// Part of `close` for a TLS channel, while the socket is still open: `close_notify`, and
    /// the records before it; what the socket has no room for now is flushed by a task of the
    /// map, for at most [`LINGER`], as the kernel goes on sending a closed socket's bytes.
    pub(super) fn close_tls(&mut self) {
        let Some(mut tls) = self.tls.take() else {
            return;
        };
        if self.connecting || tls.has_failed() {
            return;
        }
        let Io::Stream(stream) = &self.io else {
            return;
        };
        tls.close_notify(false);
        match tls.flush(stream) {
            Ok(_) if tls.wants_flush() => {}
            _ => return,
        }
        let Some(map) = self.link.upgrade() else {
            return;
        };
        let Io::Stream(stream) = std::mem::replace(&mut self.io, Io::Closed) else {
            unreachable!("matched above")
        };
        map.linger(Box::pin(crate::io::linger(stream, tls, LINGER)));
    }

    /// `take_stream` of a TLS channel: the stream and the session go together.
    pub(super) fn take_tls(&mut self, stream: Stream) -> NativeStream {
        let plain = match stream {
            Stream::Tcp(s) => NativeStream::Tcp(s),
            Stream::Unix(s) => NativeStream::Unix(s),
        };
        match self.tls.take() {
            None => plain,
            Some(tls) => NativeStream::Tls(Box::new(TlsStream::from_session(plain, *tls))),
        }
    }
}
