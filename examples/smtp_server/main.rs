//! A debugging SMTP server in the manner of Python's `smtpd.DebuggingServer`: it speaks SMTP
//! (HELO, EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, HELP, VRFY, EXPN) with RFC 5321 reply
//! codes and prints every message it accepts to stdout instead of delivering it.
//!
//! ```text
//! cargo run --release --example smtp_server [--command-timeout SECS] [--data-timeout SECS] [ADDR]
//! python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", 8025).sendmail("a@b", ["c@d"], "Subject: hi\r\n\r\nhello\r\n")'
//! cargo run --release --example smtp_server -- --tls-cert cert.pem --tls-key key.pem [ADDR]
//! ```
//!
//! `ADDR` defaults to 127.0.0.1:8025. Stdout has the `listening on IP:PORT` line, then each
//! accepted message between `---------- MESSAGE FOLLOWS ----------` and
//! `------------ END MESSAGE ------------`: the message and its `X-Peer: IP` header, nothing
//! else. With `RUST_LOG=smtp_server=info`, stderr has a `message accepted` event per message
//! with the envelope (`MAIL FROM`, `RCPT TO`, the `MAIL` parameters such as `SIZE=120`, which
//! smtpd printed inside the block) and a line per connection that timed out.
//!
//! # Timeouts
//!
//! RFC 5321 4.5.3.2's, on the channel's deadline ([`Channel::set_timeout`],
//! [`ChatHandler::handle_timeout`]):
//!
//! - `--command-timeout SECS` (default 300): from the greeting or the end of the last command
//!   until the next command line is complete. Bytes of an unfinished line do not restart it, so
//!   a client that sends half a command and stalls (slowloris) is timed out like a silent one.
//! - `--data-timeout SECS` (default 180): after `354`, between two pieces of the message; any
//!   bytes of the message restart it. It is checked in eighths (see [`DataClock`]), so a
//!   stalled message is timed out up to an eighth of the timeout late.
//!
//! A client that lets one pass gets `421 <host> Error: timeout exceeded`, and the connection
//! closes once that is sent. A client that does not read its replies cannot delay the close:
//! after the `421` (or `221`, or its own end of file) it has the command timeout, at most
//! 30 s, to take what is queued, and then the connection closes regardless. smtpd has no
//! timeouts.
//!
//! # STARTTLS
//!
//! With `--tls-cert FILE --tls-key FILE` (a PEM certificate chain and its key) the `EHLO` reply
//! advertises `STARTTLS`, and the command upgrades the connection (RFC 3207): the
//! `220 Ready to start TLS` reply goes out in the clear, the handshake follows
//! ([`Chat::start_tls_server`]), and the conversation starts again from the greeting, now
//! protected (the session's rules are in [`session`]'s docs). Whatever the client sent after
//! `STARTTLS` in the clear, before the handshake, is discarded, never executed (RFC 3207 §4.2;
//! the command injection of CVE-2011-0411): bytes already read are dropped here, and bytes that
//! arrive later are not TLS, so the handshake fails on them and the connection closes. A
//! client that ends a protected conversation without TLS's `close_notify` has ended it, as an
//! end of file would: a message counts only once its final `.` came.
//!
//! The pieces, as in smtpd:
//!
//! - [`SmtpServer`] (smtpd's `SMTPServer`): the listener; it starts a channel per connection.
//! - [`SmtpChannel`] (smtpd's `SMTPChannel`, its asynchat half): an
//!   [`AsyncChat`](asyncore::chat::AsyncChat) handler; the chat frames the input on `\r\n`,
//!   the handler forwards each record to the session, pushes its replies, and closes after
//!   `QUIT` with `close_when_done`.
//! - [`session::Session`] (`SMTPChannel`'s state machine): commands in, replies out; no I/O.
//! - [`message::Message`] (`DebuggingServer.process_message`): prints an accepted message
//!   between `---------- MESSAGE FOLLOWS ----------` and `------------ END MESSAGE ------------`.
//!
//! What differs from smtpd is listed in [`session`]'s docs; the greeting and `EHLO` name the
//! server by the address the client connected to (`[127.0.0.1]`), not by the host's name.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod message;
mod session;
mod syntax;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::tls::{self, ServerConfig};
use asyncore::{Address, Channel, Dispatcher, InterestScope};
use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use cli::Timeouts;
use message::Message;
use session::{Action, Session, Starttls};

const PROGRAM: &str = "smtp_server";
const BACKLOG: u32 = 128;

/// The longest a closing connection waits for its client to take the last replies.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener: smtpd's `SMTPServer`.
struct SmtpServer {
    timeouts: Timeouts,
    /// What `STARTTLS` serves, if the server offers it.
    tls: Option<Arc<ServerConfig>>,
}

impl SmtpServer {
    /// Listens on `address` with a listener in this thread's default map; returns the bound
    /// address.
    fn start(
        address: SocketAddr,
        timeouts: Timeouts,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<Address> {
        let (channel, bound) = support::listener(address, BACKLOG)?;
        asyncore::add(channel, SmtpServer { timeouts, tls })?;
        Ok(bound)
    }
}

impl Dispatcher for SmtpServer {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // a listener: it always wants to accept
    }

    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        mut conn: Channel,
        addr: Address,
    ) -> io::Result<()> {
        // smtpd closes a connection whose addresses cannot be had; so does this, quietly.
        let local = match conn.local_addr() {
            Ok(local) => local,
            Err(e) => {
                debug!(%addr, "connection gone before its greeting: {e}");
                return Ok(());
            }
        };
        let (Some(peer), Some(local)) = (addr.as_inet(), local.as_inet()) else {
            return Ok(()); // not from an IP listener: cannot happen here
        };
        info!(%peer, "incoming connection");
        let starttls = match self.tls {
            Some(_) => Starttls::Offered,
            None => Starttls::Unavailable,
        };
        let session = Session::new(
            address_literal(&local),
            peer.ip(),
            session::DATA_SIZE_LIMIT,
            starttls,
        );
        // The first command is awaited from now (the greeting is on its way).
        conn.set_timeout(self.timeouts.command);
        let map = channel.map().expect("the server is in a map");
        // An error here concerns this connection only: returned, it would close the listener.
        let handler = SmtpChannel::start(session, self.timeouts, self.tls.clone());
        if let Err(e) = map.add(conn, handler) {
            warn!(%peer, "cannot serve the connection: {e}");
        }
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

/// How the server names itself: RFC 5321's address literal of the local end, `[127.0.0.1]`
/// or `[IPv6:::1]`.
fn address_literal(local: &SocketAddr) -> String {
    match local {
        SocketAddr::V4(v4) => format!("[{}]", v4.ip()),
        SocketAddr::V6(v6) => format!("[IPv6:{}]", v6.ip()),
    }
}

/// One connection: the transport half of smtpd's `SMTPChannel`, an asynchat handler. The
/// [`AsyncChat`] frames the input on `\r\n` and calls the two hooks below; the session answers.
/// The handler also keeps the connection's clock (the channel's deadline): see the timeouts in
/// the crate docs above.
struct SmtpChannel {
    session: Session,
    timeouts: Timeouts,
    /// What `STARTTLS` serves (the session offers it only with one).
    tls: Option<Arc<ServerConfig>>,
    /// `QUIT` was answered or the client finished sending: read no more.
    done_reading: bool,
    /// The chat closes once the queued replies are sent (`QUIT`, the client's end of file, a
    /// timeout, the server's shutdown): nothing more to say, and the deadline bounds the wait.
    closing: bool,
    /// The data timeout's clock.
    data_clock: DataClock,
}

/// The data timeout, checked in steps: the pieces of a message are counted, not timed (a clock
/// read per line, to move the deadline, cost 8-10 % more instructions per message), and the
/// deadline passes every [`DataClock::STEPS`]th of the timeout to look at the count.
/// Progress seen at a check counts from that check, so a client is timed out between one
/// timeout and one timeout and a step after the last piece of its message arrived.
#[derive(Debug)]
struct DataClock {
    /// Pieces of the message so far (any bytes, and line ends).
    pieces: u64,
    /// `pieces` at the last check.
    checked: u64,
    /// When the message last made progress, as far as the checks know.
    progress: Instant,
}

impl DataClock {
    /// Checks per data timeout.
    const STEPS: u32 = 8;

    fn new(now: Instant) -> DataClock {
        DataClock {
            pieces: 0,
            checked: 0,
            progress: now,
        }
    }

    /// The message starts (`354` was pushed) `now`; returns the first check.
    fn start(&mut self, now: Instant, timeout: Duration) -> Instant {
        self.checked = self.pieces;
        self.progress = now;
        now + timeout / Self::STEPS
    }

    /// The deadline passed (it is `now`): `None` if the message made no progress for
    /// `timeout`, else the next check.
    fn check(&mut self, now: Instant, timeout: Duration) -> Option<Instant> {
        if self.pieces != self.checked {
            self.checked = self.pieces;
            self.progress = now;
        }
        let due = self.progress + timeout;
        (due > now).then(|| due.min(now + timeout / Self::STEPS))
    }
}

impl SmtpChannel {
    /// The channel's dispatcher, with the greeting queued (sent by the first write event).
    fn start(
        session: Session,
        timeouts: Timeouts,
        tls: Option<Arc<ServerConfig>>,
    ) -> AsyncChat<SmtpChannel> {
        let mut chat = Chat::new(Session::TERMINATOR);
        push(&mut chat, session.greeting());
        let handler = SmtpChannel {
            session,
            timeouts,
            tls,
            done_reading: false,
            closing: false,
            data_clock: DataClock::new(Instant::now()),
        };
        AsyncChat::with_chat(handler, chat)
    }

    fn act(
        &mut self,
        chat: &mut Chat,
        channel: &mut Channel,
        actions: Vec<Action>,
    ) -> io::Result<()> {
        for action in actions {
            match action {
                Action::Reply(reply) => push(chat, reply),
                Action::Deliver(message) => deliver(&message),
                Action::CloseWhenDone => {
                    self.done_reading = true;
                    self.close_when_done(chat);
                }
                Action::StartTls => self.start_tls(chat, channel)?,
            }
        }
        Ok(())
    }

    /// `STARTTLS` was answered `220` (pushed, not sent yet): TLS starts after that reply.
    /// What the client sent after the command arrived in the clear and is dropped unread.
    fn start_tls(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let config = self
            .tls
            .clone()
            .expect("the session offers STARTTLS only with a configuration");
        let pipelined = chat.take_unparsed();
        if !pipelined.is_empty() {
            warn!(
                peer = %self.session.peer(),
                bytes = pipelined.len(),
                "discarded what the client sent in the clear after STARTTLS"
            );
        }
        chat.start_tls_server(channel, config)
    }

    /// Closes once the queued replies are sent; see [`CLOSING_TIMEOUT`] for the bound.
    fn close_when_done(&mut self, chat: &mut Chat) {
        self.closing = true;
        chat.close_when_done();
    }

    /// How long a closing connection waits for its client to take the queued replies.
    fn closing_timeout(&self) -> Duration {
        self.timeouts.command.min(CLOSING_TIMEOUT)
    }
}

/// smtpd's `push`: one reply line and its CRLF.
fn push(chat: &mut Chat, reply: String) {
    let mut line = reply.into_bytes();
    line.extend_from_slice(b"\r\n");
    chat.push(line);
}

/// Prints an accepted message on stdout (the `listening on` line's stream), flushed at once.
///
/// As in smtpd, the write is synchronous, on the map's thread: a stdout that is not read
/// holds up every connection. That keeps each message whole and printed before its `250 OK`
/// is sent, which is what a debugging server's user (and its tests) rely on.
fn deliver(message: &Message) {
    info!(
        peer = %message.peer,
        from = %message.mail_from,
        to = ?message.rcpt_tos,
        mail_options = ?message.mail_options,
        bytes = message.data.len(),
        "message accepted"
    );
    // Stdout is line-buffered: a buffer in front of it makes a long message a few large
    // writes rather than a system call per line.
    let mut stdout = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    if let Err(e) = message.write_to(&mut stdout).and_then(|()| stdout.flush()) {
        warn!("cannot print the message: {e}");
    }
}

impl ChatHandler for SmtpChannel {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // readable() reads this session and its chat only
    }

    /// The session keeps (a bounded part of) each record itself, so the chat's own record and
    /// its `max_frame_len` are not used: a 1 MiB line gets `500`, not a closed connection.
    fn collect_incoming_data(&mut self, _: &mut Chat, data: Bytes) -> io::Result<()> {
        self.session.collect_incoming_data(&data);
        self.data_clock.pieces = self.data_clock.pieces.wrapping_add(1);
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let was_closing = self.closing;
        let was_in_data = self.session.in_data();
        let actions = self.session.found_terminator();
        self.act(chat, channel, actions)?;
        if was_closing {
            // What follows a `421` is read and ignored; it does not move the deadline.
            return Ok(());
        }
        // The clock for what comes next: the next piece of a message (its clock starts with
        // `354` and counts the lines after), a whole command, or (after `QUIT`) the client
        // taking the last replies.
        if self.session.in_data() {
            if was_in_data {
                self.data_clock.pieces = self.data_clock.pieces.wrapping_add(1);
            } else {
                let first = self.data_clock.start(Instant::now(), self.timeouts.data);
                channel.set_deadline(Some(first));
            }
            return Ok(());
        }
        channel.set_timeout(if self.closing {
            self.closing_timeout()
        } else {
            self.timeouts.command
        });
        Ok(())
    }

    /// Stop reading after `QUIT`, and while the client does not read its replies.
    fn readable(&self, chat: &Chat, _: &Channel) -> bool {
        !self.done_reading && !chat.is_paused()
    }

    /// The client finished sending: answer what it sent, then close.
    fn handle_read_eof(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        self.done_reading = true;
        if !self.closing {
            self.close_when_done(chat);
            channel.set_timeout(self.closing_timeout());
        }
        Ok(())
    }

    /// A timeout passed, or in a message, a check of the data clock is due (which may find
    /// progress, and then only sets the next check). A client that let its timeout pass gets
    /// `421`, and the connection closes once that is sent, or, for a connection already
    /// closing whose client does not take its replies, now.
    fn handle_timeout(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        if self.closing {
            debug!(peer = %self.session.peer(), "the client did not take its last replies; closing");
            channel.close();
            return Ok(());
        }
        if self.session.in_data() {
            if let Some(next) = self.data_clock.check(Instant::now(), self.timeouts.data) {
                channel.set_deadline(Some(next));
                return Ok(());
            }
        }
        let waited = if self.session.in_data() {
            self.timeouts.data
        } else {
            self.timeouts.command
        };
        info!(peer = %self.session.peer(), in_data = self.session.in_data(), ?waited, "timeout exceeded");
        // As for the shutdown's 421: until the reply is sent, the channel keeps reading (and
        // the session ignores) what the client sends, so that the close finds no unread input,
        // which would reset the connection, and a reset can discard the reply.
        let reply = self.session.timed_out();
        push(chat, reply);
        self.close_when_done(chat);
        channel.set_timeout(self.closing_timeout());
        Ok(())
    }

    /// A protected conversation that ends without TLS's `close_notify` ends as at an end of
    /// file; any other error (a failed handshake, a reset) closes the connection, in a line.
    fn handle_error(&mut self, chat: &mut Chat, channel: &mut Channel, error: io::Error) {
        if tls::is_truncation(&error) {
            debug!(peer = %self.session.peer(), "the client closed without close_notify");
            if let Err(e) = self.handle_read_eof(chat, channel) {
                warn!(peer = %self.session.peer(), "closing: {e}");
                channel.close();
            }
            return;
        }
        warn!(peer = %self.session.peer(), "closing the connection: {error}");
        channel.close();
    }

    fn handle_close(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let shutting_down = channel
            .map()
            .is_some_and(|map| map.shutdown_token().is_cancelled());
        if shutting_down && !self.closing {
            // The server is stopping (a signal): say so, as RFC 5321 asks, after the replies
            // still queued, and close once the client has taken it all (or when the grace
            // period ends). Meanwhile the session ignores what the client sends, but keeps
            // reading it: a socket closed with unread input resets the connection, and the
            // reset can discard the 421 before the client reads it.
            let reply = self.session.shutting_down();
            push(chat, reply);
            self.close_when_done(chat);
            return Ok(());
        }
        channel.close();
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => return support::fail(PROGRAM, e),
    };
    let address = match support::parse_inet(&options.address) {
        Ok(address) => address,
        Err(e) => return support::fail(PROGRAM, e),
    };
    let tls = match support::tls_config(options.tls_cert.as_deref(), options.tls_key.as_deref()) {
        Ok(tls) => tls,
        Err(e) => return support::fail(PROGRAM, e),
    };
    // What `support::serve` does, after this program's own argument parsing.
    match SmtpServer::start(address, options.timeouts, tls) {
        Ok(bound) => support::announce(bound),
        Err(e) => return support::fail(PROGRAM, e),
    }
    let map = asyncore::socket_map();
    let served = map.run_until(support::signal()).await;
    let result = served.and(map.shutdown(support::GRACE).await);
    let _ = io::stdout().flush(); // what the handlers printed
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail(PROGRAM, e),
    }
}

/// The server in this process, on the current-thread and on the multi-thread runtime (the
/// program uses the first; the deadlines must not depend on it). `tests/smtp.rs` drives the
/// built program.
#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpStream;

    const LIMIT: Duration = Duration::from_secs(10);
    /// The timeouts here: short, but long enough that a client which sends its commands right
    /// after connecting is never late, even on a busy machine.
    const SHORT: Duration = Duration::from_secs(1);

    /// Runs the server on a fresh thread's default map, on `runtime`, until `client` (run on
    /// another thread with the server's address) returns; then shuts the map down.
    fn serve_while(
        runtime: tokio::runtime::Runtime,
        timeouts: Timeouts,
        client: impl FnOnce(SocketAddr) + Send + 'static,
    ) {
        let server = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listen = "127.0.0.1:0".parse().unwrap();
                let bound = SmtpServer::start(listen, timeouts, None).unwrap();
                let address = bound.as_inet().unwrap();
                let (done, finished) = tokio::sync::oneshot::channel();
                let peer = std::thread::spawn(move || {
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client(address)));
                    let _ = done.send(());
                    outcome
                });
                let map = asyncore::socket_map();
                let served = tokio::time::timeout(
                    LIMIT,
                    map.run_until(async {
                        let _ = finished.await;
                    }),
                )
                .await;
                map.shutdown(SHORT).await.unwrap();
                if let Err(panic) = peer.join().unwrap() {
                    std::panic::resume_unwind(panic);
                }
                served.expect("the client did not finish in time").unwrap();
            })
        });
        if let Err(panic) = server.join() {
            std::panic::resume_unwind(panic);
        }
    }

    fn runtimes() -> [(&'static str, tokio::runtime::Runtime); 2] {
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        [("current-thread", current), ("multi-thread", multi)]
    }

    /// A blocking client: send bytes, read reply lines.
    struct Client(BufReader<TcpStream>);

    impl Client {
        fn connect(address: SocketAddr) -> Client {
            let stream = TcpStream::connect_timeout(&address, LIMIT).unwrap();
            stream.set_read_timeout(Some(LIMIT)).unwrap();
            let mut client = Client(BufReader::new(stream));
            assert!(client.line().starts_with("220 "));
            client
        }

        fn send(&mut self, bytes: &[u8]) {
            self.0.get_mut().write_all(bytes).unwrap();
        }

        fn line(&mut self) -> String {
            let mut line = String::new();
            self.0.read_line(&mut line).unwrap();
            line
        }

        /// The `421`, then the close.
        fn times_out(mut self) {
            assert_eq!(self.line(), "421 [127.0.0.1] Error: timeout exceeded\r\n");
            let mut rest = Vec::new();
            self.0.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"");
        }
    }

    /// The data clock's checks: one every eighth of the timeout, progress seen at a check
    /// counts from it, and the timeout comes between one timeout and one timeout and a step
    /// after the last piece.
    #[test]
    fn data_clock_checks_in_steps() {
        let timeout = Duration::from_secs(8);
        let step = Duration::from_secs(1);
        let zero = Instant::now();
        let at = |millis: u64| zero + Duration::from_millis(millis);
        let mut clock = DataClock::new(zero);
        clock.pieces = 5; // pieces of an earlier message do not count
        assert_eq!(clock.start(at(0), timeout), at(1000));
        // A piece at 0.5 s: seen by the check at 1 s, and counted from there.
        clock.pieces += 1;
        assert_eq!(clock.check(at(1000), timeout), Some(at(2000)));
        // Then nothing: a check every step, the last one shortened to end on the timeout...
        for second in 2..8 {
            let now = at(second * 1000);
            assert_eq!(clock.check(now, timeout), Some(now + step));
        }
        assert_eq!(clock.check(at(8500), timeout), Some(at(9000)));
        // ... which comes a whole timeout after the check that saw the last piece.
        assert_eq!(clock.check(at(9000), timeout), None);
        // A check that comes late (a busy thread) does not make up for the lost time.
        let mut clock = DataClock::new(zero);
        clock.start(at(0), timeout);
        assert_eq!(clock.check(at(20_000), timeout), None);
    }

    /// A silent client, one that stops in the middle of a command, and one that stops in the
    /// middle of a message are each answered `421` and closed; a client that keeps to the
    /// timeouts is served. (Each client sends its commands in one write, so only its own
    /// silence can be timed out.)
    #[test]
    fn timeouts_on_both_runtimes() {
        for (name, runtime) in runtimes() {
            let timeouts = Timeouts {
                command: SHORT,
                data: SHORT,
            };
            serve_while(runtime, timeouts, move |address| {
                let silent = Client::connect(address);
                let mut half = Client::connect(address);
                half.send(b"HELO half\r\nMAIL FROM:<a@");
                assert_eq!(half.line(), "250 [127.0.0.1]\r\n");
                let mut in_data = Client::connect(address);
                in_data
                    .send(b"HELO d\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n");
                for _ in 0..4 {
                    assert!(in_data.line().starts_with(['2', '3']), "{name}");
                }
                let mut served = Client::connect(address);
                served.send(b"HELO s\r\nQUIT\r\n");
                assert_eq!(served.line(), "250 [127.0.0.1]\r\n");
                assert_eq!(served.line(), "221 Bye\r\n");
                silent.times_out();
                half.times_out();
                in_data.times_out();
            });
        }
    }
}
