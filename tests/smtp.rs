//! The `smtp_server` example (smtpd's `DebuggingServer`) as a black box: the built binary,
//! real loopback sockets, raw SMTP dialogues and Python's `smtplib` as clients; `STARTTLS`
//! with certificates made at test time.

mod tls_util;
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;

use asyncore::tls::rustls;
use util::programs::{assert_server_errors_are_one_line, example, run, Program};
use util::LIMIT;

const BEGIN: &str = "---------- MESSAGE FOLLOWS ----------";
const END: &str = "------------ END MESSAGE ------------";
/// The size limit the server advertises (smtpd's default, 32 MiB).
const SIZE_LIMIT: usize = 33_554_432;

fn smtp_server(address: &str) -> Program {
    smtp_server_with(&[address])
}

/// The server started with `args` (options and the address).
fn smtp_server_with(args: &[&str]) -> Program {
    let mut command = Command::new(example("smtp_server"));
    command.args(args);
    Program::start(command)
}

/// The reply to a timed-out connection.
const TIMEOUT_REPLY: &str = "421 [127.0.0.1] Error: timeout exceeded";
/// The reply to an accepted `DATA`.
const DATA_REPLY: &str = "354 End data with <CR><LF>.<CR><LF>";

/// The whole reply to `EHLO` from a client on 127.0.0.1, with `extra` extensions (e.g.
/// `STARTTLS`) between `8BITMIME` and `HELP`.
fn ehlo_reply(extra: &[&str]) -> Vec<String> {
    let mut lines = vec![
        "250-[127.0.0.1]".to_string(),
        format!("250-SIZE {SIZE_LIMIT}"),
        "250-8BITMIME".into(),
    ];
    lines.extend(extra.iter().map(|extension| format!("250-{extension}")));
    lines.push("250 HELP".into());
    lines
}

/// A raw SMTP client: send lines, read replies (multi-line replies whole); over TLS after
/// [`Client::start_tls`].
struct Client<S = TcpStream> {
    reader: BufReader<S>,
}

impl Client {
    /// Connects and checks the `220` greeting.
    fn connect(address: SocketAddr) -> Client {
        let mut client = Client::connect_quietly(address);
        let greeting = client.reply();
        assert!(greeting[0].starts_with("220 "), "{greeting:?}");
        client
    }

    fn connect_quietly(address: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&address, LIMIT).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// The TLS handshake, as the client, trusting the test CA: the server must have answered
    /// `220` to `STARTTLS` and sent nothing after it.
    fn start_tls(self, certs: &tls_util::Certs) -> Client<TlsStream> {
        assert!(
            self.reader.buffer().is_empty(),
            "plaintext after the 220: {:?}",
            String::from_utf8_lossy(self.reader.buffer())
        );
        let name = "localhost".try_into().unwrap();
        let session = rustls::ClientConnection::new(certs.client_config(), name).unwrap();
        let mut stream = rustls::StreamOwned::new(session, self.reader.into_inner());
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Client {
            reader: BufReader::new(stream),
        }
    }
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl<S: Read + Write> Client<S> {
    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// Every line of the next reply, without CRLFs (`250-a`, `250-b`, `250 c`).
    fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(
                line.ends_with(b"\r\n"),
                "reply line not ended by CRLF: {line:?} after {lines:?}"
            );
            line.truncate(line.len() - 2);
            let line = String::from_utf8(line).expect("an ASCII reply");
            assert!(
                line.len() >= 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "{line:?}"
            );
            let last = line.as_bytes()[3] == b' ';
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Sends `command` with its CRLF; returns the last line of the reply.
    fn command(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes());
        self.reply().pop().unwrap()
    }

    /// `MAIL FROM:<a@b>`, `RCPT TO:<c@d>` and `DATA`, each accepted: the message may follow.
    fn start_message(&mut self) {
        assert_eq!(self.command("MAIL FROM:<a@b>"), "250 OK");
        assert_eq!(self.command("RCPT TO:<c@d>"), "250 OK");
        assert_eq!(self.command("DATA"), DATA_REPLY);
    }

    /// Reads until the server closes; returns what came before.
    fn rest(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).unwrap();
        rest
    }
}

/// The lines printed for the next message, between (without) the markers.
fn next_message(server: &Program) -> Vec<String> {
    assert_eq!(server.next_line(), BEGIN);
    let mut lines = Vec::new();
    loop {
        let line = server.next_line();
        if line == END {
            return lines;
        }
        lines.push(line);
    }
}

/// A deterministic byte stream (xorshift), so a failing run can be replayed.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// The server's peak resident memory in KiB (Linux's VmHWM).
fn peak_memory_kib(server: &Program) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A whole ESMTP conversation: EHLO's extensions, a transaction with two recipients and a
/// dot-stuffed body, the message on stdout with smtpd's framing (the message alone: the MAIL
/// parameter `SIZE=120` is not printed in the block), then RSET, NOOP, VRFY, HELP and QUIT,
/// after which the server closes the connection.
#[test]
fn scripted_session() {
    let server = smtp_server("127.0.0.1:0");
    let mut client = Client::connect(server.address);
    client.send(b"EHLO client.example\r\n");
    assert_eq!(client.reply(), ehlo_reply(&[]));
    assert_eq!(
        client.command("MAIL FROM:<alice@example.org> SIZE=120"),
        "250 OK"
    );
    assert_eq!(client.command("RCPT TO:<bob@example.org>"), "250 OK");
    assert_eq!(client.command("rcpt to: <carol@example.org>"), "250 OK");
    assert_eq!(client.command("DATA"), DATA_REPLY);
    client.send(b"From: alice\r\nSubject: dots\r\n\r\n..leading dot\r\n...two\r\n.\r\n");
    assert_eq!(client.reply(), ["250 OK"]);
    assert_eq!(
        next_message(&server),
        [
            "From: alice",
            "Subject: dots",
            "X-Peer: 127.0.0.1",
            "",
            ".leading dot",
            "..two",
        ]
    );
    assert_eq!(client.command("MAIL FROM:<a@b>"), "250 OK");
    assert_eq!(client.command("RSET"), "250 OK");
    assert_eq!(
        client.command("RCPT TO:<c@d>"),
        "503 Error: need MAIL command"
    );
    assert_eq!(client.command("noop"), "250 OK");
    assert_eq!(
        client.command("VRFY bob@example.org"),
        "252 Cannot VRFY user, but will accept message and attempt delivery"
    );
    assert_eq!(
        client.command("HELP MAIL"),
        "250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
    );
    assert_eq!(client.command("QUIT"), "221 Bye");
    assert_eq!(client.rest(), b"", "the server closes after 221");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(stderr, "");
}

/// Bad commands and bad order get RFC 5321's codes, in smtpd's words (test_smtpd's dialogues),
/// and the conversation goes on.
#[test]
fn bad_commands_and_bad_order() {
    let server = smtp_server("127.0.0.1:0");
    let mut client = Client::connect(server.address);
    let long_mail = format!("MAIL FROM:<{}@example.org>", "a".repeat(510));
    let dialogue = [
        ("", "500 Error: bad syntax"),
        ("FROB", "500 Error: command \"FROB\" not recognized"),
        ("MAIL FROM:<a@b>", "503 Error: send HELO first"),
        ("RCPT TO:<a@b>", "503 Error: send HELO first"),
        ("DATA", "503 Error: send HELO first"),
        ("HELO", "501 Syntax: HELO hostname"),
        ("EHLO", "501 Syntax: EHLO hostname"),
        ("HELO client", "250 [127.0.0.1]"),
        ("HELO again", "250 [127.0.0.1]"), // RFC 5321 4.1.4 (smtpd: 503 Duplicate HELO/EHLO)
        (&long_mail, "500 Error: line too long"), // 26 more bytes for MAIL only after EHLO
        ("NOOP now", "501 Syntax: NOOP"),
        ("RSET now", "501 Syntax: RSET"),
        ("RCPT TO:<a@b>", "503 Error: need MAIL command"),
        ("DATA", "503 Error: need RCPT command"),
        ("MAIL from eggs@example", "501 Syntax: MAIL FROM: <address>"),
        ("MAIL FROM:", "501 Syntax: MAIL FROM: <address>"),
        ("MAIL FROM:<", "501 Syntax: MAIL FROM: <address>"),
        (
            "MAIL FROM:<a@b> SIZE=10",
            "501 Syntax: MAIL FROM: <address>",
        ),
        ("MAIL FROM:<eggs@example>", "250 OK"),
        ("MAIL FROM:<spam@example>", "503 Error: nested MAIL command"),
        ("DATA", "503 Error: need RCPT command"),
        ("RCPT to eggs@example", "501 Syntax: RCPT TO: <address>"),
        ("RCPT TO:<ham@example>", "250 OK"),
        ("DATA now", "501 Syntax: DATA"),
        ("VRFY", "501 Syntax: VRFY <address>"),
        ("VRFY <", "502 Could not VRFY <"),
        ("EXPN list", "502 EXPN not implemented"),
        (
            "HELP FROB",
            "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY",
        ),
        ("NOOP", "250 OK"),
    ];
    for (command, expected) in dialogue {
        assert_eq!(client.command(command), expected, "after {command:?}");
    }
    // In extended mode the syntax replies mention parameters, and parameters are checked.
    let mut client = Client::connect(server.address);
    client.send(b"EHLO client\r\n");
    client.reply();
    for (command, expected) in [
        (
            "MAIL FROM:<a@b> SIZE",
            "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        ),
        (
            "MAIL FROM:<a@b> SIZE=x",
            "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        ),
        (
            "MAIL FROM:<a@b> SIZE=33554433",
            "552 Error: message size exceeds fixed maximum message size",
        ),
        (
            "MAIL FROM:<a@b> BODY=BINARYMIME",
            "501 Error: BODY can only be one of 7BIT, 8BITMIME",
        ),
        (
            "MAIL FROM:<a@b> HAM=green",
            "555 MAIL FROM parameters not recognized or not implemented",
        ),
        (&long_mail, "250 OK"),
        (
            "RCPT TO:<c@d> NOTIFY=NEVER",
            "555 RCPT TO parameters not recognized or not implemented",
        ),
    ] {
        assert_eq!(client.command(command), expected, "after {command:?}");
    }
}

/// Commands pipelined in one write, and commands cut into single bytes, are answered in order;
/// after QUIT nothing more is read or answered.
#[test]
fn pipelining_and_fragments() {
    let server = smtp_server("127.0.0.1:0");
    let mut client = Client::connect(server.address);
    client.send(b"HELO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nNOOP\r\nRSET\r\n");
    for expected in ["250 [127.0.0.1]", "250 OK", "250 OK", "250 OK", "250 OK"] {
        assert_eq!(client.reply(), [expected]);
    }
    for byte in b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n" {
        client.send(&[*byte]);
    }
    for expected in ["250 OK", "250 OK", DATA_REPLY, "250 OK"] {
        assert_eq!(client.reply(), [expected]);
    }
    assert_eq!(next_message(&server), ["hi"]);
    client.send(b"QUIT\r\nNOOP\r\nHELO again\r\n");
    assert_eq!(client.reply(), ["221 Bye"]);
    assert_eq!(client.rest(), b"");

    // A client that half-closes after its commands still gets every reply, then the close.
    let mut client = Client::connect(server.address);
    client.send(b"HELO a\r\nNOOP\r\nVRFY a@b\r\n");
    client.reader.get_ref().shutdown(Shutdown::Write).unwrap();
    let replies = String::from_utf8(client.rest()).unwrap();
    assert_eq!(
        replies,
        "250 [127.0.0.1]\r\n250 OK\r\n252 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    );
}

/// Messages smtpd could not take: an empty `DATA\r\n.\r\n` (smtpd waits for ever), a body of
/// exactly the size limit (accepted), one byte over (552, and the session is back in the
/// command state, where smtpd took the next commands as a second message).
#[test]
fn empty_and_limit_sized_messages() {
    let server = smtp_server("127.0.0.1:0");
    let mut client = Client::connect(server.address);
    client.command("HELO client");
    client.start_message();
    client.send(b".\r\n");
    assert_eq!(client.reply(), ["250 OK"]);
    assert_eq!(next_message(&server), Vec::<String>::new());

    for (size, accepted) in [(SIZE_LIMIT, true), (SIZE_LIMIT + 1, false)] {
        client.start_message();
        // 1 KiB lines (CRLF included) and a last line that makes up the size.
        let mut body = Vec::with_capacity(size + 5);
        while body.len() + 1024 < size {
            body.extend_from_slice(&[b'x'; 1022]);
            body.extend_from_slice(b"\r\n");
        }
        body.resize(size, b'y');
        body.extend_from_slice(b"\r\n.\r\n");
        client.send(&body);
        if accepted {
            assert_eq!(client.reply(), ["250 OK"]);
            let lines = next_message(&server);
            let printed: usize = lines.iter().map(|l| l.len() + 2).sum::<usize>() - 2;
            assert_eq!(printed, size, "the message as sent, CRLFs for LFs");
        } else {
            assert_eq!(client.reply(), ["552 Error: Too much mail data"]);
        }
        assert_eq!(client.command("NOOP"), "250 OK");
    }
    // Only the accepted message was printed.
    assert_eq!(client.command("QUIT"), "221 Bye");
    let (status, _) = server.stop("TERM");
    assert!(status.success());
}

/// Random binary, NULs, bytes that are not UTF-8, a 1 MiB line without CRLF and a 100 MiB
/// message: replies, never a crash, memory bounded by the size limit, and the next client is
/// served.
#[test]
fn garbage_never_crashes_the_server() {
    let server = smtp_server("127.0.0.1:0");

    let mut client = Client::connect(server.address);
    client.send(&noise(256 * 1024, 0x5eed));
    client.send(b"\r\n\0\0\0\r\n\xff\xfe\r\n");
    drop(client); // whatever it was answered, the server must go on

    let mut client = Client::connect(server.address);
    assert_eq!(
        client.command("\0\0\0"),
        "500 Error: command \"\\u{0}\\u{0}\\u{0}\" not recognized"
    );
    client.send(b"\xff\xfe\xfd\r\n");
    assert_eq!(
        client.reply(),
        ["500 Error: command line is not valid UTF-8"]
    );
    assert_eq!(
        client.command("NOOP\nNOOP"),
        "500 Error: command \"NOOP\\nNOOP\" not recognized",
        "a bare LF is not a line end, and is not echoed raw"
    );
    client.send(&vec![b'A'; 1 << 20]);
    assert_eq!(client.command(""), "500 Error: line too long");
    assert_eq!(client.command("HELO client"), "250 [127.0.0.1]");

    // A message 3 times the limit, in 64 KiB lines.
    client.start_message();
    let mut line = noise(64 * 1024, 7)
        .into_iter()
        .map(|b| if b == b'\r' || b == b'\n' { b'.' } else { b })
        .collect::<Vec<u8>>();
    line.extend_from_slice(b"\r\n");
    for _ in 0..(3 * SIZE_LIMIT / line.len()) {
        client.send(&line);
    }
    client.send(b".\r\n");
    assert_eq!(client.reply(), ["552 Error: Too much mail data"]);
    let peak = peak_memory_kib(&server);
    assert!(
        peak < 2 * SIZE_LIMIT as u64 / 1024,
        "the server kept the oversized message: peak {peak} KiB"
    );
    assert_eq!(client.command("QUIT"), "221 Bye");

    let mut next = Client::connect(server.address);
    assert_eq!(next.command("HELO next"), "250 [127.0.0.1]");
    let (status, stderr) = server.stop("INT");
    assert!(status.success(), "{status:?} {stderr}");
}

/// Each connection has its own limits (smtpd's MAIL limit grown by EHLO was shared by all).
#[test]
fn sessions_are_independent() {
    let server = smtp_server("127.0.0.1:0");
    let mut extended = Client::connect(server.address);
    let mut plain = Client::connect(server.address);
    extended.send(b"EHLO a\r\n");
    extended.reply();
    assert_eq!(plain.command("HELO b"), "250 [127.0.0.1]");
    let long_mail = format!("MAIL FROM:<{}@example.org>", "a".repeat(510));
    assert_eq!(plain.command(&long_mail), "500 Error: line too long");
    assert_eq!(extended.command(&long_mail), "250 OK");
    assert_eq!(plain.command("MAIL FROM:<a@b>"), "250 OK");
}

/// Over IPv6 the server names itself with an IPv6 address literal.
#[test]
fn ipv6() {
    let server = smtp_server("[::1]:0");
    let mut client = Client::connect_quietly(server.address);
    assert_eq!(
        client.reply()[0],
        "220 [IPv6:::1] asyncore debugging SMTP server"
    );
    assert_eq!(client.command("HELO client"), "250 [IPv6:::1]");
}

/// SIGTERM and SIGINT, with a client in the middle of a message: the client gets `421` and
/// the connection closed, the server exits 0 with nothing on stderr.
#[test]
fn signals_exit_zero() {
    for signal in ["TERM", "INT"] {
        let server = smtp_server("127.0.0.1:0");
        let mut client = Client::connect(server.address);
        client.command("HELO client");
        client.command("MAIL FROM:<a@b>");
        client.command("RCPT TO:<c@d>");
        assert_eq!(client.command("DATA"), DATA_REPLY);
        let (status, stderr) = server.stop(signal);
        assert!(status.success(), "{signal}: {status:?} {stderr}");
        assert_eq!(stderr, "");
        assert_eq!(
            client.reply(),
            ["421 [127.0.0.1] Service closing transmission channel"]
        );
        assert_eq!(client.rest(), b"");
    }
}

/// Bad arguments and unusable addresses: one line on stderr, a failing status, no stdout.
#[test]
fn errors_are_one_line() {
    assert_server_errors_are_one_line("smtp_server");
}

/// Whether `python3` with `smtplib` is on the PATH.
fn python_smtplib() -> bool {
    Command::new("python3")
        .args(["-c", "import smtplib"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Python's smtplib as the client: `sendmail` after EHLO (with SIZE), a body with leading dots,
/// 8-bit text and CRLFs, shown byte for byte after unstuffing, and nothing else in the block
/// (smtpd adds `mail options: ['SIZE=N']`); `with SMTP(...)` needs QUIT's 221; an oversized
/// message is refused at MAIL with 552; an empty message works.
#[test]
fn smtplib_client() {
    if !python_smtplib() {
        eprintln!("skipped: python3 with smtplib is not available");
        return;
    }
    let server = smtp_server("127.0.0.1:0");
    let script = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
body = b"From: alice@example.org\r\nSubject: smtplib\r\n\r\n.starts with a dot\r\n..two dots\r\nna\xc3\xafve\r\n.\r\nlast"
with smtplib.SMTP(host, int(port), timeout=10) as smtp:
    assert smtp.sendmail("alice@example.org", ["bob@example.org", "carol@example.org"], body) == {}
    assert smtp.sendmail("alice@example.org", ["bob@example.org"], b"") == {}
    try:
        smtp.sendmail("alice@example.org", ["bob@example.org"], b"x" * 33554433)
        sys.exit("an oversized message was accepted")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 552, e
"#;
    let mut command = Command::new("python3");
    command.args(["-c", script, &server.address.to_string()]);
    let (status, _, stderr) = run(command);
    assert!(status.success(), "{stderr}");
    // smtplib sent `SIZE=N` with MAIL; the block is still the message and nothing else.
    assert_eq!(
        next_message(&server),
        [
            "From: alice@example.org",
            "Subject: smtplib",
            "X-Peer: 127.0.0.1",
            "",
            ".starts with a dot",
            "..two dots",
            "naïve",
            ".",
            "last",
        ]
    );
    assert_eq!(next_message(&server), Vec::<String>::new());
    let (status, stderr) = server.stop("TERM");
    assert!(status.success() && stderr.is_empty(), "{stderr}");
}

/// A client that pipelines commands and does not read the replies: the server stops reading
/// once its queued replies pass the chat's high water mark, so the client's writes stall long
/// before all is sent and the server's memory stays small; every command sent is answered once
/// the client reads.
///
/// The stall is seen as a write that makes no progress for a second. A server that does not
/// stop reading never stalls the writer, and the test fails; a slow machine can only make the
/// stall come earlier, which the test accepts.
#[test]
fn replies_back_up_and_reading_stops() {
    const COMMANDS: usize = 20_000_000; // 120 MB of NOOPs, 160 MB of replies
    let server = smtp_server("127.0.0.1:0");
    let mut client = Client::connect(server.address);
    client.command("HELO client");
    let mut writer = client.reader.get_ref().try_clone().unwrap();
    writer
        .set_write_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let chunk = b"NOOP\r\n".repeat(10_000);
    let mut written = 0;
    while written < COMMANDS * 6 {
        match writer.write(&chunk[..chunk.len().min(COMMANDS * 6 - written)]) {
            Ok(n) => written += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        written < COMMANDS * 6,
        "the server read {written} bytes of commands without the replies being read"
    );
    // A partial last command is completed, so that every command sent gets its reply.
    writer.set_write_timeout(Some(LIMIT)).unwrap();
    let reader = std::thread::spawn(move || client.rest());
    if written % 6 != 0 {
        writer.write_all(&b"NOOP\r\n"[written % 6..]).unwrap();
    }
    writer.shutdown(Shutdown::Write).unwrap();
    let replies = reader.join().unwrap();
    let commands = written.div_ceil(6);
    assert_eq!(replies.len(), commands * 8);
    assert!(replies.chunks(8).all(|reply| reply == b"250 OK\r\n"));
    let peak = peak_memory_kib(&server);
    assert!(peak < 32 * 1024, "peak {peak} KiB");
}

/// Many clients at once, each sending its own message in small writes: every message is
/// printed whole, none interleaved with another.
#[test]
fn concurrent_clients_get_whole_messages() {
    const CLIENTS: usize = 32;
    let server = smtp_server("127.0.0.1:0");
    let address = server.address;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut client = Client::connect(address);
                assert_eq!(
                    client.command(&format!("HELO client{i}")),
                    "250 [127.0.0.1]"
                );
                assert_eq!(
                    client.command(&format!("MAIL FROM:<c{i}@example.org>")),
                    "250 OK"
                );
                assert_eq!(client.command("RCPT TO:<sink@example.org>"), "250 OK");
                assert_eq!(client.command("DATA"), DATA_REPLY);
                let mut body = format!("Subject: {i}\r\n\r\n");
                for line in 0..50 {
                    body.push_str(&format!("client {i} line {line}\r\n"));
                }
                body.push_str(".\r\n");
                for piece in body.as_bytes().chunks(37) {
                    client.send(piece);
                }
                assert_eq!(client.reply(), ["250 OK"]);
                assert_eq!(client.command("QUIT"), "221 Bye");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..CLIENTS {
        let lines = next_message(&server);
        let i: usize = lines[0].strip_prefix("Subject: ").unwrap().parse().unwrap();
        let mut expected = vec![
            format!("Subject: {i}"),
            "X-Peer: 127.0.0.1".into(),
            String::new(),
        ];
        expected.extend((0..50).map(|line| format!("client {i} line {line}")));
        assert_eq!(lines, expected);
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..CLIENTS).collect::<Vec<_>>());
}

/// Runs `script` with `python3 -c`, the server's address as its argument; fails the test with
/// the script's stderr if it fails.
fn smtplib_script(server: &Program, script: &str) {
    let mut command = Command::new("python3");
    command.args(["-c", script, &server.address.to_string()]);
    let (status, _, stderr) = run(command);
    assert!(status.success(), "{stderr}");
}

/// RFC 5321 4.1.4: a client may greet again, and a repeated `EHLO` or `HELO` is answered `250`
/// and resets the transaction as `RSET` does (smtpd answers `503 Duplicate HELO/EHLO`). The
/// new greeting decides the mode: `EHLO` turns the extensions on, `HELO` off.
#[test]
fn repeated_greeting_resets_the_transaction() {
    let server = smtp_server("127.0.0.1:0");
    let mut client = Client::connect(server.address);
    let long_mail = format!("MAIL FROM:<{}@example.org>", "a".repeat(510));
    assert_eq!(client.command("HELO one"), "250 [127.0.0.1]");
    assert_eq!(client.command("MAIL FROM:<a@b>"), "250 OK");
    assert_eq!(client.command("RCPT TO:<c@d>"), "250 OK");
    client.send(b"EHLO two\r\n");
    assert_eq!(client.reply(), ehlo_reply(&[]));
    assert_eq!(client.command("DATA"), "503 Error: need RCPT command");
    assert_eq!(
        client.command("RCPT TO:<c@d>"),
        "503 Error: need MAIL command"
    );
    // Extended now: parameters and the longer MAIL line.
    assert_eq!(client.command("MAIL FROM:<a@b> SIZE=10"), "250 OK");
    assert_eq!(client.command("RCPT TO:<c@d>"), "250 OK");
    assert_eq!(client.command("EHLO three"), "250 HELP");
    assert_eq!(client.command(&long_mail), "250 OK");
    assert_eq!(client.command("RCPT TO:<c@d>"), "250 OK");
    // HELO: a transaction reset and no more extensions.
    assert_eq!(client.command("HELO four"), "250 [127.0.0.1]");
    assert_eq!(
        client.command("RCPT TO:<c@d>"),
        "503 Error: need MAIL command"
    );
    assert_eq!(
        client.command("MAIL FROM:<a@b> SIZE=10"),
        "501 Syntax: MAIL FROM: <address>"
    );
    assert_eq!(client.command(&long_mail), "500 Error: line too long");
    // A whole transaction after all that, then a greeting after a delivered message.
    client.start_message();
    client.send(b"EHLO is just a line here\r\n.\r\n");
    assert_eq!(client.reply(), ["250 OK"]);
    assert_eq!(next_message(&server), ["EHLO is just a line here"]);
    assert_eq!(client.command("EHLO five"), "250 HELP");
    assert_eq!(client.command("HELO"), "501 Syntax: HELO hostname");
    assert_eq!(client.command("QUIT"), "221 Bye");
    assert_eq!(client.rest(), b"");
}

/// The same with smtplib, which greets again on its own (after STARTTLS, or when asked):
/// `ehlo()` and `helo()` after a greeting get 250, a repeated `ehlo()` in the middle of a
/// transaction cancels it (DATA is refused), and `sendmail` works afterwards.
#[test]
fn smtplib_greets_again() {
    if !python_smtplib() {
        eprintln!("skipped: python3 with smtplib is not available");
        return;
    }
    let server = smtp_server("127.0.0.1:0");
    let script = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=10) as smtp:
    assert smtp.ehlo()[0] == 250
    code, reply = smtp.ehlo()
    assert code == 250, (code, reply)
    assert smtp.does_esmtp and smtp.has_extn("size"), smtp.esmtp_features
    assert smtp.helo()[0] == 250
    assert smtp.ehlo()[0] == 250
    assert smtp.mail("alice@example.org")[0] == 250
    assert smtp.rcpt("bob@example.org")[0] == 250
    assert smtp.ehlo()[0] == 250
    try:
        smtp.data(b"Subject: lost\r\n\r\nnever delivered\r\n")
        sys.exit("DATA was accepted after a repeated EHLO")
    except smtplib.SMTPDataError as e:
        assert e.smtp_code == 503, e
    assert smtp.sendmail("alice@example.org", ["bob@example.org"], b"Subject: again\r\n\r\nhello\r\n") == {}
"#;
    smtplib_script(&server, script);
    assert_eq!(
        next_message(&server),
        ["Subject: again", "X-Peer: 127.0.0.1", "", "hello"]
    );
    let (status, stderr) = server.stop("TERM");
    assert!(status.success() && stderr.is_empty(), "{stderr}");
}

/// The MAIL parameters stay out of the printed block; they are in the `message accepted` log
/// event on stderr when `RUST_LOG` asks for it.
#[test]
fn mail_parameters_go_to_the_log() {
    if !python_smtplib() {
        eprintln!("skipped: python3 with smtplib is not available");
        return;
    }
    let mut command = Command::new(example("smtp_server"));
    command
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "smtp_server=info");
    let server = Program::start(command);
    let script = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=10) as smtp:
    assert smtp.sendmail("alice@example.org", ["bob@example.org"], b"Subject: s\r\n\r\nbody\r\n", mail_options=["BODY=8BITMIME"]) == {}
"#;
    smtplib_script(&server, script);
    assert_eq!(
        next_message(&server),
        ["Subject: s", "X-Peer: 127.0.0.1", "", "body"]
    );
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{stderr}");
    let logged = stderr
        .lines()
        .find(|line| line.contains("message accepted"))
        .unwrap_or_else(|| panic!("no `message accepted` event: {stderr}"));
    assert!(
        logged.contains("SIZE=") && logged.contains("BODY=8BITMIME"),
        "{logged}"
    );
}

/// The command timeout (RFC 5321 4.5.3.2.7): a client that says nothing after the greeting, or
/// sends half a command and stops, gets `421` and the connection is closed. Bytes of an
/// unfinished command do not restart the clock: the client has the timeout for a whole command.
#[test]
fn command_timeout() {
    let server = smtp_server_with(&["--command-timeout", "1", "127.0.0.1:0"]);
    let mut idle = Client::connect(server.address);
    let mut half = Client::connect(server.address);
    assert_eq!(half.command("HELO half"), "250 [127.0.0.1]");
    half.send(b"MAIL FROM:<a@");
    assert_eq!(idle.reply(), [TIMEOUT_REPLY]);
    assert_eq!(idle.rest(), b"");
    assert_eq!(half.reply(), [TIMEOUT_REPLY]);
    assert_eq!(half.rest(), b"");
    // The server goes on.
    let mut next = Client::connect(server.address);
    assert_eq!(next.command("HELO next"), "250 [127.0.0.1]");
    assert_eq!(next.command("QUIT"), "221 Bye");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success() && stderr.is_empty(), "{stderr}");
}

/// A client that keeps sending one endless command line, a byte every 20 ms (slowloris
/// trickling): bytes of an unfinished line do not restart the command timeout, so it gets `421`
/// all the same, then the end of the connection, also when it goes on sending.
#[test]
fn a_trickling_client_gets_its_421() {
    use std::time::{Duration, Instant};
    let server = smtp_server_with(&["--command-timeout", "1", "127.0.0.1:0"]);
    let mut client = Client::connect(server.address);
    let stream = client.reader.get_ref().try_clone().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let mut byte = [0; 1];
    // A byte every 20 ms, until the reply is there.
    while stream.peek(&mut byte).is_err() {
        assert!(
            Instant::now() < deadline,
            "no reply to the trickling client"
        );
        client.send(b"x");
    }
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(client.reply(), [TIMEOUT_REPLY]);
    // Then the end of the connection. A byte the client trickled after the server closed makes
    // the server's kernel answer with a reset, which may arrive in place of the end of file:
    // either is the end, but nothing else may come.
    let mut rest = Vec::new();
    match client.reader.read_to_end(&mut rest) {
        Ok(_) => assert_eq!(rest, b""),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// The data timeout: in the middle of a message the client has the data timeout (not the
/// command timeout) for each piece of the message. Silence gets `421` and a close, and nothing
/// is printed for the unfinished message.
#[test]
fn data_timeout() {
    let server = smtp_server_with(&[
        "--command-timeout",
        "60",
        "--data-timeout",
        "1",
        "127.0.0.1:0",
    ]);
    let mut client = Client::connect(server.address);
    assert_eq!(client.command("HELO client"), "250 [127.0.0.1]");
    client.start_message();
    client.send(b"Subject: unfinished\r\n\r\nhalf a li");
    assert_eq!(client.reply(), [TIMEOUT_REPLY]);
    assert_eq!(client.rest(), b"");
    // The next message is the next one printed.
    let mut client = Client::connect(server.address);
    client.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n");
    let replies = String::from_utf8(client.rest()).unwrap();
    assert!(replies.ends_with("250 OK\r\n221 Bye\r\n"), "{replies}");
    assert_eq!(next_message(&server), ["second"]);
}

/// Each timeout applies in its own state: a message may take longer than the command timeout
/// and the data timeout, as long as its pieces (not only its lines) come within the data
/// timeout of each other, and after the message the command timeout is back.
///
/// The pauses here are what is tested (a pause past the command timeout, pieces well within
/// the data timeout), not waits for the server; a slow machine lengthens neither timeout.
#[test]
fn each_state_has_its_timeout() {
    use std::time::Duration;
    let server = smtp_server_with(&[
        "--command-timeout",
        "1",
        "--data-timeout",
        "4",
        "127.0.0.1:0",
    ]);
    let mut client = Client::connect(server.address);
    assert_eq!(client.command("HELO client"), "250 [127.0.0.1]");
    client.start_message();
    std::thread::sleep(Duration::from_secs(2)); // twice the command timeout
                                                // One line that takes 5 s to arrive (longer than the data timeout), in pieces 0.2 s
                                                // apart: the pieces, not only whole lines, keep the message alive.
    client.send(b"Subject: slow\r\n\r\n");
    let line: String = (0..25).map(|i| format!("piece {i:02}, ")).collect();
    for piece in line.as_bytes().chunks(10) {
        client.send(piece);
        std::thread::sleep(Duration::from_millis(200));
    }
    client.send(b"\r\n.\r\n");
    assert_eq!(client.reply(), ["250 OK"]);
    assert_eq!(
        next_message(&server),
        ["Subject: slow", "X-Peer: 127.0.0.1", "", &line]
    );
    // Back in the command state: the command timeout.
    assert_eq!(client.reply(), [TIMEOUT_REPLY]);
    assert_eq!(client.rest(), b"");
}

/// A client that sends commands and never reads the replies: the server stops reading, the
/// command timeout passes, and the `421` it queues cannot be sent either. The server then
/// closes the connection anyway (after at most the command timeout again), so such a client
/// cannot hold a connection for ever.
#[test]
fn a_client_that_never_reads_is_closed() {
    use std::io::ErrorKind;
    use std::time::{Duration, Instant};
    let server = smtp_server_with(&["--command-timeout", "1", "127.0.0.1:0"]);
    // A small receive buffer, so that the replies back up after little input.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&server.address.into(), LIMIT)
        .unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut client = Client {
        reader: BufReader::new(stream),
    };
    assert!(client.reply()[0].starts_with("220 "));
    client.command("HELO client");
    let mut writer = client.reader.get_ref().try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = b"NOOP\r\n".repeat(10_000);
    // Write until the server stops reading (a write makes no progress), then on until it
    // closes the connection.
    let mut deadline = Instant::now() + LIMIT;
    let mut stalled = false;
    let closed = loop {
        assert!(
            Instant::now() < deadline,
            "{}",
            if stalled {
                "the server kept a connection that does not read"
            } else {
                "the server did not stop reading"
            }
        );
        match writer.write(&chunk) {
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !stalled {
                    stalled = true;
                    deadline = Instant::now() + LIMIT;
                }
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            closed.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{closed}"
    );
    let mut next = Client::connect(server.address);
    assert_eq!(next.command("NOOP"), "250 OK");
}

/// Slowloris: 500 connections that each send half a command and stop. While they hang, a
/// normal smtplib client is served; when their command timeout is up, each gets `421` and is
/// closed, and the server goes on.
///
/// The hanging connections must not be answered before their timeout: that is checked when
/// the smtplib client finished within the timeout (it does unless the machine is very slow;
/// otherwise the check is skipped with a note, as it would prove nothing).
#[test]
fn slowloris() {
    use std::time::{Duration, Instant};
    const HANGING: usize = 500;
    const TIMEOUT: Duration = Duration::from_secs(4);
    if !python_smtplib() {
        eprintln!("skipped: python3 with smtplib is not available");
        return;
    }
    let server = smtp_server_with(&["--command-timeout", "4", "127.0.0.1:0"]);
    // No deadline of theirs can pass before TIMEOUT after this instant.
    let started = Instant::now();
    let mut hanging: Vec<Client> = (0..HANGING)
        .map(|i| {
            let mut client = Client::connect(server.address);
            client.send(format!("MAIL FROM:<slow{i}@").as_bytes());
            client
        })
        .collect();
    let script = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=10) as smtp:
    assert smtp.sendmail("alice@example.org", ["bob@example.org"], b"Subject: served\r\n\r\nwhile they hang\r\n") == {}
"#;
    smtplib_script(&server, script);
    assert_eq!(
        next_message(&server),
        [
            "Subject: served",
            "X-Peer: 127.0.0.1",
            "",
            "while they hang"
        ]
    );
    // Nothing for the hanging connections yet (if this is still before their timeout).
    let answered_early = hanging
        .iter()
        .filter(|client| {
            let stream = client.reader.get_ref();
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0; 1];
            let answered = !matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            stream.set_nonblocking(false).unwrap();
            answered
        })
        .count();
    if started.elapsed() < TIMEOUT {
        assert_eq!(
            answered_early, 0,
            "hanging connections answered before their timeout"
        );
    } else {
        eprintln!(
            "note: the smtplib client took longer than the timeout; early replies not checked"
        );
    }
    // Then every one of them gets 421 and the close.
    for client in hanging.drain(..) {
        let mut client = client;
        assert_eq!(client.reply(), [TIMEOUT_REPLY]);
        assert_eq!(client.rest(), b"");
    }
    let mut next = Client::connect(server.address);
    assert_eq!(next.command("HELO after"), "250 [127.0.0.1]");
    drop(next);
    let (status, stderr) = server.stop("TERM");
    assert!(status.success() && stderr.is_empty(), "{stderr}");
}

/// Options: an unknown one, a missing or bad value, a timeout out of range: one stderr line.
#[test]
fn bad_options_are_one_line() {
    for (args, expect) in [
        (&["--frob"][..], "unknown option \"--frob\""),
        (&["-x", "127.0.0.1:0"], "unknown option \"-x\""),
        (&["--command-timeout"], "--command-timeout needs a value"),
        (
            &["--data-timeout", "soon"],
            "invalid --data-timeout \"soon\"",
        ),
        (
            &["--command-timeout", "0"],
            "invalid --command-timeout \"0\"",
        ),
        (
            &["--command-timeout=-1"],
            "invalid --command-timeout \"-1\"",
        ),
        (&["--data-timeout", "NaN"], "invalid --data-timeout \"NaN\""),
        (&["--data-timeout", "1e9"], "invalid --data-timeout \"1e9\""),
        (
            &["127.0.0.1:0", "--data-timeout", "1", "extra"],
            "unexpected argument",
        ),
    ] {
        util::programs::assert_fails_in_one_line("smtp_server", args, expect);
    }
}

/// `smtp_server` with `--tls-cert` and `--tls-key` from `certs`, on a free port, logging its
/// warnings and errors (a test that stops it sees them in its stderr).
fn smtp_server_with_tls(certs: &tls_util::Certs) -> Program {
    let mut command = Command::new(example("smtp_server"));
    command.env("RUST_LOG", "warn").args([
        "--tls-cert",
        &certs.path(&certs.cert),
        "--tls-key",
        &certs.path(&certs.key),
        "127.0.0.1:0",
    ]);
    Program::start(command)
}

/// Without a certificate the server does not offer STARTTLS and does not know the command
/// (smtpd's answer to any unknown command).
#[test]
fn starttls_needs_a_certificate() {
    let server = smtp_server("127.0.0.1:0");
    let mut client = Client::connect(server.address);
    client.send(b"EHLO client\r\n");
    assert!(!client.reply().iter().any(|line| line.contains("STARTTLS")));
    assert_eq!(
        client.command("STARTTLS"),
        "500 Error: command \"STARTTLS\" not recognized"
    );
    assert_eq!(client.command("QUIT"), "221 Bye");
}

/// RFC 3207 with a raw client: STARTTLS is advertised, `220`, the handshake, then the session
/// starts again from the greeting (MAIL before EHLO is out of order), STARTTLS is no longer
/// advertised nor accepted, and a message sent over TLS is printed as any other.
#[test]
fn starttls_starts_the_session_again() {
    let certs = tls_util::Certs::new();
    let server = smtp_server_with_tls(&certs);
    let mut client = Client::connect(server.address);
    client.send(b"EHLO client\r\n");
    assert_eq!(client.reply(), ehlo_reply(&["STARTTLS"]));
    assert_eq!(client.command("MAIL FROM:<a@b>"), "250 OK");
    assert_eq!(
        client.command("STARTTLS"),
        "503 Error: MAIL transaction in progress"
    );
    assert_eq!(client.command("RSET"), "250 OK");
    assert_eq!(client.command("STARTTLS x"), "501 Syntax: STARTTLS");
    assert_eq!(client.command("STARTTLS"), "220 Ready to start TLS");
    let mut client = client.start_tls(&certs);
    assert_eq!(
        client.command("MAIL FROM:<a@b>"),
        "503 Error: send HELO first"
    );
    client.send(b"EHLO client\r\n");
    assert!(!client.reply().iter().any(|line| line.contains("STARTTLS")));
    assert_eq!(client.command("STARTTLS"), "503 Error: TLS already active");
    for command in ["MAIL FROM:<a@b>", "RCPT TO:<c@d>"] {
        assert_eq!(client.command(command), "250 OK");
    }
    assert!(client.command("DATA").starts_with("354 "));
    assert_eq!(
        client.command("Subject: sealed\r\n\r\nover TLS\r\n."),
        "250 OK"
    );
    assert_eq!(
        next_message(&server),
        ["Subject: sealed", "X-Peer: 127.0.0.1", "", "over TLS"]
    );
    assert_eq!(client.command("QUIT"), "221 Bye");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success() && stderr.is_empty(), "{stderr}");
}

/// The command injection of CVE-2011-0411: a command pipelined behind STARTTLS, in the same
/// packet, is not executed. It is discarded: after the handshake the MAIL it carried is not in
/// effect (RCPT needs one), and no reply to it came, in the clear or protected.
#[test]
fn a_command_pipelined_after_starttls_is_not_executed() {
    let certs = tls_util::Certs::new();
    let server = smtp_server_with_tls(&certs);
    let mut client = Client::connect(server.address);
    client.send(b"EHLO client\r\nSTARTTLS\r\nMAIL FROM:<x@y>\r\n");
    assert_eq!(client.reply().len(), 5);
    assert_eq!(client.reply(), ["220 Ready to start TLS"]);
    let mut client = client.start_tls(&certs);
    assert_eq!(client.command("EHLO client"), "250 HELP");
    assert_eq!(
        client.command("RCPT TO:<c@d>"),
        "503 Error: need MAIL command"
    );
    assert_eq!(client.command("QUIT"), "221 Bye");
    assert!(client.rest().is_empty(), "nothing after 221");
}

/// Plaintext that comes after the `220`, in a packet of its own, reaches the TLS session,
/// which finds no handshake in it: the connection closes, and no reply to the command comes.
#[test]
fn a_command_sent_in_the_clear_after_the_220_closes_the_connection() {
    let certs = tls_util::Certs::new();
    let server = smtp_server_with_tls(&certs);
    let mut client = Client::connect(server.address);
    client.send(b"EHLO client\r\n");
    client.reply();
    assert_eq!(client.command("STARTTLS"), "220 Ready to start TLS");
    client.send(b"MAIL FROM:<x@y>\r\n");
    let mut rest = Vec::new();
    // The server may send an alert, then closes (a reset is a close too).
    let _ = client.reader.read_to_end(&mut rest);
    assert!(
        !rest.windows(3).any(|w| w == b"250"),
        "a reply in the clear: {rest:?}"
    );
    // The server goes on serving others.
    let mut other = Client::connect(server.address);
    assert_eq!(other.command("QUIT"), "221 Bye");
}

/// Python's `smtplib` as the client: `starttls()` (which checks the certificate against the
/// test CA and the name 127.0.0.1), EHLO again (smtplib forgets the extensions), `sendmail`;
/// the message is printed as any other. Then a second connection ends its TLS session by
/// closing the socket without close_notify, which the server takes as the end of the
/// conversation, without a warning or an error in its log.
#[test]
fn smtplib_starttls_then_sendmail() {
    if !python_smtplib() {
        eprintln!("skipped: python3 with smtplib is not available");
        return;
    }
    let certs = tls_util::Certs::new();
    let server = smtp_server_with_tls(&certs);
    let script = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
context = ssl.create_default_context(cafile=sys.argv[2])
with smtplib.SMTP(host, int(port), timeout=10) as smtp:
    smtp.ehlo("client")
    assert smtp.has_extn("starttls"), smtp.esmtp_features
    code, _ = smtp.starttls(context=context)
    assert code == 220, code
    assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3"), smtp.sock.version()
    smtp.ehlo("client")
    assert not smtp.has_extn("starttls"), smtp.esmtp_features
    assert smtp.sendmail("alice@example.org", ["bob@example.org"], b"Subject: smtplib over TLS\r\n\r\n.dot\r\nbody\r\n") == {}
smtp = smtplib.SMTP(host, int(port), timeout=10)
smtp.starttls(context=context)
smtp.ehlo("client")
smtp.sock.close()
"#;
    let mut command = Command::new("python3");
    command.args([
        "-c",
        script,
        &server.address.to_string(),
        &certs.path(&certs.ca),
    ]);
    let (status, _, stderr) = run(command);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        next_message(&server),
        [
            "Subject: smtplib over TLS",
            "X-Peer: 127.0.0.1",
            "",
            ".dot",
            "body"
        ]
    );
    let (status, stderr) = server.stop("TERM");
    assert!(status.success() && stderr.is_empty(), "{stderr}");
}

/// The TLS options' errors are one line each.
#[test]
fn tls_options_are_checked() {
    let certs = tls_util::Certs::new();
    let (cert, key) = (certs.path(&certs.cert), certs.path(&certs.key));
    let missing = certs.path(&certs.dir.join("missing.pem"));
    for (args, expect) in [
        (
            vec!["--tls-cert", cert.as_str(), "127.0.0.1:0"],
            "--tls-cert and --tls-key go together",
        ),
        (vec!["--tls-key"], "option --tls-key needs a value (FILE)"),
        (
            vec!["--tls-cert", missing.as_str(), "--tls-key", key.as_str()],
            "missing.pem",
        ),
        (
            vec!["--tls-cert", key.as_str(), "--tls-key", key.as_str()],
            "no certificate found",
        ),
    ] {
        util::programs::assert_fails_in_one_line("smtp_server", &args, expect);
    }
}
