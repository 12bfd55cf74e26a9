//! A debugging SMTP server in the manner of Python's `smtpd.DebuggingServer`: it speaks SMTP
//! (HELO, EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, HELP, VRFY, EXPN) with RFC 5321 reply
//! codes and prints every message it accepts to stdout instead of delivering it.
//!
//! ```text
//! cargo run --release --example smtp_server [ADDR]      # default 127.0.0.1:8025
//! python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", 8025).sendmail("a@b", ["c@d"], "Subject: hi\r\n\r\nhello\r\n")'
//! ```
//!
//! The pieces, as in smtpd:
//!
//! - [`SmtpServer`] (smtpd's `SMTPServer`): the listener; it starts a channel per connection.
//! - [`SmtpChannel`] (smtpd's `SMTPChannel` transport half): frames the input on `\r\n`,
//!   forwards the records to the session, pushes its replies, closes after `QUIT`.
//! - [`session::Session`] (`SMTPChannel`'s state machine): commands in, replies out; no I/O.
//! - [`message::Message`] (`DebuggingServer.process_message`): prints an accepted message
//!   between `---------- MESSAGE FOLLOWS ----------` and `------------ END MESSAGE ------------`.
//!
//! What differs from smtpd is listed in [`session`]'s docs; the greeting and `EHLO` name the
//! server by the address the client connected to (`[127.0.0.1]`), not by the host's name.

#[path = "../support/mod.rs"]
mod support;

mod message;
mod session;
mod syntax;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use asyncore::{Address, Channel, Dispatcher, SendBuffer};
use tracing::{debug, info, warn};

use message::Message;
use session::{Action, Session};

const PROGRAM: &str = "smtp_server";
const BACKLOG: u32 = 128;
const READ_SIZE: usize = 64 * 1024;

/// The listener: smtpd's `SMTPServer`.
struct SmtpServer;

impl SmtpServer {
    fn start(address: SocketAddr) -> io::Result<Address> {
        let mut channel = Channel::create_socket(support::family_of(&address))?;
        channel.set_reuse_addr()?;
        channel.bind(address)?;
        channel.listen(BACKLOG)?;
        let bound = channel.local_addr()?;
        asyncore::add(channel, SmtpServer)?;
        Ok(bound)
    }
}

impl Dispatcher for SmtpServer {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        conn: Channel,
        addr: Address,
    ) -> io::Result<()> {
        let (Some(peer), Ok(Some(local))) =
            (addr.as_inet(), conn.local_addr().map(|a| a.as_inet()))
        else {
            warn!(%addr, "not an IP connection; dropped");
            return Ok(());
        };
        info!(%peer, "incoming connection");
        let session = Session::new(address_literal(&local), peer.ip(), session::DATA_SIZE_LIMIT);
        let map = channel.map().expect("the server is in a map");
        map.add(conn, SmtpChannel::new(session))?;
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

/// One connection: the transport half of smtpd's `SMTPChannel`.
struct SmtpChannel {
    session: Session,
    output: SendBuffer,
    /// Input not yet handed to the session: at most the start of a terminator.
    pending: Vec<u8>,
    closing: bool,
}

impl SmtpChannel {
    fn new(session: Session) -> SmtpChannel {
        let mut channel = SmtpChannel {
            session,
            output: SendBuffer::new(),
            pending: Vec::new(),
            closing: false,
        };
        let greeting = channel.session.greeting();
        channel.push(greeting); // sent by the first write event
        channel
    }

    fn push(&mut self, reply: String) {
        let mut line = reply.into_bytes();
        line.extend_from_slice(b"\r\n");
        self.output.push(line);
    }

    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply(reply) => self.push(reply),
                Action::Deliver(message) => deliver(&message),
                Action::CloseWhenDone => self.closing = true,
            }
        }
    }

    /// asynchat's framing: hand complete records and their terminators to the session, keep
    /// only a possible start of the terminator.
    fn frame(&mut self, data: &[u8]) {
        let terminator = Session::TERMINATOR;
        let mut input: Vec<u8> = std::mem::take(&mut self.pending);
        input.extend_from_slice(data);
        let mut rest = &input[..];
        while !rest.is_empty() && !self.closing {
            match rest.windows(terminator.len()).position(|w| w == terminator) {
                Some(at) => {
                    self.session.collect_incoming_data(&rest[..at]);
                    let actions = self.session.found_terminator();
                    self.act(actions);
                    rest = &rest[at + terminator.len()..];
                }
                None => {
                    let keep = usize::from(rest.ends_with(&terminator[..1]));
                    self.session
                        .collect_incoming_data(&rest[..rest.len() - keep]);
                    self.pending = rest[rest.len() - keep..].to_vec();
                    break;
                }
            }
        }
    }

    fn flush(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.output.initiate_send(channel)?;
        if self.closing && self.output.is_empty() {
            channel.close();
        }
        Ok(())
    }
}

/// Prints an accepted message on stdout (the `listening on` line's stream), flushed at once.
fn deliver(message: &Message) {
    debug!(from = %message.mail_from, to = ?message.rcpt_tos, bytes = message.data.len(), "message accepted");
    let mut stdout = io::stdout().lock();
    if let Err(e) = message.write_to(&mut stdout).and_then(|()| stdout.flush()) {
        warn!("cannot print the message: {e}");
    }
}

impl Dispatcher for SmtpChannel {
    fn readable(&self, _: &Channel) -> bool {
        !self.closing && !self.output.is_paused()
    }

    fn writable(&self, channel: &Channel) -> bool {
        self.output.writable(channel)
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.flush(channel)
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(READ_SIZE)?;
        self.frame(&data);
        self.flush(channel)
    }

    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        // The client is done sending: send what is still owed, then close.
        self.closing = true;
        self.flush(channel)
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        let shutting_down = channel
            .map()
            .is_some_and(|map| map.shutdown_token().is_cancelled());
        if shutting_down && !self.closing {
            // The server is stopping (a signal): say so, as RFC 5321 asks, then close.
            let reply = self.session.shutting_down();
            self.push(reply);
            self.closing = true;
            return self.flush(channel);
        }
        channel.close();
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let address = match support::server_address(PROGRAM, "127.0.0.1:8025")
        .and_then(|a| support::parse_inet(&a))
    {
        Ok(address) => address,
        Err(e) => return support::fail(PROGRAM, e),
    };
    let bound = match SmtpServer::start(address) {
        Ok(bound) => bound,
        Err(e) => return support::fail(PROGRAM, e),
    };
    support::announce(&bound);
    let map = asyncore::socket_map();
    let served = map.run_until(support::signal()).await;
    let _ = io::stdout().flush();
    match served.and(map.shutdown(support::GRACE).await) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail(PROGRAM, e),
    }
}
