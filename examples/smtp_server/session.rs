//! One SMTP conversation, without the socket: smtpd's `SMTPChannel` as a state machine.
//!
//! The transport frames the input on `\r\n`. It hands the bytes of each record to
//! [`Session::collect_incoming_data`] (in as many pieces as they arrive) and calls
//! [`Session::found_terminator`] at each `\r\n`, which answers with [`Action`]s: replies to
//! push, a message to deliver, the end of the conversation. These are asynchat's two callbacks,
//! and `smtp_server`'s channel forwards them here unchanged.
//!
//! The session is in one of two states. In the *command* state each record is a command line;
//! in the *data* state (after `DATA` got `354`) each record is a line of the message, until a
//! line that is a lone `.`. After `QUIT` (or the server's `421`) it ignores whatever follows. Both states bound what they keep: a command line longer than its
//! limit and a message over [`Session::new`]'s size limit are counted but not stored, and
//! answered `500` and `552` at their end, so a client cannot make the server grow.
//!
//! # Differences from smtpd
//!
//! smtpd switches the terminator to `\r\n.\r\n` for the message. The `\r\n` before that dot
//! belongs to the line before it, but the one that ends the `DATA` command was already
//! consumed, so an empty message (`DATA\r\n.\r\n`) never ended. Reading the message line by
//! line, as RFC 5321 describes it, ends it. The other fixes:
//!
//! - after `552 Error: Too much mail data` the session is back in the command state (smtpd stayed
//!   in the data state and took the next commands as a second message);
//! - input smtpd raised on (`MAIL FROM:<`, `VRFY <`, `SIZE` without a value, bytes that are not
//!   UTF-8) gets `501` or `500` instead of a dropped connection;
//! - what a reply echoes from the client (an unknown command, a `VRFY` argument) is escaped, so
//!   a bare LF or a non-ASCII byte cannot end up raw in a reply;
//! - the `MAIL` line limit grown by `EHLO` is the session's own (smtpd's was shared by every
//!   connection);
//! - a repeated `HELO` or `EHLO` is answered `250` and resets the transaction as `RSET` does
//!   (RFC 5321 4.1.4; smtpd answered `503 Duplicate HELO/EHLO`), and the last greeting decides
//!   whether the extensions apply (`EHLO`: `SIZE`, parameters, the longer `MAIL` line);
//! - a client that lets a timeout pass gets [`Session::timed_out`]'s `421` (smtpd has no
//!   timeouts; the transport keeps the clock).
//!
//! # STARTTLS
//!
//! smtpd has no TLS. A session made with [`Starttls::Offered`] advertises `STARTTLS` in its
//! `EHLO` reply and implements it as RFC 3207 says: `220 Ready to start TLS` and
//! [`Action::StartTls`] for the transport; from then on the session is as it was right after the
//! greeting (the client's `EHLO` and any transaction are forgotten, so the client greets
//! again), and it neither advertises nor accepts `STARTTLS` again (`503`). `STARTTLS` during a
//! transaction is refused (`503`, as Postfix does), and one with an argument gets `501`. A
//! session without TLS does not know the command (`500`, as smtpd answers it).

use std::net::IpAddr;

use super::message::Message;
use super::syntax;

/// The longest command line (without its CRLF) that smtpd accepts, RFC 5321's 512 octets.
pub const COMMAND_SIZE_LIMIT: usize = 512;

/// What `MAIL` may add to [`COMMAND_SIZE_LIMIT`] once `SIZE` was advertised (` SIZE=` and 20
/// digits, smtpd's figure).
const SIZE_PARAMETER_ALLOWANCE: usize = 26;

/// smtpd's `DATA_SIZE_DEFAULT`: 32 MiB.
pub const DATA_SIZE_LIMIT: usize = 33_554_432;

/// The largest record buffer kept from one record to the next.
const REUSED_RECORD_CAPACITY: usize = 4096;

/// What the transport must do after a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Push this reply line (without its CRLF).
    Reply(String),
    /// A message was accepted: hand it on (the debugging server prints it).
    Deliver(Message),
    /// Close once every reply is sent (`close_when_done`): the client said `QUIT`.
    CloseWhenDone,
    /// Start TLS once the replies before it are on their way, in the clear: the client said
    /// `STARTTLS`. Nothing the client sent after the command may count as part of the
    /// protected conversation.
    StartTls,
}

/// Whether the session offers `STARTTLS` (RFC 3207), and how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starttls {
    /// The server has no certificate: the command is unknown.
    Unavailable,
    /// Advertised in the `EHLO` reply, and accepted.
    Offered,
    /// TLS is on: neither advertised nor accepted again.
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Command,
    Data,
    Quit,
}

/// The state of one conversation.
#[derive(Debug)]
pub struct Session {
    hostname: String,
    peer: IpAddr,
    data_size_limit: usize,
    state: State,
    starttls: Starttls,
    /// The `HELO`/`EHLO` argument; `None` until the client greeted.
    seen_greeting: Option<String>,
    extended_smtp: bool,
    mail_from: Option<String>,
    mail_options: Vec<String>,
    rcpt_tos: Vec<String>,
    /// The current record: its first bytes (at most `record_capacity`), and how long it is.
    record: Vec<u8>,
    record_len: usize,
    /// The message so far: unstuffed lines joined by `\n`, and its size on the wire (without
    /// the final CRLF, as smtpd counts). Lines stop being stored once the size is over the limit.
    data: Vec<u8>,
    data_len: usize,
    data_lines: usize,
}

impl Session {
    /// A session with a client at `peer`, which names this server `hostname` (in the greeting
    /// and the `EHLO` reply) and accepts messages of at most `data_size_limit` bytes (smtpd's
    /// 0 for "no limit" is not offered: a debugging server keeps messages in memory).
    /// `starttls` is [`Starttls::Offered`] when the server can start TLS.
    pub fn new(
        hostname: String,
        peer: IpAddr,
        data_size_limit: usize,
        starttls: Starttls,
    ) -> Session {
        Session {
            hostname,
            peer,
            data_size_limit,
            state: State::Command,
            starttls,
            seen_greeting: None,
            extended_smtp: false,
            mail_from: None,
            mail_options: Vec::new(),
            rcpt_tos: Vec::new(),
            record: Vec::new(),
            record_len: 0,
            data: Vec::new(),
            data_len: 0,
            data_lines: 0,
        }
    }

    /// The `220` greeting, pushed when the connection is accepted.
    pub fn greeting(&self) -> String {
        format!("220 {} asyncore debugging SMTP server", self.hostname)
    }

    /// The `421` that tells the client the server is going away (RFC 5321 3.8), after which
    /// nothing more is answered.
    pub fn shutting_down(&mut self) -> String {
        self.state = State::Quit;
        format!("421 {} Service closing transmission channel", self.hostname)
    }

    /// The `421` for a client that let a timeout pass (RFC 5321 4.5.3.2), after which nothing
    /// more is answered.
    ///
    /// Without an enhanced status code (Postfix says `421 4.4.2 ...`): the server does not
    /// advertise `ENHANCEDSTATUSCODES`, and RFC 2034 keeps such codes to servers that do.
    pub fn timed_out(&mut self) -> String {
        self.state = State::Quit;
        format!("421 {} Error: timeout exceeded", self.hostname)
    }

    /// Whether a message is being received (after `354`, before its final `.`).
    pub fn in_data(&self) -> bool {
        self.state == State::Data
    }

    /// The client's address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The record terminator: `\r\n` in both states (see the module docs).
    pub const TERMINATOR: &'static [u8] = b"\r\n";

    /// Part of the current record arrived (asynchat's `collect_incoming_data`).
    pub fn collect_incoming_data(&mut self, data: &[u8]) {
        if self.state == State::Quit {
            return;
        }
        self.record_len = self.record_len.saturating_add(data.len());
        let room = self.record_capacity().saturating_sub(self.record.len());
        self.record.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The current record is complete (asynchat's `found_terminator`).
    pub fn found_terminator(&mut self) -> Vec<Action> {
        let mut record = std::mem::take(&mut self.record);
        let len = std::mem::replace(&mut self.record_len, 0);
        let actions = match self.state {
            State::Command => self.command(&record, len),
            State::Data => self.data_line(&record, len),
            State::Quit => Vec::new(),
        };
        // Keep a line-sized buffer for the next record; give a big one back.
        if record.capacity() <= REUSED_RECORD_CAPACITY {
            record.clear();
            self.record = record;
        }
        actions
    }

    /// How many bytes of the current record are worth keeping: a little more than the longest
    /// command line allowed (so that "too long" is still seen), or what is left of the
    /// message's size limit (at least one byte, to recognise the final `.`).
    fn record_capacity(&self) -> usize {
        match self.state {
            State::Command => self.max_command_size_limit() + 1,
            State::Data => {
                let separator = if self.data_lines == 0 { 0 } else { 2 };
                self.data_size_limit
                    .saturating_sub(self.data_len.saturating_add(separator))
                    .max(1)
            }
            State::Quit => 0,
        }
    }

    fn max_command_size_limit(&self) -> usize {
        self.command_size_limit("MAIL")
    }

    /// The longest line allowed for `command`: 512 bytes, and more for `MAIL` after `EHLO`.
    fn command_size_limit(&self, command: &str) -> usize {
        if self.extended_smtp && command == "MAIL" {
            COMMAND_SIZE_LIMIT + SIZE_PARAMETER_ALLOWANCE
        } else {
            COMMAND_SIZE_LIMIT
        }
    }

    fn command(&mut self, line: &[u8], len: usize) -> Vec<Action> {
        if len == 0 {
            return reply("500 Error: bad syntax");
        }
        if len > self.max_command_size_limit() {
            return reply("500 Error: line too long");
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return reply("500 Error: command line is not valid UTF-8");
        };
        let (command, arg) = match line.split_once(' ') {
            None => (line.to_uppercase(), None),
            Some((command, arg)) => (command.to_uppercase(), Some(arg.trim())),
        };
        if len > self.command_size_limit(&command) {
            return reply("500 Error: line too long");
        }
        match command.as_str() {
            "HELO" => self.helo(arg),
            "EHLO" => self.ehlo(arg),
            "NOOP" => without_argument(arg, "501 Syntax: NOOP", "250 OK"),
            "QUIT" => {
                self.state = State::Quit;
                vec![Action::Reply("221 Bye".into()), Action::CloseWhenDone]
            }
            "RSET" => {
                if has_argument(arg) {
                    return reply("501 Syntax: RSET");
                }
                self.reset_transaction();
                reply("250 OK")
            }
            "HELP" => self.help(arg),
            "VRFY" => vrfy(arg),
            "EXPN" => reply("502 EXPN not implemented"),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data(arg),
            "STARTTLS" if self.starttls != Starttls::Unavailable => self.start_tls(arg),
            _ => reply(format!(
                "500 Error: command \"{}\" not recognized",
                command.escape_default()
            )),
        }
    }

    /// `HELO`, also after a greeting: RFC 5321 4.1.4 makes a repeated `HELO`/`EHLO` a reset
    /// (smtpd refused it with `503 Duplicate HELO/EHLO`). `HELO` turns the extensions off.
    fn helo(&mut self, arg: Option<&str>) -> Vec<Action> {
        let Some(host) = arg.filter(|a| !a.is_empty()) else {
            return reply("501 Syntax: HELO hostname");
        };
        self.greet(host, false);
        reply(format!("250 {}", self.hostname))
    }

    /// `EHLO`, also after a greeting (see [`helo`](Session::helo)).
    fn ehlo(&mut self, arg: Option<&str>) -> Vec<Action> {
        let Some(host) = arg.filter(|a| !a.is_empty()) else {
            return reply("501 Syntax: EHLO hostname");
        };
        self.greet(host, true);
        let mut lines = vec![format!("250-{}", self.hostname)];
        lines.push(format!("250-SIZE {}", self.data_size_limit));
        lines.push("250-8BITMIME".into()); // the message is passed on as bytes, unchanged
        if self.starttls == Starttls::Offered {
            lines.push("250-STARTTLS".into());
        }
        lines.push("250 HELP".into());
        lines.into_iter().map(Action::Reply).collect()
    }

    /// A greeting, first or not: a new session state, as after `RSET`, in the mode it asks for.
    fn greet(&mut self, host: &str, extended: bool) {
        self.reset_transaction();
        self.seen_greeting = Some(host.to_string());
        self.extended_smtp = extended;
    }

    /// `STARTTLS` (RFC 3207): the reply in the clear, then TLS, then the session as it was
    /// after the greeting: what the client said in the clear is forgotten.
    fn start_tls(&mut self, arg: Option<&str>) -> Vec<Action> {
        if has_argument(arg) {
            return reply("501 Syntax: STARTTLS");
        }
        if self.starttls == Starttls::Active {
            return reply("503 Error: TLS already active");
        }
        if self.mail_from.is_some() {
            return reply("503 Error: MAIL transaction in progress");
        }
        self.starttls = Starttls::Active;
        self.reset_transaction();
        self.seen_greeting = None;
        self.extended_smtp = false;
        vec![
            Action::Reply("220 Ready to start TLS".into()),
            Action::StartTls,
        ]
    }

    fn help(&self, arg: Option<&str>) -> Vec<Action> {
        const SUPPORTED: &str = "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY";
        let tls = self.starttls != Starttls::Unavailable;
        let supported = if tls {
            format!("{SUPPORTED} STARTTLS")
        } else {
            SUPPORTED.to_string()
        };
        let Some(topic) = arg.filter(|a| !a.is_empty()) else {
            return reply(format!("250 {supported}"));
        };
        let extension = if self.extended_smtp {
            " [SP <mail-parameters>]"
        } else {
            ""
        };
        let syntax = match topic.to_uppercase().as_str() {
            "EHLO" => "EHLO hostname".to_string(),
            "HELO" => "HELO hostname".to_string(),
            "MAIL" => format!("MAIL FROM: <address>{extension}"),
            "RCPT" => format!("RCPT TO: <address>{extension}"),
            "VRFY" => "VRFY <address>".to_string(),
            verb @ ("DATA" | "RSET" | "NOOP" | "QUIT") => verb.to_string(),
            "STARTTLS" if tls => "STARTTLS".to_string(),
            _ => return reply(format!("501 {supported}")),
        };
        reply(format!("250 Syntax: {syntax}"))
    }

    fn mail(&mut self, arg: Option<&str>) -> Vec<Action> {
        if self.seen_greeting.is_none() {
            return reply("503 Error: send HELO first");
        }
        let syntax_error = self.syntax_error("501 Syntax: MAIL FROM: <address>");
        let Some(arg) = arg else {
            return reply(syntax_error);
        };
        let Some((address, params)) = syntax::address(syntax::strip_keyword("FROM:", arg)) else {
            return reply(syntax_error);
        };
        if !self.extended_smtp && !params.trim().is_empty() {
            return reply(syntax_error);
        }
        if self.mail_from.is_some() {
            return reply("503 Error: nested MAIL command");
        }
        let options: Vec<String> = params.split_whitespace().map(str::to_uppercase).collect();
        let Some(mut params) = syntax::parameters(&options) else {
            return reply(syntax_error);
        };
        if let Some(body) = params.remove("BODY") {
            if !matches!(body.as_deref(), Some("7BIT" | "8BITMIME")) {
                return reply("501 Error: BODY can only be one of 7BIT, 8BITMIME");
            }
        }
        if let Some(size) = params.remove("SIZE") {
            let Some(size) = size.filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else {
                return reply(syntax_error);
            };
            // Too many digits for a usize is over any limit.
            let too_big = size
                .parse::<usize>()
                .map_or(true, |n| n > self.data_size_limit);
            if too_big {
                return reply("552 Error: message size exceeds fixed maximum message size");
            }
        }
        if !params.is_empty() {
            return reply("555 MAIL FROM parameters not recognized or not implemented");
        }
        self.mail_from = Some(address);
        self.mail_options = options;
        reply("250 OK")
    }

    fn rcpt(&mut self, arg: Option<&str>) -> Vec<Action> {
        if self.seen_greeting.is_none() {
            return reply("503 Error: send HELO first");
        }
        if self.mail_from.is_none() {
            return reply("503 Error: need MAIL command");
        }
        let syntax_error = self.syntax_error("501 Syntax: RCPT TO: <address>");
        let Some(arg) = arg else {
            return reply(syntax_error);
        };
        let Some((address, params)) = syntax::address(syntax::strip_keyword("TO:", arg)) else {
            return reply(syntax_error);
        };
        if !self.extended_smtp && !params.trim().is_empty() {
            return reply(syntax_error);
        }
        let options: Vec<String> = params.split_whitespace().map(str::to_uppercase).collect();
        match syntax::parameters(&options) {
            None => reply(syntax_error),
            Some(params) if !params.is_empty() => {
                reply("555 RCPT TO parameters not recognized or not implemented")
            }
            Some(_) => {
                self.rcpt_tos.push(address);
                reply("250 OK")
            }
        }
    }

    fn data(&mut self, arg: Option<&str>) -> Vec<Action> {
        if self.seen_greeting.is_none() {
            return reply("503 Error: send HELO first");
        }
        if self.rcpt_tos.is_empty() {
            return reply("503 Error: need RCPT command");
        }
        if has_argument(arg) {
            return reply("501 Syntax: DATA");
        }
        self.state = State::Data;
        reply("354 End data with <CR><LF>.<CR><LF>")
    }

    /// One line of the message (`stored` is its first bytes, `len` its length).
    fn data_line(&mut self, stored: &[u8], len: usize) -> Vec<Action> {
        if len == 1 && stored == b"." {
            return self.end_of_data();
        }
        let separator = if self.data_lines == 0 { 0 } else { 2 };
        self.data_lines += 1;
        self.data_len = self.data_len.saturating_add(separator + len);
        if self.data_len > self.data_size_limit {
            self.data = Vec::new(); // it will not be delivered: free it now
        } else {
            if separator > 0 {
                self.data.push(b'\n'); // smtpd joins the lines with LF
            }
            // Transparency (RFC 5321 4.5.2): a line that starts with a dot loses that dot.
            self.data
                .extend_from_slice(stored.strip_prefix(b".").unwrap_or(stored));
        }
        Vec::new()
    }

    fn end_of_data(&mut self) -> Vec<Action> {
        let too_big = self.data_len > self.data_size_limit;
        let message = Message {
            peer: self.peer,
            mail_from: self.mail_from.take().unwrap_or_default(),
            rcpt_tos: std::mem::take(&mut self.rcpt_tos),
            mail_options: std::mem::take(&mut self.mail_options),
            data: std::mem::take(&mut self.data),
        };
        self.reset_transaction();
        if too_big {
            return reply("552 Error: Too much mail data");
        }
        vec![Action::Deliver(message), Action::Reply("250 OK".into())]
    }

    /// Back to the command state with no transaction (smtpd's `_set_post_data_state`; its
    /// `_set_rset_state` also clears the collected record, which here is already empty).
    fn reset_transaction(&mut self) {
        self.state = State::Command;
        self.mail_from = None;
        self.mail_options.clear();
        self.rcpt_tos.clear();
        self.data = Vec::new();
        self.data_len = 0;
        self.data_lines = 0;
    }

    fn syntax_error(&self, text: &str) -> String {
        if self.extended_smtp {
            format!("{text} [SP <mail-parameters>]")
        } else {
            text.to_string()
        }
    }
}

fn vrfy(arg: Option<&str>) -> Vec<Action> {
    match arg.filter(|a| !a.is_empty()) {
        None => reply("501 Syntax: VRFY <address>"),
        Some(arg) if syntax::address(arg).is_some() => {
            reply("252 Cannot VRFY user, but will accept message and attempt delivery")
        }
        Some(arg) => reply(format!("502 Could not VRFY {}", arg.escape_default())),
    }
}

fn has_argument(arg: Option<&str>) -> bool {
    arg.is_some_and(|a| !a.is_empty())
}

fn without_argument(arg: Option<&str>, error: &str, ok: &str) -> Vec<Action> {
    reply(if has_argument(arg) { error } else { ok })
}

fn reply(text: impl Into<String>) -> Vec<Action> {
    vec![Action::Reply(text.into())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(
            "[127.0.0.1]".into(),
            "127.0.0.1".parse().unwrap(),
            32,
            Starttls::Unavailable,
        )
    }

    fn session_with_tls() -> Session {
        Session::new(
            "[127.0.0.1]".into(),
            "127.0.0.1".parse().unwrap(),
            32,
            Starttls::Offered,
        )
    }

    /// Sends one record (in two pieces, as a transport may) and returns the reply lines.
    fn line(session: &mut Session, record: &[u8]) -> Vec<String> {
        let (a, b) = record.split_at(record.len() / 2);
        session.collect_incoming_data(a);
        session.collect_incoming_data(b);
        session
            .found_terminator()
            .into_iter()
            .filter_map(|action| match action {
                Action::Reply(reply) => Some(reply),
                _ => None,
            })
            .collect()
    }

    fn last(session: &mut Session, record: &[u8]) -> String {
        line(session, record).pop().unwrap_or_default()
    }

    #[test]
    fn order_of_commands() {
        let mut s = session();
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b>"),
            "503 Error: send HELO first"
        );
        assert_eq!(last(&mut s, b"RCPT TO:<a@b>"), "503 Error: send HELO first");
        assert_eq!(last(&mut s, b"DATA"), "503 Error: send HELO first");
        assert_eq!(last(&mut s, b"helo client"), "250 [127.0.0.1]");
        assert_eq!(last(&mut s, b"HELO client"), "250 [127.0.0.1]");
        assert_eq!(
            last(&mut s, b"RCPT TO:<a@b>"),
            "503 Error: need MAIL command"
        );
        assert_eq!(last(&mut s, b"MAIL FROM:<a@b>"), "250 OK");
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b>"),
            "503 Error: nested MAIL command"
        );
        assert_eq!(last(&mut s, b"DATA"), "503 Error: need RCPT command");
        assert_eq!(last(&mut s, b"RCPT TO:<c@d>"), "250 OK");
        assert_eq!(last(&mut s, b"DATA x"), "501 Syntax: DATA");
        assert_eq!(last(&mut s, b"RSET"), "250 OK");
        assert_eq!(last(&mut s, b"DATA"), "503 Error: need RCPT command");
    }

    #[test]
    fn ehlo_advertises_size_and_8bitmime() {
        let mut s = session();
        assert_eq!(
            line(&mut s, b"EHLO client"),
            ["250-[127.0.0.1]", "250-SIZE 32", "250-8BITMIME", "250 HELP"]
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> SIZE=33"),
            "552 Error: message size exceeds fixed maximum message size"
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> SIZE"),
            "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> SIZE=99999999999999999999999"),
            "552 Error: message size exceeds fixed maximum message size"
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> BODY=BINARYMIME"),
            "501 Error: BODY can only be one of 7BIT, 8BITMIME"
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> HAM=green"),
            "555 MAIL FROM parameters not recognized or not implemented"
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> size=32 body=8bitmime"),
            "250 OK"
        );
        assert_eq!(
            last(&mut s, b"RCPT TO:<c@d> NOTIFY=NEVER"),
            "555 RCPT TO parameters not recognized or not implemented"
        );
    }

    #[test]
    fn parameters_need_ehlo() {
        let mut s = session();
        last(&mut s, b"HELO client");
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> SIZE=1"),
            "501 Syntax: MAIL FROM: <address>"
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<"),
            "501 Syntax: MAIL FROM: <address>"
        );
        assert_eq!(
            last(&mut s, b"MAIL from eggs@example"),
            "501 Syntax: MAIL FROM: <address>"
        );
        assert_eq!(last(&mut s, b"MAIL from:<>"), "250 OK");
    }

    #[test]
    fn bad_lines() {
        let mut s = session();
        assert_eq!(last(&mut s, b""), "500 Error: bad syntax");
        assert_eq!(
            last(&mut s, b"NOOP\nNOOP"),
            "500 Error: command \"NOOP\\nNOOP\" not recognized"
        );
        assert_eq!(
            last(&mut s, b"\xff\xfe"),
            "500 Error: command line is not valid UTF-8"
        );
        assert_eq!(last(&mut s, b"NOOP x"), "501 Syntax: NOOP");
        assert_eq!(last(&mut s, b"VRFY <"), "502 Could not VRFY <");
        assert_eq!(
            last(&mut s, b"VRFY a@b"),
            "252 Cannot VRFY user, but will accept message and attempt delivery"
        );
        assert_eq!(last(&mut s, &[b'x'; 513]), "500 Error: line too long");
        assert_eq!(
            last(&mut s, &[b'x'; 512]),
            format!("500 Error: command \"{}\" not recognized", "X".repeat(512))
        );
        // MAIL may be 26 bytes longer after EHLO, other commands may not.
        last(&mut s, b"EHLO client");
        let mail = format!("MAIL FROM:<{}@b>", "a".repeat(520));
        assert_eq!(last(&mut s, mail.as_bytes()), "250 OK");
        let rcpt = format!("RCPT TO:<{}@b>", "a".repeat(520));
        assert_eq!(last(&mut s, rcpt.as_bytes()), "500 Error: line too long");
        // The exact bounds: 538 bytes for MAIL, 512 for the rest.
        last(&mut s, b"RSET");
        let mail = |len: usize| format!("MAIL FROM:<{}@b>", "a".repeat(len - 14));
        assert_eq!(
            last(&mut s, mail(539).as_bytes()),
            "500 Error: line too long"
        );
        assert_eq!(last(&mut s, mail(538).as_bytes()), "250 OK");
        let rcpt = |len: usize| format!("RCPT TO:<{}@b>", "a".repeat(len - 12));
        assert_eq!(
            last(&mut s, rcpt(513).as_bytes()),
            "500 Error: line too long"
        );
        assert_eq!(last(&mut s, rcpt(512).as_bytes()), "250 OK");
    }

    #[test]
    fn data_is_unstuffed_and_delivered() {
        let mut s = session();
        for command in [
            "HELO h",
            "MAIL FROM:<a@b>",
            "RCPT TO:<c@d>",
            "RCPT TO:<e@f>",
        ] {
            assert!(last(&mut s, command.as_bytes()).starts_with("250"));
        }
        assert_eq!(last(&mut s, b"DATA"), "354 End data with <CR><LF>.<CR><LF>");
        for body_line in [&b"S: x"[..], b"", b"..dot", b"."] {
            s.collect_incoming_data(body_line);
            let actions = s.found_terminator();
            if body_line == b"." {
                assert_eq!(
                    actions,
                    [
                        Action::Deliver(Message {
                            peer: "127.0.0.1".parse().unwrap(),
                            mail_from: "a@b".into(),
                            rcpt_tos: vec!["c@d".into(), "e@f".into()],
                            mail_options: vec![],
                            data: b"S: x\n\n.dot".to_vec(),
                        }),
                        Action::Reply("250 OK".into())
                    ]
                );
            } else {
                assert_eq!(actions, []);
            }
        }
        // The greeting stays, the transaction does not.
        assert_eq!(
            last(&mut s, b"RCPT TO:<c@d>"),
            "503 Error: need MAIL command"
        );
    }

    #[test]
    fn empty_message_ends() {
        let mut s = session();
        for command in ["HELO h", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"] {
            last(&mut s, command.as_bytes());
        }
        let actions = s.found_terminator_after(b".");
        assert!(matches!(&actions[0], Action::Deliver(m) if m.data.is_empty()));
    }

    #[test]
    fn size_limit_is_exact_and_the_session_recovers() {
        for (size, accepted) in [(32, true), (33, false)] {
            let mut s = session();
            for command in ["HELO h", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"] {
                last(&mut s, command.as_bytes());
            }
            // Two lines: the CRLF between them counts, as smtpd counts it.
            let first = vec![b'x'; 10];
            let second = vec![b'y'; size - 12];
            assert!(s.found_terminator_after(&first).is_empty());
            assert!(s.found_terminator_after(&second).is_empty());
            let actions = s.found_terminator_after(b".");
            if accepted {
                assert!(matches!(&actions[0], Action::Deliver(m) if m.data.len() == size - 1));
            } else {
                assert_eq!(
                    actions,
                    [Action::Reply("552 Error: Too much mail data".into())]
                );
                assert!(s.record.capacity() <= 64 && s.data.capacity() <= 64);
            }
            assert_eq!(last(&mut s, b"NOOP"), "250 OK");
        }
    }

    #[test]
    fn greeting_again_resets_the_transaction_and_sets_the_mode() {
        let mut s = session();
        for command in ["HELO a", "MAIL FROM:<a@b>", "RCPT TO:<c@d>"] {
            assert!(last(&mut s, command.as_bytes()).starts_with("250"));
        }
        assert_eq!(line(&mut s, b"EHLO b").len(), 4);
        assert_eq!(last(&mut s, b"DATA"), "503 Error: need RCPT command");
        assert_eq!(last(&mut s, b"MAIL FROM:<a@b> SIZE=1"), "250 OK");
        assert_eq!(last(&mut s, b"HELO c"), "250 [127.0.0.1]");
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b> SIZE=1"),
            "501 Syntax: MAIL FROM: <address>"
        );
        assert_eq!(s.seen_greeting.as_deref(), Some("c"));
    }

    #[test]
    fn nothing_after_a_timeout() {
        let mut s = session();
        for command in ["HELO h", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"] {
            last(&mut s, command.as_bytes());
        }
        assert!(s.in_data());
        assert_eq!(s.timed_out(), "421 [127.0.0.1] Error: timeout exceeded");
        assert!(!s.in_data());
        assert_eq!(s.found_terminator_after(b"."), []);
        assert_eq!(s.found_terminator_after(b"NOOP"), []);
    }

    #[test]
    fn nothing_after_quit() {
        let mut s = session();
        assert_eq!(
            s.found_terminator_after(b"QUIT"),
            [Action::Reply("221 Bye".into()), Action::CloseWhenDone]
        );
        assert_eq!(s.found_terminator_after(b"NOOP"), []);
    }

    #[test]
    fn starttls_is_unknown_without_tls() {
        let mut s = session();
        assert_eq!(line(&mut s, b"EHLO client").len(), 4);
        assert_eq!(
            last(&mut s, b"STARTTLS"),
            "500 Error: command \"STARTTLS\" not recognized"
        );
        assert!(!last(&mut s, b"HELP").contains("STARTTLS"));
    }

    /// RFC 3207: advertised after EHLO; 220 and TLS; then the state after the greeting (the
    /// EHLO forgotten), and no second STARTTLS.
    #[test]
    fn starttls_resets_the_session_and_happens_once() {
        let mut s = session_with_tls();
        assert_eq!(
            line(&mut s, b"EHLO client"),
            [
                "250-[127.0.0.1]",
                "250-SIZE 32",
                "250-8BITMIME",
                "250-STARTTLS",
                "250 HELP"
            ]
        );
        assert_eq!(last(&mut s, b"STARTTLS now"), "501 Syntax: STARTTLS");
        assert_eq!(last(&mut s, b"MAIL FROM:<a@b>"), "250 OK");
        assert_eq!(
            last(&mut s, b"STARTTLS"),
            "503 Error: MAIL transaction in progress"
        );
        assert_eq!(last(&mut s, b"RSET"), "250 OK");
        assert_eq!(
            s.found_terminator_after(b"starttls"),
            [
                Action::Reply("220 Ready to start TLS".into()),
                Action::StartTls
            ]
        );
        assert_eq!(
            last(&mut s, b"MAIL FROM:<a@b>"),
            "503 Error: send HELO first"
        );
        assert_eq!(
            line(&mut s, b"EHLO client"),
            ["250-[127.0.0.1]", "250-SIZE 32", "250-8BITMIME", "250 HELP"]
        );
        assert_eq!(last(&mut s, b"STARTTLS"), "503 Error: TLS already active");
        assert_eq!(last(&mut s, b"HELP STARTTLS"), "250 Syntax: STARTTLS");
    }

    impl Session {
        fn found_terminator_after(&mut self, record: &[u8]) -> Vec<Action> {
            self.collect_incoming_data(record);
            self.found_terminator()
        }
    }
}
