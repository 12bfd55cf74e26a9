//! STARTTLS: upgrading an asynchat connection in the middle of its conversation. The reply
//! queued before the upgrade goes out in the clear and in order (even when it is larger than
//! the socket's buffers); plaintext sent after the upgrade command, in the same read or
//! later, is refused and never reaches the handler; both the server and the client side of a
//! chat upgrade; Python's `smtplib.starttls()` and a hand-made `ssl` client are real peers.
//! Each scenario runs on the current-thread and the multi-thread runtime.

mod tls_util;
mod util;

use std::io;
use std::process::Command;
use std::sync::Arc;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::tls::{rustls, ClientConfig, ServerConfig};
use asyncore::{Address, Channel, ChannelId, Dispatcher, Family, Map};
use tls_util::Certs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::{block_on, block_on_multi, Log};

fn on_both_runtimes<F: std::future::Future<Output = ()>>(test: impl Fn() -> F) {
    block_on(test());
    block_on_multi(test());
}

/// A small SMTP-like line server: a greeting, `EHLO` (which offers STARTTLS in the clear
/// only), `STARTTLS`, `BIG` (2 MiB of output queued right before an upgrade), `NOOP`, `QUIT`,
/// and any other line echoed in lower case. What it learnt in the clear (the EHLO name) is
/// forgotten at the upgrade, as RFC 3207 asks.
struct Smtpish {
    config: Arc<ServerConfig>,
    log: Log,
    helo: Option<String>,
}

const BIG: usize = 2 << 20;

impl ChatHandler for Smtpish {
    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let line = String::from_utf8_lossy(&chat.take_line()).into_owned();
        self.log
            .push(format!("line {line:?} tls={}", channel.is_tls()));
        let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" => {
                self.helo = Some(rest.to_string());
                if channel.is_tls() {
                    chat.push_line("250 localhost");
                } else {
                    chat.push_line("250-localhost");
                    chat.push_line("250 STARTTLS");
                }
            }
            "STARTTLS" | "BIG" if !channel.is_tls() => {
                if verb == "BIG" {
                    chat.push(vec![b'x'; BIG]);
                }
                chat.push_line("220 Ready to start TLS");
                chat.start_tls_server(channel, self.config.clone())?;
                self.helo = None;
            }
            "NOOP" => chat.push_line("250 OK"),
            "QUIT" => {
                chat.push_line("221 Bye");
                chat.close_when_done();
            }
            _ => chat.push_line(format!("250 {}", line.to_lowercase())),
        }
        Ok(())
    }

    fn handle_tls_ready(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        self.log.push(format!(
            "tls ready helo={:?} version={:?}",
            self.helo,
            channel.tls_connection().and_then(|c| c.protocol_version())
        ));
        Ok(())
    }

    fn handle_close(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        self.log.push("close");
        channel.close();
        Ok(())
    }

    fn handle_error(&mut self, _: &mut Chat, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("error {error}"));
        channel.close();
    }
}

/// Accepts in the clear; each connection is an `Smtpish` chat that greets first.
struct Listener {
    config: Arc<ServerConfig>,
    log: Log,
    once: bool,
}

impl Dispatcher for Listener {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        conn: Channel,
        _: Address,
    ) -> io::Result<()> {
        let mut chat = Chat::new(b"\r\n");
        chat.push_line("220 localhost ESMTP test");
        let handler = Smtpish {
            config: self.config.clone(),
            log: self.log.clone(),
            helo: None,
        };
        channel
            .map()
            .unwrap()
            .add(conn, AsyncChat::with_chat(handler, chat))?;
        if self.once {
            channel.close();
        }
        Ok(())
    }
}

fn serve(map: &Map, certs: &Certs, log: &Log, once: bool) -> (ChannelId, std::net::SocketAddr) {
    let (channel, address) = util::listener(Family::Inet).unwrap();
    let id = map
        .add(
            channel,
            Listener {
                config: certs.server_config(),
                log: log.clone(),
                once,
            },
        )
        .unwrap();
    (id, address.as_inet().unwrap())
}

/// Reads one line, byte by byte, so that nothing after it is taken from the socket.
async fn line<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut line = Vec::new();
    let mut byte = [0; 1];
    while line.last() != Some(&b'\n') {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

async fn tls_connect(
    tcp: tokio::net::TcpStream,
    config: Arc<ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The upgrade is exact: the reply is the last plaintext byte, the handshake follows, and
/// every later line is protected; the EHLO name learnt in the clear is forgotten; QUIT's
/// reply comes before a clean close (close_notify).
#[test]
fn starttls_upgrades_at_the_exact_byte() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (_, address) = serve(&map, &certs, &log, true);
        let config = certs.client_config();
        let client = async move {
            let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            assert_eq!(line(&mut tcp).await, "220 localhost ESMTP test\r\n");
            tcp.write_all(b"EHLO me\r\n").await.unwrap();
            assert_eq!(line(&mut tcp).await, "250-localhost\r\n");
            assert_eq!(line(&mut tcp).await, "250 STARTTLS\r\n");
            tcp.write_all(b"STARTTLS\r\n").await.unwrap();
            assert_eq!(line(&mut tcp).await, "220 Ready to start TLS\r\n");
            let mut tls = tls_connect(tcp, config).await.unwrap();
            tls.write_all(b"EHLO me-again\r\nSecret Line\r\nQUIT\r\n")
                .await
                .unwrap();
            let mut rest = String::new();
            tls.read_to_string(&mut rest).await.unwrap(); // a clean end: close_notify
            rest
        };
        let (served, rest) = tokio::join!(map.run(), client);
        served.unwrap();
        assert_eq!(rest, "250 localhost\r\n250 secret line\r\n221 Bye\r\n");
        assert_eq!(
            log.entries(),
            [
                "line \"EHLO me\" tls=false",
                "line \"STARTTLS\" tls=false",
                "tls ready helo=None version=Some(TLSv1_3)",
                "line \"EHLO me-again\" tls=true",
                "line \"Secret Line\" tls=true",
                "line \"QUIT\" tls=true",
                "close",
            ]
        );
    });
}

/// Output queued before the upgrade goes out first and in order, though it is larger than the
/// socket's buffers: 2 MiB of plaintext, the reply, then TLS.
#[test]
fn output_queued_before_the_upgrade_goes_out_first_in_the_clear() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (_, address) = serve(&map, &certs, &log, true);
        let config = certs.client_config();
        let client = async move {
            let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            assert_eq!(line(&mut tcp).await, "220 localhost ESMTP test\r\n");
            tcp.write_all(b"BIG\r\n").await.unwrap();
            let mut big = vec![0; BIG];
            tcp.read_exact(&mut big).await.unwrap();
            assert!(big.iter().all(|&b| b == b'x'));
            assert_eq!(line(&mut tcp).await, "220 Ready to start TLS\r\n");
            let mut tls = tls_connect(tcp, config).await.unwrap();
            tls.write_all(b"NOOP\r\nQUIT\r\n").await.unwrap();
            let mut rest = String::new();
            tls.read_to_string(&mut rest).await.unwrap();
            rest
        };
        let (served, rest) = tokio::join!(map.run(), client);
        served.unwrap();
        assert_eq!(rest, "250 OK\r\n221 Bye\r\n");
        assert!(
            log.entries().iter().all(|e| !e.starts_with("error")),
            "{:?}",
            log.entries()
        );
    });
}

/// The command injection: a command sent in the clear right after STARTTLS, in the same
/// segment, is refused with an error that says so; the handler never sees it as a line.
#[test]
fn plaintext_after_starttls_in_the_same_read_is_refused() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (_, address) = serve(&map, &certs, &log, true);
        let client = async move {
            let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            assert_eq!(line(&mut tcp).await, "220 localhost ESMTP test\r\n");
            tcp.write_all(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n")
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest).await; // the server closes
        };
        let (served, ()) = tokio::join!(map.run(), client);
        served.unwrap();
        let entries = log.entries();
        assert!(
            !entries.iter().any(|e| e.contains("MAIL")),
            "the injected command reached the handler: {entries:?}"
        );
        assert!(
            !entries.iter().any(|e| e.starts_with("tls ready")),
            "{entries:?}"
        );
        let error = entries
            .iter()
            .find(|e| e.starts_with("error"))
            .expect("an error");
        assert!(
            error.contains("start_tls: 30 bytes arrived in the clear after the upgrade command, before the TLS handshake; refused"),
            "{entries:?}"
        );
    });
}

/// Plaintext sent after the reply, where the ClientHello belongs, fails the handshake: it
/// is not TLS, and the handler never sees it as a line.
#[test]
fn plaintext_after_the_reply_fails_the_handshake() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (_, address) = serve(&map, &certs, &log, true);
        let client = async move {
            let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            assert_eq!(line(&mut tcp).await, "220 localhost ESMTP test\r\n");
            tcp.write_all(b"STARTTLS\r\n").await.unwrap();
            assert_eq!(line(&mut tcp).await, "220 Ready to start TLS\r\n");
            tcp.write_all(b"MAIL FROM:<evil@example.com>\r\n")
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest).await;
        };
        let (served, ()) = tokio::join!(map.run(), client);
        served.unwrap();
        let entries = log.entries();
        assert!(!entries.iter().any(|e| e.contains("MAIL")), "{entries:?}");
        let error = entries
            .iter()
            .find(|e| e.starts_with("error"))
            .expect("an error");
        assert!(
            error.contains("TLS handshake failed: the peer sent something that is not TLS"),
            "{entries:?}"
        );
    });
}

/// A chat client upgrades too: it sends STARTTLS, and on the reply starts TLS as the client;
/// its first protected line is pushed from `handle_tls_ready`.
#[test]
fn a_chat_client_upgrades_on_the_reply() {
    struct Client {
        config: Arc<ClientConfig>,
        log: Log,
        listener: ChannelId,
    }
    impl ChatHandler for Client {
        fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
            let line = String::from_utf8_lossy(&chat.take_line()).into_owned();
            self.log
                .push(format!("client got {line:?} tls={}", channel.is_tls()));
            if line.starts_with("220 localhost") {
                chat.push_line("STARTTLS");
            } else if line.starts_with("220 Ready") {
                chat.start_tls_client(channel, self.config.clone(), "localhost")?;
            } else if line.starts_with("250 hello") {
                chat.push_line("QUIT");
            }
            Ok(())
        }
        fn handle_tls_ready(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
            assert_eq!(channel.peer_certificates().map(<[_]>::len), Some(1));
            chat.push_line("HELLO");
            Ok(())
        }
        fn handle_close(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
            self.log.push("client close");
            channel.map().unwrap().close_channel(self.listener);
            channel.close();
            Ok(())
        }
        fn handle_error(&mut self, _: &mut Chat, channel: &mut Channel, error: io::Error) {
            self.log.push(format!("client error {error}"));
            channel.map().unwrap().close_channel(self.listener);
            channel.close();
        }
    }
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (listener, address) = serve(&map, &certs, &log, false);
        let mut channel = Channel::create_socket(Family::Inet).unwrap();
        channel.connect(address).unwrap();
        let client = Client {
            config: certs.client_config(),
            log: log.clone(),
            listener,
        };
        map.add(channel, AsyncChat::new(client, b"\r\n")).unwrap();
        map.run().await.unwrap();
        let client: Vec<String> = log
            .entries()
            .into_iter()
            .filter(|e| e.starts_with("client"))
            .collect();
        assert_eq!(
            client,
            [
                "client got \"220 localhost ESMTP test\" tls=false",
                "client got \"220 Ready to start TLS\" tls=false",
                "client got \"250 hello\" tls=true",
                "client got \"221 Bye\" tls=true",
                "client close",
            ]
        );
        assert!(
            log.contains("line \"HELLO\" tls=true"),
            "{:?}",
            log.entries()
        );
    });
}

/// Python's own `smtplib` upgrades with `starttls()`, says EHLO again in TLS, and quits;
/// then a hand-made `ssl` client does the same and reads the clean close.
#[test]
fn python_smtplib_and_ssl_upgrade_with_starttls() {
    let python = r#"
import smtplib, socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
with smtplib.SMTP(host, port, timeout=10) as smtp:
    smtp.ehlo("py")
    assert smtp.has_extn("starttls"), smtp.esmtp_features
    code, _ = smtp.starttls(context=ctx)
    assert code == 220, code
    smtp.ehlo("py-tls")
    assert not smtp.has_extn("starttls")
    assert smtp.noop()[0] == 250
    print("smtplib", smtp.sock.version())

def line(sock):
    out = b""
    while not out.endswith(b"\n"):
        b = sock.recv(1)
        if not b:
            break
        out += b
    return out

s = socket.create_connection((host, port), timeout=10)
assert line(s).startswith(b"220 ")
s.sendall(b"STARTTLS\r\n")
assert line(s) == b"220 Ready to start TLS\r\n"
t = ctx.wrap_socket(s, server_hostname="localhost")
t.sendall(b"Hello From Python\r\nQUIT\r\n")
assert line(t) == b"250 hello from python\r\n"
assert line(t) == b"221 Bye\r\n"
assert t.recv(100) == b""  # the server's close_notify
print("ssl", t.version())
"#;
    for multi in [false, true] {
        let certs = Certs::new();
        let log = Log::default();
        let test = async {
            let map = Map::new();
            let (listener, address) = serve(&map, &certs, &log, false);
            let ca = certs.path(&certs.ca);
            let script = python.to_string();
            let peer = std::thread::spawn(move || {
                let mut command = Command::new("python3");
                command.args(["-c", &script, "127.0.0.1", &address.port().to_string(), &ca]);
                util::programs::run(command)
            });
            let (status, stdout, stderr) = util::run_until_done(&map, peer).await;
            map.close_channel(listener);
            map.close_all();
            assert!(status.success(), "python failed: {stderr}");
            assert_eq!(
                String::from_utf8(stdout).unwrap(),
                "smtplib TLSv1.3\nssl TLSv1.3\n"
            );
        };
        if multi {
            block_on_multi(test);
        } else {
            block_on(test);
        }
        let entries = log.entries();
        assert!(
            entries.contains(&"line \"ehlo py-tls\" tls=true".to_string()),
            "{entries:?}"
        );
        assert!(
            !entries.iter().any(|e| e.starts_with("error")),
            "{entries:?}"
        );
    }
}

/// A plain dispatcher (no asynchat) upgrades with `Channel::start_tls`: the reply it still
/// owes goes with the upgrade (`Upgrade::plaintext_first`) and leaves first, in the clear.
#[test]
fn a_plain_dispatcher_upgrades_with_its_owed_reply_first() {
    use asyncore::tls::Upgrade;
    struct Plain {
        config: Arc<ServerConfig>,
        log: Log,
    }
    impl Dispatcher for Plain {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            let data = channel.recv(1024)?;
            self.log.push(format!(
                "read {:?} tls={}",
                String::from_utf8_lossy(&data),
                channel.is_tls()
            ));
            if &data[..] == b"STARTTLS\r\n" {
                // The reply is not sent here: it goes with the upgrade, before the first record.
                channel.start_tls(
                    Upgrade::server(self.config.clone()).plaintext_first("220 go\r\n"),
                )?;
            } else if !data.is_empty() {
                channel.send(&data.to_ascii_uppercase())?;
            }
            Ok(())
        }
        fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.close();
            Ok(())
        }
    }
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let map = Map::new();
        map.add(
            Channel::from_unix(a),
            Plain {
                config: certs.server_config(),
                log: log.clone(),
            },
        )
        .unwrap();
        let config = certs.client_config();
        let client = async move {
            let mut plain = b;
            plain.write_all(b"STARTTLS\r\n").await.unwrap();
            assert_eq!(line(&mut plain).await, "220 go\r\n");
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, plain)
                .await
                .unwrap();
            tls.write_all(b"secret").await.unwrap();
            let mut answer = [0; 6];
            tls.read_exact(&mut answer).await.unwrap();
            tls.shutdown().await.unwrap();
            answer
        };
        let (served, answer) = tokio::join!(map.run(), client);
        served.unwrap();
        assert_eq!(&answer, b"SECRET");
        assert_eq!(
            log.entries(),
            [
                "read \"STARTTLS\\r\\n\" tls=false",
                "read \"secret\" tls=true",
                "read \"\" tls=true", // the client's close_notify: end of file
            ]
        );
    });
}

/// A TLS chat handed over to native code (`Chat::take_stream`): the session, the unparsed
/// protected input and the unsent reply come along, and `into_framed` goes on with them.
#[test]
fn a_tls_chat_hands_over_to_native_code_with_its_buffers() {
    use asyncore::chat::ChatStream;
    use asyncore::NativeStream;
    use futures::{SinkExt, StreamExt};
    use tokio_util::codec::LinesCodec;
    struct Upgrade {
        to_native: Option<tokio::sync::oneshot::Sender<ChatStream>>,
    }
    impl ChatHandler for Upgrade {
        fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
            if &chat.take_line()[..] == b"NATIVE" {
                chat.push_line("switching");
                let taken = chat.take_stream(channel)?;
                let _ = self.to_native.take().unwrap().send(taken);
            }
            Ok(())
        }
    }
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (to_native, from_map) = tokio::sync::oneshot::channel();
        let mut channel = Channel::from_unix(a);
        channel.start_tls_server(certs.server_config()).unwrap();
        let map = Map::new();
        map.add(
            channel,
            AsyncChat::new(
                Upgrade {
                    to_native: Some(to_native),
                },
                b"\n",
            ),
        )
        .unwrap();
        let config = certs.client_config();
        let client = async move {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, b)
                .await
                .unwrap();
            tls.write_all(b"NATIVE\nfirst native line\n").await.unwrap(); // one record
            tls.flush().await.unwrap();
            let mut answers = String::new();
            tls.read_to_string(&mut answers).await.unwrap(); // ends with the native side's close_notify
            answers
        };
        let native = async {
            map.run().await.unwrap(); // the chat left the map
            let taken = from_map.await.unwrap();
            assert!(
                matches!(taken.stream, NativeStream::Tls(_)),
                "{:?}",
                taken.stream
            );
            let mut lines = taken.into_framed(LinesCodec::new());
            let first = lines.next().await.unwrap().unwrap();
            lines.send(format!("native got {first}")).await.unwrap();
            let mut stream = lines.into_inner();
            stream.shutdown().await.unwrap();
        };
        let (answers, ()) = tokio::join!(client, native);
        assert_eq!(answers, "switching\nnative got first native line\n");
    });
}
