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

mod message;
mod session;
mod syntax;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{Address, Channel, Dispatcher, InterestScope};
use bytes::Bytes;
use tracing::{debug, info, warn};

use message::Message;
use session::{Action, Session};

const PROGRAM: &str = "smtp_server";
const BACKLOG: u32 = 128;

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
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // a listener: it always wants to accept
    }

    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        conn: Channel,
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
        let session = Session::new(address_literal(&local), peer.ip(), session::DATA_SIZE_LIMIT);
        let map = channel.map().expect("the server is in a map");
        // An error here concerns this connection only: returned, it would close the listener.
        if let Err(e) = map.add(conn, SmtpChannel::start(session)) {
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
struct SmtpChannel {
    session: Session,
    /// `QUIT` was answered, the server is stopping, or the client finished sending: read no
    /// more.
    closing: bool,
}

impl SmtpChannel {
    /// The channel's dispatcher, with the greeting queued (sent by the first write event).
    fn start(session: Session) -> AsyncChat<SmtpChannel> {
        let mut chat = Chat::new(Session::TERMINATOR);
        push(&mut chat, session.greeting());
        let handler = SmtpChannel {
            session,
            closing: false,
        };
        AsyncChat::with_chat(handler, chat)
    }

    fn act(&mut self, chat: &mut Chat, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply(reply) => push(chat, reply),
                Action::Deliver(message) => deliver(&message),
                Action::CloseWhenDone => {
                    self.closing = true;
                    chat.close_when_done();
                }
            }
        }
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
    debug!(from = %message.mail_from, to = ?message.rcpt_tos, bytes = message.data.len(), "message accepted");
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
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
        let actions = self.session.found_terminator();
        self.act(chat, actions);
        Ok(())
    }

    /// Stop reading after `QUIT`, and while the client does not read its replies.
    fn readable(&self, chat: &Chat, _: &Channel) -> bool {
        !self.closing && !chat.is_paused()
    }

    /// The client finished sending: answer what it sent, then close.
    fn handle_read_eof(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
        self.closing = true;
        chat.close_when_done();
        Ok(())
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
            chat.close_when_done();
            return Ok(());
        }
        channel.close();
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    support::serve(PROGRAM, "127.0.0.1:8025", SmtpServer::start).await
}
