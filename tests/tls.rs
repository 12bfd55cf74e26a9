//! TLS on channels: both sides on accept and connect, over TCP (IPv4, IPv6) and Unix sockets,
//! on the current-thread and the multi-thread runtime; the handshake event, the peer's
//! certificate and ALPN; half-close and close_notify; failures (untrusted, expired, wrong
//! name, not TLS, closed mid-handshake, truncated); timeouts; lock-step passes; graceful
//! shutdown; the hand-over to native code. Peers are channels of the crate and tokio-rustls.

mod tls_util;
mod util;

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use asyncore::tls::{self, rustls, ClientConfig, ServerConfig};
use asyncore::{Address, Channel, ChannelId, Dispatcher, Event, Family, Map, NativeStream, Ready};
use bytes::{Buf, Bytes};
use tls_util::Certs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::{block_on, block_on_multi, Log};

/// Bytes that are not all alike, so that a reordering or a loss shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Runs `test` on the current-thread runtime, then on the multi-thread one.
fn on_both_runtimes<F: std::future::Future<Output = ()>>(test: impl Fn() -> F) {
    block_on(test());
    block_on_multi(test());
}

// ----- a TLS echo server and client, both channels -----

/// Accepts, starts TLS as the server, and serves each connection with `Echo`.
struct Acceptor {
    config: Arc<ServerConfig>,
    log: Log,
}

impl Dispatcher for Acceptor {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        mut conn: Channel,
        _: Address,
    ) -> io::Result<()> {
        conn.start_tls_server(self.config.clone())?;
        assert!(conn.is_tls() && conn.tls_handshaking());
        channel.map().unwrap().add(
            conn,
            Echo {
                log: self.log.clone(),
                unsent: Bytes::new(),
                closing: false,
            },
        )?;
        Ok(())
    }
}

/// The echo handler of examples/echo_server.rs, with a log.
struct Echo {
    log: Log,
    unsent: Bytes,
    closing: bool,
}

impl Dispatcher for Echo {
    fn readable(&self, _: &Channel) -> bool {
        self.unsent.is_empty()
    }
    fn writable(&self, _: &Channel) -> bool {
        !self.unsent.is_empty()
    }
    fn handle_tls_ready(&mut self, channel: &mut Channel) -> io::Result<()> {
        let alpn = channel
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        self.log.push(format!("server: tls ready alpn={alpn:?}"));
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        assert!(
            !channel.tls_handshaking(),
            "no read event before the handshake completed"
        );
        let data = channel.recv(64 * 1024)?;
        let sent = channel.send(&data)?;
        self.unsent = data.slice(sent..);
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = channel.send(&self.unsent)?;
        self.unsent.advance(sent);
        if self.closing && self.unsent.is_empty() {
            channel.close();
        }
        Ok(())
    }
    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("server: eof");
        self.closing = true;
        if self.unsent.is_empty() {
            channel.close();
        }
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("server: close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("server: error {error}"));
        channel.close();
    }
}

/// Sends `data`, half-closes (close_notify), reads the echo to the end, then closes the
/// listener `stop` so that the map empties.
struct Client {
    log: Log,
    data: Bytes,
    echo: Rc<RefCell<Vec<u8>>>,
    stop: Option<ChannelId>,
    expect_certificate: Option<Vec<u8>>,
}

impl Client {
    fn finish(&mut self, channel: &mut Channel) {
        if let Some(listener) = self.stop.take() {
            channel.map().unwrap().close_channel(listener);
        }
        channel.close();
    }
}

impl Dispatcher for Client {
    fn writable(&self, _: &Channel) -> bool {
        !self.data.is_empty()
    }
    fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push(format!(
            "client: connect handshaking={}",
            channel.tls_handshaking()
        ));
        Ok(())
    }
    fn handle_tls_ready(&mut self, channel: &mut Channel) -> io::Result<()> {
        let chain = channel.peer_certificates().expect("the server's chain");
        if let Some(expected) = &self.expect_certificate {
            assert_eq!(
                chain[0].as_ref(),
                &expected[..],
                "the server's own certificate first"
            );
        }
        let alpn = channel
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        self.log.push(format!("client: tls ready alpn={alpn:?}"));
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        assert!(
            !channel.tls_handshaking(),
            "no write event before the handshake completed"
        );
        let sent = channel.send(&self.data[..self.data.len().min(100_000)])?;
        self.data.advance(sent);
        if self.data.is_empty() {
            channel.shutdown(Shutdown::Write)?; // close_notify, then FIN
            self.log.push("client: sent all");
        }
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(64 * 1024)?;
        self.echo.borrow_mut().extend_from_slice(&data);
        Ok(())
    }
    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("client: eof");
        self.finish(channel);
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("client: close");
        self.finish(channel);
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("client: error {error}"));
        self.finish(channel);
    }
}

fn tls_listener(
    map: &Map,
    family: Family,
    config: Arc<ServerConfig>,
    log: &Log,
) -> (ChannelId, Address) {
    let (channel, address) = util::listener(family).unwrap();
    let id = map
        .add(
            channel,
            Acceptor {
                config,
                log: log.clone(),
            },
        )
        .unwrap();
    (id, address)
}

async fn echo_round(family: Family, size: usize) {
    let certs = Certs::new();
    let log = Log::default();
    let map = Map::new();
    let (listener, address) =
        tls_listener(&map, family, certs.server_config_alpn(&[b"echo/1"]), &log);
    let mut channel = util::connector(&address).unwrap();
    assert!(channel.connecting());
    let client_config = certs.client_config_alpn(&[b"other", b"echo/1"]);
    channel
        .start_tls_client(client_config, "localhost")
        .unwrap();
    let echo = Rc::new(RefCell::new(Vec::new()));
    let data = pattern(size);
    let server_cert = std::fs::read(&certs.cert).unwrap();
    let server_der = rustls::pki_types::CertificateDer::pem_slice_iter(&server_cert)
        .next()
        .unwrap()
        .unwrap();
    use rustls::pki_types::pem::PemObject;
    map.add(
        channel,
        Client {
            log: log.clone(),
            data: data.clone().into(),
            echo: echo.clone(),
            stop: Some(listener),
            expect_certificate: Some(server_der.to_vec()),
        },
    )
    .unwrap();
    map.run().await.unwrap();
    let entries = log.entries();
    assert!(
        echo.borrow().len() == size && *echo.borrow() == data,
        "{family:?} {size}: {} bytes back; {entries:?}",
        echo.borrow().len()
    );
    log.assert_order("client: connect handshaking=true", "client: tls ready");
    assert!(
        log.contains("client: tls ready alpn=Some(\"echo/1\")"),
        "{entries:?}"
    );
    assert!(
        log.contains("server: tls ready alpn=Some(\"echo/1\")"),
        "{entries:?}"
    );
    log.assert_order("client: sent all", "server: eof");
    log.assert_order("server: eof", "client: eof");
    assert!(!entries.iter().any(|e| e.contains("error")), "{entries:?}");
}

/// Both sides of a TLS connection are channels: the server starts TLS on accept, the client
/// on connect (before the connect completed). The echo comes back whole, in order, for small
/// and large transfers (1 MiB: both sides' buffers fill, records wait for write readiness);
/// the handshake event comes after the connect and before any read or write; the client's
/// half-close is a close_notify the server sees as end of file, after which it still sends.
#[test]
fn echo_over_tls_on_every_family_and_runtime() {
    on_both_runtimes(|| async {
        for family in util::FAMILIES {
            for size in [1, 100_000, 1 << 20] {
                echo_round(family, size).await;
            }
        }
    });
}

/// Many rounds with the map on a multi-thread runtime, whose I/O driver records readiness on
/// the workers while the channels read and write records: a readiness cleared with what was
/// seen after a transfer, not before it, loses a wake-up and the round hangs until its bound.
#[test]
fn tls_echo_many_rounds_on_a_multi_thread_runtime() {
    block_on_multi(async {
        for _ in 0..20 {
            echo_round(Family::Inet, 256 * 1024).await;
        }
    });
}

// ----- failures -----

/// A client that connects with TLS and reports what happened.
struct Probe {
    log: Log,
}

impl Dispatcher for Probe {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
    fn handle_tls_ready(&mut self, _: &mut Channel) -> io::Result<()> {
        self.log.push("client: tls ready");
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(1024).map(drop)
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("client: close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!(
            "client: error kind={:?} rustls={:?} {error}",
            error.kind(),
            tls::rustls_error(&error)
        ));
        channel.close();
    }
}

/// Runs a handshake between a server with `server` and a client with `client` asking for
/// `name`, until both ends have closed; returns the log.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Vec<String> {
    let log = Log::default();
    let map = Map::new();
    let (listener, address) = tls_listener(&map, Family::Inet, server, &log);
    let mut channel = util::connector(&address).unwrap();
    channel.start_tls_client(client, name).unwrap();
    map.add(channel, Probe { log: log.clone() }).unwrap();
    // Until both sides have said what happened.
    let both = async {
        while !(log.entries().iter().any(|e| e.starts_with("server: "))
            && log.entries().iter().any(|e| e.starts_with("client: ")))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    map.run_until(async {
        if tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .is_err()
        {
            panic!("no word from both sides: {:?}", log.entries());
        }
    })
    .await
    .unwrap();
    map.close_channel(listener);
    map.close_all();
    log.entries()
}

fn find<'a>(entries: &'a [String], prefix: &str) -> &'a str {
    entries
        .iter()
        .find(|e| e.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {entries:?}"))
}

/// A certificate signed by a CA the client does not trust: the client's handle_error gets
/// `InvalidData` that says so (and carries rustls's `UnknownIssuer`); the server's hears of
/// the client's alert.
#[test]
fn an_untrusted_certificate_fails_the_handshake_on_both_sides() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let entries = handshake(
            certs.server_config(),
            certs.untrusting_client_config(),
            "localhost",
        )
        .await;
        let client = find(&entries, "client: ");
        assert!(
            client.starts_with("client: error kind=InvalidData"),
            "{entries:?}"
        );
        assert!(
            client.contains("InvalidCertificate(UnknownIssuer)"),
            "{client}"
        );
        assert!(client.contains("TLS handshake with localhost failed: the peer's certificate is not signed by a trusted authority"), "{client}");
        let server = find(&entries, "server: ");
        assert!(
            server.contains("TLS handshake failed: the peer refused our certificate"),
            "{server}"
        );
    });
}

/// An expired certificate, and one for another name, each fail with their own words.
#[test]
fn an_expired_certificate_or_a_wrong_name_fails_with_its_reason() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let entries = handshake(
            certs.expired_server_config(),
            certs.client_config(),
            "localhost",
        )
        .await;
        let client = find(&entries, "client: ");
        assert!(
            client.contains("the peer's certificate has expired"),
            "{entries:?}"
        );
        assert!(
            client.contains("rustls=Some(InvalidCertificate(Expired"),
            "{client}"
        );

        let entries = handshake(
            certs.server_config(),
            certs.client_config(),
            "other.example",
        )
        .await;
        let client = find(&entries, "client: ");
        assert!(client.contains("TLS handshake with other.example failed: the peer's certificate is for another host name"), "{entries:?}");
        assert!(client.contains("NotValidForName"), "{client}");

        // And the right name as an IP address works.
        let entries = handshake(certs.server_config(), certs.client_config(), "127.0.0.1").await;
        assert!(
            entries.contains(&"client: tls ready".to_string()),
            "{entries:?}"
        );
        assert!(
            entries.iter().any(|e| e.starts_with("server: tls ready")),
            "{entries:?}"
        );
    });
}

/// A peer that does not speak TLS (plaintext where the ClientHello belongs), and one that
/// closes during the handshake: the server's handle_error says which.
#[test]
fn plaintext_or_an_early_close_fails_the_handshake() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        for (what, send) in [
            ("not tls", &b"HELO example.com\r\n"[..]),
            ("early close", &b""[..]),
        ] {
            let log = Log::default();
            let map = Map::new();
            let (listener, address) = tls_listener(&map, Family::Inet, certs.server_config(), &log);
            let peer = async {
                let mut peer = tokio::net::TcpStream::connect(address.as_inet().unwrap())
                    .await
                    .unwrap();
                peer.write_all(send).await.unwrap();
                if send.is_empty() {
                    drop(peer);
                    return;
                }
                let mut rest = Vec::new();
                let _ = peer.read_to_end(&mut rest).await; // the server's alert, then its close
            };
            let served = map.run_until(async {
                peer.await;
                while !log.entries().iter().any(|e| e.starts_with("server: ")) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            served.await.unwrap();
            map.close_channel(listener);
            map.close_all();
            let entries = log.entries();
            let server = find(&entries, "server: ");
            if send.is_empty() {
                assert!(
                    server.contains(
                        "TLS handshake failed: the peer closed the connection during the handshake"
                    ),
                    "{what}: {entries:?}"
                );
            } else {
                assert!(
                    server.contains("the peer sent something that is not TLS"),
                    "{what}: {entries:?}"
                );
            }
        }
    });
}

// ----- the end of the stream -----

/// Reads everything, logs how the stream ended.
struct Reader {
    log: Log,
    got: Vec<u8>,
    reply: &'static [u8],
}

impl Dispatcher for Reader {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(1024)?;
        self.got.extend_from_slice(&data);
        Ok(())
    }
    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push(format!(
            "eof after {:?}",
            String::from_utf8_lossy(&self.got)
        ));
        channel.send(self.reply)?; // the peer half-closed: it still reads
        channel.close(); // close_notify
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!(
            "error after {:?} truncation={} kind={:?}: {error}",
            String::from_utf8_lossy(&self.got),
            tls::is_truncation(&error),
            error.kind()
        ));
        channel.close();
    }
}

/// A native tokio-rustls client sends, then either shuts down cleanly (close_notify) or drops
/// its TCP connection without close_notify. The clean end is end of file, the server still
/// answers and its close is a close_notify the client reads as a clean end; the other is an
/// error that says the stream was truncated, after all the data that came before it.
#[test]
fn close_notify_is_end_of_file_and_its_absence_is_a_truncation() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        for clean in [true, false] {
            let log = Log::default();
            let map = Map::new();
            let (listener, address) = util::listener(Family::Inet).unwrap();
            let config = certs.server_config();
            let reader_log = log.clone();
            struct OneShot<F>(Option<F>);
            impl<F: FnOnce(&mut Channel, Channel) -> io::Result<()> + 'static> Dispatcher for OneShot<F> {
                fn handle_accepted(
                    &mut self,
                    channel: &mut Channel,
                    conn: Channel,
                    _: Address,
                ) -> io::Result<()> {
                    let f = self.0.take().unwrap();
                    f(channel, conn)?;
                    channel.close();
                    Ok(())
                }
            }
            map.add(
                listener,
                OneShot(Some(move |listener: &mut Channel, mut conn: Channel| {
                    conn.start_tls_server(config)?;
                    listener.map().unwrap().add(
                        conn,
                        Reader {
                            log: reader_log,
                            got: Vec::new(),
                            reply: b"bye",
                        },
                    )?;
                    Ok(())
                })),
            )
            .unwrap();
            let client_config = certs.client_config();
            let peer = async move {
                let tcp = tokio::net::TcpStream::connect(address.as_inet().unwrap())
                    .await
                    .unwrap();
                let connector = tokio_rustls::TlsConnector::from(client_config);
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut stream = connector.connect(name, tcp).await.unwrap();
                stream.write_all(b"hello ").await.unwrap();
                stream.write_all(b"world").await.unwrap();
                stream.flush().await.unwrap();
                if clean {
                    stream.shutdown().await.unwrap(); // close_notify, then FIN
                    let mut reply = Vec::new();
                    stream.read_to_end(&mut reply).await.unwrap(); // a clean end: no error
                    reply
                } else {
                    let (tcp, _) = stream.into_inner();
                    drop(tcp); // FIN without close_notify
                    Vec::new()
                }
            };
            let (served, reply) = tokio::join!(map.run(), peer);
            served.unwrap();
            let entries = log.entries();
            if clean {
                assert_eq!(entries, ["eof after \"hello world\""]);
                assert_eq!(reply, b"bye");
            } else {
                assert_eq!(entries.len(), 1, "{entries:?}");
                assert!(
                    entries[0].starts_with(
                        "error after \"hello world\" truncation=true kind=UnexpectedEof"
                    ),
                    "{entries:?}"
                );
                assert!(entries[0].contains("without close_notify"), "{entries:?}");
            }
        }
    });
}

// ----- timeouts, passes, shutdown -----

/// A server whose client never sends its ClientHello: the channel's deadline still runs
/// `handle_timeout`, during the handshake.
#[test]
fn a_deadline_fires_during_a_stalled_handshake() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (listener, address) = util::listener(Family::Inet).unwrap();
        struct Stalled {
            config: Arc<ServerConfig>,
            log: Log,
        }
        struct Timed(Log);
        impl Dispatcher for Timed {
            fn handle_timeout(&mut self, channel: &mut Channel) -> io::Result<()> {
                self.0
                    .push(format!("timeout handshaking={}", channel.tls_handshaking()));
                channel.close();
                Ok(())
            }
        }
        impl Dispatcher for Stalled {
            fn handle_accepted(
                &mut self,
                channel: &mut Channel,
                mut conn: Channel,
                _: Address,
            ) -> io::Result<()> {
                conn.start_tls_server(self.config.clone())?;
                conn.set_timeout(Duration::from_millis(50));
                channel.map().unwrap().add(conn, Timed(self.log.clone()))?;
                channel.close();
                Ok(())
            }
        }
        map.add(
            listener,
            Stalled {
                config: certs.server_config(),
                log: log.clone(),
            },
        )
        .unwrap();
        let peer = tokio::net::TcpStream::connect(address.as_inet().unwrap())
            .await
            .unwrap();
        map.run().await.unwrap();
        drop(peer);
        assert_eq!(log.entries(), ["timeout handshaking=true"]);
    });
}

/// Lock-step passes drive the handshake too, and show it: `Ready::TLS` among the readiness,
/// `Event::TlsReady` among the events, before any read.
#[test]
fn lockstep_passes_drive_and_show_the_handshake() {
    block_on(async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (listener, address) = tls_listener(&map, Family::Inet, certs.server_config(), &log);
        let mut channel = util::connector(&address).unwrap();
        channel
            .start_tls_client(certs.client_config(), "localhost")
            .unwrap();
        let client = map
            .add(
                channel,
                Client {
                    log: log.clone(),
                    data: Bytes::from_static(b"ping"),
                    echo: Rc::default(),
                    stop: Some(listener),
                    expect_certificate: None,
                },
            )
            .unwrap();
        let mut events = Vec::new();
        let mut tls_ready_seen = false;
        for _ in 0..200 {
            if map.is_empty() {
                break;
            }
            let pass = map.poll(Duration::from_millis(500)).await.unwrap();
            if pass
                .ready
                .iter()
                .any(|(id, r)| *id == client && r.contains(Ready::TLS))
            {
                tls_ready_seen = true;
            }
            events.extend(pass.events);
        }
        assert!(
            map.is_empty(),
            "the passes did not finish the exchange: {:?}",
            log.entries()
        );
        assert!(tls_ready_seen, "{events:?}");
        let at = |event: Event| {
            events
                .iter()
                .position(|(id, e)| *id == client && *e == event)
        };
        assert!(at(Event::Connect) < at(Event::TlsReady), "{events:?}");
        assert!(at(Event::TlsReady) < at(Event::Write), "{events:?}");
        assert!(at(Event::Write) < at(Event::Read), "{events:?}");
        assert_eq!(
            events.iter().filter(|(_, e)| *e == Event::TlsReady).count(),
            2,
            "{events:?}"
        );
    });
}

/// `Map::shutdown` runs handle_close on a TLS channel; its close sends close_notify, which a
/// native client reads as a clean end of the stream (not a truncation).
#[test]
fn graceful_shutdown_sends_close_notify() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let map = Map::new();
        let (_listener, address) = tls_listener(&map, Family::Inet, certs.server_config(), &log);
        let client_config = certs.client_config();
        let (connected, handshaken) = tokio::sync::oneshot::channel();
        let peer = async move {
            let tcp = tokio::net::TcpStream::connect(address.as_inet().unwrap())
                .await
                .unwrap();
            let connector = tokio_rustls::TlsConnector::from(client_config);
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut stream = connector.connect(name, tcp).await.unwrap();
            stream.write_all(b"x").await.unwrap();
            let mut one = [0; 1];
            stream.read_exact(&mut one).await.unwrap();
            let _ = connected.send(());
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.map(|_| rest)
        };
        let server = async {
            map.run_until(async {
                let _ = handshaken.await;
            })
            .await
            .unwrap();
            map.shutdown(Duration::from_secs(5)).await.unwrap();
        };
        let ((), ended) = tokio::join!(server, peer);
        assert_eq!(ended.unwrap(), b"", "a clean end, not a truncation");
        assert!(log.contains("server: close"), "{:?}", log.entries());
    });
}

// ----- hand-over -----

/// A TLS channel handed to native code with `take_stream` keeps its session and what it
/// holds: decrypted bytes the dispatcher had not read yet come first, then the socket.
#[test]
fn take_stream_hands_over_the_session_with_its_buffered_plaintext() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let map = Map::new();
        let (listener, address) = util::listener(Family::Inet).unwrap();
        let config = certs.server_config();
        let (to_native, from_map) =
            tokio::sync::oneshot::channel::<(Vec<u8>, bool, NativeStream)>();
        struct Handover {
            to_native: Option<tokio::sync::oneshot::Sender<(Vec<u8>, bool, NativeStream)>>,
        }
        impl Dispatcher for Handover {
            fn writable(&self, _: &Channel) -> bool {
                false
            }
            fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
                let first = channel.recv(4)?; // "one\n"; the rest waits in the session
                let buffered = channel.has_buffered_input();
                let stream = channel.take_stream()?;
                let _ = self
                    .to_native
                    .take()
                    .unwrap()
                    .send((first.to_vec(), buffered, stream));
                Ok(())
            }
        }
        struct Accept1(Arc<ServerConfig>, Option<Handover>);
        impl Dispatcher for Accept1 {
            fn handle_accepted(
                &mut self,
                channel: &mut Channel,
                mut conn: Channel,
                _: Address,
            ) -> io::Result<()> {
                conn.start_tls_server(self.0.clone())?;
                channel.map().unwrap().add(conn, self.1.take().unwrap())?;
                channel.close();
                Ok(())
            }
        }
        map.add(
            listener,
            Accept1(
                config,
                Some(Handover {
                    to_native: Some(to_native),
                }),
            ),
        )
        .unwrap();
        let client_config = certs.client_config();
        let peer = async move {
            let tcp = tokio::net::TcpStream::connect(address.as_inet().unwrap())
                .await
                .unwrap();
            let connector = tokio_rustls::TlsConnector::from(client_config);
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut stream = connector.connect(name, tcp).await.unwrap();
            stream.write_all(b"one\ntwo\n").await.unwrap(); // one record
            stream.flush().await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let native = async {
            map.run().await.unwrap(); // returns once the channel has left the map
            let (first, buffered, stream) = from_map.await.unwrap();
            let NativeStream::Tls(mut stream) = stream else {
                panic!("a TLS channel hands over a TLS stream")
            };
            assert!(
                stream.connection().peer_certificates().is_none(),
                "no client certificate"
            );
            let mut rest = [0; 4];
            stream.read_exact(&mut rest).await.unwrap();
            stream.write_all(b"native: ").await.unwrap();
            stream.write_all(&rest).await.unwrap();
            stream.shutdown().await.unwrap(); // close_notify
            (first, buffered, rest)
        };
        let (answer, (first, buffered, rest)) = tokio::join!(peer, native);
        assert_eq!(first, b"one\n");
        assert!(buffered, "the rest of the record waited in the channel");
        assert_eq!(&rest, b"two\n");
        assert_eq!(answer, b"native: two\n");
    });
}

/// Channels that ask for nothing (neither readable nor writable) still complete their
/// handshake: the session asks for what it needs.
#[test]
fn the_handshake_runs_whatever_readable_and_writable_say() {
    on_both_runtimes(|| async {
        let certs = Certs::new();
        let log = Log::default();
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        struct Idle(Log, &'static str);
        impl Dispatcher for Idle {
            fn readable(&self, _: &Channel) -> bool {
                false
            }
            fn writable(&self, _: &Channel) -> bool {
                false
            }
            fn handle_tls_ready(&mut self, channel: &mut Channel) -> io::Result<()> {
                self.0.push(format!("{} ready", self.1));
                if self.0.entries().len() == 2 {
                    channel.map().unwrap().close_all();
                }
                Ok(())
            }
        }
        let map = Map::new();
        let mut server = Channel::from_unix(a);
        server.start_tls_server(certs.server_config()).unwrap();
        let mut client = Channel::from_unix(b);
        client
            .start_tls_client(certs.client_config(), "localhost")
            .unwrap();
        map.add(server, Idle(log.clone(), "server")).unwrap();
        map.add(client, Idle(log.clone(), "client")).unwrap();
        map.run().await.unwrap();
        let mut entries = log.entries();
        entries.sort();
        assert_eq!(entries, ["client ready", "server ready"]);
    });
}
