//! [`Dispatcher`]: the callbacks of one channel, asyncore's `dispatcher` subclass.

use std::any::Any;
use std::io;

use crate::address::Address;
use crate::channel::Channel;
use crate::event::InterestScope;
use crate::snapshot::Buffered;

/// The callbacks of a channel.
///
/// Implement the hooks you need; every one has asyncore's default. The reactor calls them on
/// the map's thread, one at a time, in the order asyncore's `poll` would:
///
/// 1. It asks [`readable`](Dispatcher::readable) and [`writable`](Dispatcher::writable) what the
///    channel waits for (a listener never waits for writability; a connecting channel always
///    does).
/// 2. It waits for that readiness, and nothing else.
/// 3. It turns readiness into events: a read event is `handle_accept` on a listener, or
///    `handle_connect` (if a connect is pending) followed by `handle_read`; a write event is
///    `handle_connect` (if pending) followed by `handle_write`, which runs only if `writable()`
///    said yes (a channel that waited for writability only to see its connect complete gets
///    `handle_connect` alone); urgent data is `handle_expt`.
/// 4. An event the callback caused (end of file, a disconnect seen by `send`/`recv`) becomes
///    `handle_close` right after that callback. An error returned by a callback, or a panic,
///    becomes `handle_error`; a disconnect error becomes `handle_close`; `WouldBlock` means
///    "nothing to do" and is dropped; [`ExitNow`](crate::ExitNow) stops the loop.
/// 5. Back to 1: interest is asked again after every round of callbacks and after anything
///    delivered to the channel from outside (a [`Map::with`](crate::Map::with) or a handle call).
///
/// Two more events come from time and from async work rather than from the socket: the
/// channel's deadline passing (`handle_timeout`), and a piece of work started with
/// [`Channel::spawn`](crate::Channel::spawn) finishing (its completion callback). Both run on
/// the channel's task like any other callback.
///
/// Every callback gets `&mut self` (your state) and `&mut Channel` (the socket and its flags).
/// Returning `Err` routes the error as asyncore's `readwrite` does; callbacks never need to catch
/// errors themselves.
///
/// # Differences from asyncore
///
/// - `readable`/`writable` take the channel, since state such as `connected` lives there.
/// - The default `writable` is `true`, as in asyncore, and a channel with nothing to write then
///   busy-loops, as in asyncore. The reactor notices (a rate-limited `WARN` log naming the
///   channel) and keeps the rest of the thread running (Tokio's cooperative budget), but the
///   fix is yours: return `true` only while output is pending.
/// - The default `handle_error` logs through `tracing` (target `asyncore`, level `ERROR`) rather
///   than printing to stdout. The "unhandled … event" messages asyncore hides by default
///   (`ignore_log_types`) are `DEBUG` events.
///
/// # Example
///
/// The echo handler of asyncore's documentation: read what arrives, write it back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::io;
/// use asyncore::{Channel, Dispatcher};
/// use bytes::{Buf, BytesMut};
///
/// struct EchoHandler { buffer: BytesMut }
///
/// impl Dispatcher for EchoHandler {
///     fn writable(&self, _: &Channel) -> bool {
///         !self.buffer.is_empty()
///     }
///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
///         let data = channel.recv(8192)?;
///         self.buffer.extend_from_slice(&data);
///         Ok(())
///     }
///     fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
///         let sent = channel.send(&self.buffer)?;
///         self.buffer.advance(sent);
///         Ok(())
///     }
/// }
///
/// // One end of a socket pair served by the handler, the other end a native Tokio stream.
/// let (ours, mut theirs) = tokio::net::UnixStream::pair()?;
/// let map = asyncore::Map::new();
/// map.add(Channel::from_unix(ours), EchoHandler { buffer: BytesMut::new() })?;
/// let peer = async move {
///     use tokio::io::{AsyncReadExt, AsyncWriteExt};
///     theirs.write_all(b"hello").await?;
///     let mut echo = [0; 5];
///     theirs.read_exact(&mut echo).await?;
///     assert_eq!(&echo, b"hello");
///     io::Result::Ok(())
/// };
/// let (served, checked) = tokio::join!(map.run_until(std::future::pending()), peer);
/// # let _ = served;
/// checked
/// # }
/// ```
pub trait Dispatcher: Any {
    /// Whether the channel waits for read events. Default: `true`.
    fn readable(&self, channel: &Channel) -> bool {
        let _ = channel;
        true
    }

    /// Whether the channel waits for write events. Default: `true` (see the trait docs).
    fn writable(&self, channel: &Channel) -> bool {
        let _ = channel;
        true
    }

    /// What `readable` and `writable` depend on, asked once when the channel joins a map.
    /// Default: [`InterestScope::Shared`], asyncore's rule: the channel is asked again after
    /// every batch of callbacks on the map, so a dispatcher whose `writable()` reads a buffer
    /// that another dispatcher fills works as ported.
    ///
    /// Return [`InterestScope::Own`] when the answers depend only on `self` and the channel
    /// (an echo handler, an asynchat connection fed through [`Map::with`](crate::Map::with)):
    /// nothing is asked on other channels' behalf, and the channel costs what a native task
    /// costs. If code outside its callbacks then changes what they read, call
    /// [`Map::wake`](crate::Map::wake); the map notices a stale `Own` channel within a second
    /// and says so at `WARN`.
    ///
    /// ```
    /// # #![allow(dead_code)]
    /// use asyncore::{Channel, Dispatcher, InterestScope};
    ///
    /// struct Echo { pending: Vec<u8> }
    ///
    /// impl Dispatcher for Echo {
    ///     fn interest_scope(&self) -> InterestScope {
    ///         InterestScope::Own // writable() reads only self.pending
    ///     }
    ///     fn writable(&self, _: &Channel) -> bool {
    ///         !self.pending.is_empty()
    ///     }
    /// }
    /// ```
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Shared
    }

    /// The channel joined a map ([`Map::add`](crate::Map::add)), asyncore's `add_channel`: the
    /// first call the dispatcher gets, before any interest is asked. Default: nothing.
    fn handle_added(&mut self, channel: &mut Channel) {
        let _ = channel;
    }

    /// Whether input already taken from the socket waits to be handled: bytes the dispatcher
    /// buffered but has not processed (asynchat's unparsed input after a terminator change).
    /// While it is true and `readable()` too, the reactor runs `handle_read` at once, without
    /// waiting for the socket, which may have nothing more to say. Asked with `readable()`.
    /// Default: `false`. Input the channel itself holds (decrypted TLS bytes) needs no answer
    /// here: the reactor asks [`Channel::has_buffered_input`] too.
    fn has_buffered_input(&self, channel: &Channel) -> bool {
        let _ = channel;
        false
    }

    /// What the dispatcher holds in its own buffers (input not yet handled, output queued,
    /// water marks), for [`Map::snapshot`](crate::Map::snapshot): the reactor cannot see
    /// inside a dispatcher. Asked only when a snapshot is taken, never by the reactor's own
    /// loop. Default: nothing known ([`Buffered::default`]). asynchat's
    /// [`AsyncChat`](crate::chat::AsyncChat) reports its framer and output queue; a dispatcher
    /// with a [`SendBuffer`](crate::SendBuffer) returns
    /// [`SendBuffer::buffered`](crate::SendBuffer::buffered). asyncore has no such hook.
    fn buffered(&self, channel: &Channel) -> Buffered {
        let _ = channel;
        Buffered::default()
    }

    /// Data (or end of file) can be read. Default: logs "unhandled read event".
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        unhandled(channel, "unhandled read event");
        Ok(())
    }

    /// Data can be written. Default: logs "unhandled write event".
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        unhandled(channel, "unhandled write event");
        Ok(())
    }

    /// Urgent (out-of-band) data arrived; read it with
    /// [`Channel::recv_urgent`](crate::Channel::recv_urgent). Runs only on TCP channels that
    /// asked for it with [`Channel::set_urgent_events`](crate::Channel::set_urgent_events)
    /// (asyncore watches every socket), once per urgent byte; a socket error pending at that
    /// moment runs `handle_close` instead, as in asyncore's `handle_expt_event`. Default: logs
    /// "unhandled incoming priority event".
    fn handle_expt(&mut self, channel: &mut Channel) -> io::Result<()> {
        unhandled(channel, "unhandled incoming priority event");
        Ok(())
    }

    /// The connect started by [`Channel::connect`] completed. `channel.connected()` is already
    /// true. Default: logs "unhandled connect event".
    ///
    /// It runs as soon as the connect completes (the reactor waits for writability while a
    /// connect is pending, whatever `writable()` says), before any read or write callback; the
    /// write event that brought it runs `handle_write` afterwards only if `writable()` said
    /// yes. asyncore waits only for what `readable()`/`writable()` ask, so a channel that is
    /// not writable while connecting sees `handle_connect` there only at its first read event
    /// (and never, if the peer sends nothing first).
    ///
    /// If it fails (returns an error, `WouldBlock` and [`ExitNow`](crate::ExitNow) included,
    /// or panics), the connect counts as pending again, as in asyncore (which sets `connected`
    /// only after `handle_connect` returns): the error is routed as usual (`handle_error` sees
    /// `connected()` false and `connecting()` true), no `handle_read` or `handle_write` follows
    /// in that event, and the next read or write event runs `handle_connect` again. A
    /// `handle_error` that does not close the channel therefore gets a retry on every pass
    /// while `handle_connect` keeps failing, as in asyncore.
    fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
        unhandled(channel, "unhandled connect event");
        Ok(())
    }

    /// The channel's TLS handshake completed ([`Channel::start_tls`]): the peer's certificate
    /// ([`Channel::peer_certificates`]) and the agreed ALPN protocol
    /// ([`Channel::alpn_protocol`]) are known, and read and write events resume. It runs
    /// before any read or write callback that follows the handshake. Default: logs "TLS
    /// ready" at `DEBUG`.
    ///
    /// Python's `ssl` module has no such event: a non-blocking `SSLSocket` reports the end of
    /// `do_handshake()` by not raising `SSLWantReadError` any more.
    fn handle_tls_ready(&mut self, channel: &mut Channel) -> io::Result<()> {
        tracing::debug!(channel = %channel.id(), alpn = ?channel.alpn_protocol().map(String::from_utf8_lossy), "TLS ready");
        Ok(())
    }

    /// A listening channel is readable. Default: [`Channel::accept`], then
    /// [`handle_accepted`](Dispatcher::handle_accepted) if a connection was there.
    fn handle_accept(&mut self, channel: &mut Channel) -> io::Result<()> {
        if let Some((connection, address)) = channel.accept()? {
            self.handle_accepted(channel, connection, address)?;
        }
        Ok(())
    }

    /// A connection was accepted. Typically: `channel.map()` `.add(connection, Handler)`.
    /// Default: closes the connection and logs "unhandled accepted event".
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        mut connection: Channel,
        address: Address,
    ) -> io::Result<()> {
        connection.close();
        tracing::debug!(channel = %channel.id(), peer = %address, "unhandled accepted event");
        Ok(())
    }

    /// The peer finished sending (end of file on `recv`); it may still be reading. The channel
    /// stops asking for read events.
    ///
    /// asyncore has no such event: end of file is `handle_close`, so a server cannot finish
    /// sending after a client's half-close (python/cpython#80094). The default keeps that
    /// behaviour: it asks for `handle_close` ([`Channel::request_close`]). Override it to send
    /// what is still owed and close afterwards.
    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.request_close();
        Ok(())
    }

    /// The peer closed the connection, or a disconnect error occurred. Runs at most once per
    /// channel. Default: logs "unhandled close event", then [`Channel::close`].
    ///
    /// It may leave the channel open, to flush a last reply (asynchat's `close_when_done`, or a
    /// later [`Channel::request_close`]); the next close asked for, or a disconnect, then closes
    /// the channel without calling `handle_close` again. asyncore calls `handle_close` again
    /// in that case.
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        unhandled(channel, "unhandled close event");
        channel.close();
        Ok(())
    }

    /// The deadline set with [`Channel::set_deadline`] or [`Channel::set_timeout`] passed
    /// (asyncore has no timers; this is the idle timeout its users wrote by hand). The deadline
    /// is cleared before the call. Default: logs "unhandled timeout event" and closes the
    /// channel.
    fn handle_timeout(&mut self, channel: &mut Channel) -> io::Result<()> {
        unhandled(channel, "unhandled timeout event");
        channel.close();
        Ok(())
    }

    /// A callback returned `error` (or panicked; the error then says so). Default: logs the
    /// error at `ERROR` with the channel's identity, then calls
    /// [`handle_close`](Dispatcher::handle_close).
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        tracing::error!(
            channel = %channel.id(),
            dispatcher = std::any::type_name_of_val(self),
            state = %channel,
            error = %error,
            "uncaptured error, closing channel"
        );
        if let Err(e) = self.handle_close(channel) {
            tracing::error!(channel = %channel.id(), error = %e, "handle_close failed; closing");
        }
        channel.close();
    }
}

fn unhandled(channel: &Channel, what: &str) {
    tracing::debug!(channel = %channel.id(), "{what}");
}
