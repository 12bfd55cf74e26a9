//! Datagram channels over real sockets: UDP on 127.0.0.1 and ::1, Unix datagram sockets.
//! sendto/recvfrom and connected send/recv, empty and maximal datagrams, one datagram per read
//! event, truncation and oversize errors, and errors that do not close the channel.

mod util;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use asyncore::{Address, Channel, Dispatcher, Family, Map, SendBuffer};
use bytes::Bytes;
use util::{any_address, block_on, Log, FAMILIES, LIMIT};

/// The largest UDP payload over IPv4 (65535 - 20 - 8), and over IPv6 (65535 - 8).
const MAX_UDP_V4: usize = 65507;
const MAX_UDP_V6: usize = 65527;

fn datagram_channel(family: Family) -> (Channel, Address) {
    let mut channel = Channel::create_datagram_socket(family).unwrap();
    channel.bind(any_address(family)).unwrap();
    let address = channel.local_addr().unwrap();
    (channel, address)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends every datagram back to its sender with `sendto`; logs what would close it.
struct Echo {
    log: Log,
}

impl Dispatcher for Echo {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let (data, sender) = channel.recvfrom(65535)?;
        self.log.push(format!("echo {}", data.len()));
        channel.sendto(&data, &sender)?;
        Ok(())
    }
    fn handle_read_eof(&mut self, _: &mut Channel) -> io::Result<()> {
        self.log.push("echo: eof");
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("echo: close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("echo: error {error}"));
        channel.close();
    }
}

/// Sends its datagrams (with `sendto`, or `send` once connected), collects the replies, and
/// closes the map once all came back.
struct Client {
    log: Log,
    to: Option<Address>,
    outgoing: VecDeque<Vec<u8>>,
    expected: usize,
    received: Rc<RefCell<Vec<Bytes>>>,
}

impl Dispatcher for Client {
    fn writable(&self, _: &Channel) -> bool {
        !self.outgoing.is_empty()
    }
    fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log
            .push(format!("client: connect connected={}", channel.connected()));
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        if let Some(data) = self.outgoing.front() {
            let sent = match &self.to {
                Some(to) => channel.sendto(data, to)?,
                None => channel.send(data)?,
            };
            assert_eq!(sent, data.len(), "a datagram is sent whole");
            self.outgoing.pop_front();
        }
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = match &self.to {
            Some(_) => channel.recvfrom(65535)?.0,
            None => channel.recv(65535)?,
        };
        self.received.borrow_mut().push(data);
        if self.received.borrow().len() == self.expected {
            channel.map().unwrap().close_all();
        }
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("client: close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("client: error {error}"));
        channel.close();
    }
}

fn payloads(family: Family) -> Vec<Vec<u8>> {
    let mut all = vec![
        Vec::new(),
        b"hello".to_vec(),
        pattern(MAX_UDP_V4, 1),
        Vec::new(),
        pattern(1500, 2),
    ];
    if family == Family::Inet6 {
        all.push(pattern(MAX_UDP_V6, 3));
    }
    all.push(b"last".to_vec());
    all
}

/// Runs an echo server and `client` (made for the server's address) in one map; returns what
/// came back and the log.
fn echo_round(
    family: Family,
    make_client: impl FnOnce(Address, &Log, Rc<RefCell<Vec<Bytes>>>) -> Channel,
    connected: bool,
) -> (Vec<Bytes>, Log) {
    block_on(async move {
        let log = Log::default();
        let received = Rc::new(RefCell::new(Vec::new()));
        let (server, address) = datagram_channel(family);
        let map = Map::new();
        map.add(server, Echo { log: log.clone() }).unwrap();
        let channel = make_client(address.clone(), &log, received.clone());
        let outgoing: VecDeque<Vec<u8>> = payloads(family).into();
        let client = Client {
            log: log.clone(),
            to: (!connected).then_some(address),
            expected: outgoing.len(),
            outgoing,
            received: received.clone(),
        };
        map.add(channel, client).unwrap();
        map.run().await.unwrap();
        let got = received.borrow().clone();
        (got, log)
    })
}

/// sendto/recvfrom both ways, every family: empty datagrams, the largest UDP datagrams, all in
/// order and unchanged; an empty datagram never closes anything.
#[test]
fn sendto_and_recvfrom_in_every_family() {
    for family in FAMILIES {
        let (got, log) = echo_round(
            family,
            |_, _, _| {
                // A Unix client must be bound to be replied to; an IP client binds on first send.
                let mut channel = Channel::create_datagram_socket(family).unwrap();
                if family == Family::Unix {
                    channel.bind(any_address(family)).unwrap();
                }
                channel
            },
            false,
        );
        let sent = payloads(family);
        assert_eq!(got.len(), sent.len(), "{family:?}: {:?}", log.entries());
        for (got, sent) in got.iter().zip(&sent) {
            assert!(got[..] == sent[..], "{family:?}: a datagram changed");
        }
        let entries = log.entries();
        assert!(
            entries.iter().all(|e| e.starts_with("echo ")),
            "{family:?}: {entries:?}"
        );
        assert_eq!(log.count("echo 0"), 2, "{family:?}: {entries:?}");
    }
}

/// A connected datagram channel: `connect` fixes the peer at once, `handle_connect` runs from
/// the reactor first with `connected()` true, then plain send/recv carry datagrams.
#[test]
fn connected_send_and_recv_in_every_family() {
    for family in FAMILIES {
        let (got, log) = echo_round(
            family,
            |server, _, _| {
                let mut channel = Channel::create_datagram_socket(family).unwrap();
                if family == Family::Unix {
                    channel.bind(any_address(family)).unwrap();
                }
                channel.connect(&server).unwrap();
                assert!(channel.connecting() && !channel.connected());
                assert_eq!(channel.addr(), Some(&server));
                channel
            },
            true,
        );
        let sent = payloads(family);
        assert_eq!(got.len(), sent.len(), "{family:?}: {:?}", log.entries());
        assert!(got.iter().zip(&sent).all(|(g, s)| g[..] == s[..]));
        assert_eq!(
            log.entries().first().map(String::as_str),
            Some("client: connect connected=true")
        );
        assert_eq!(log.count("client: connect connected=true"), 1);
    }
}

/// Both ends of a Unix datagram pair adopted: connected from the start, no handle_connect.
#[test]
fn adopted_pair_is_connected() {
    block_on(async {
        let (ours, theirs) = tokio::net::UnixDatagram::pair().unwrap();
        let ours = Channel::from_unix_datagram(ours);
        assert!(ours.connected() && ours.is_datagram());
        assert_eq!(ours.family(), Family::Unix);
        let log = Log::default();
        let map = Map::new();
        map.add(ours, ConnectedEcho { log: log.clone() }).unwrap();
        let peer = async {
            for data in [&b""[..], b"one", &pattern(100_000, 9)] {
                theirs.send(data).await.unwrap();
                let mut back = vec![0; 200_000];
                let n = theirs.recv(&mut back).await.unwrap();
                assert!(back[..n] == data[..]);
            }
        };
        tokio::select! {
            _ = map.run() => panic!("the map ended early: {:?}", log.entries()),
            _ = peer => {}
        }
        assert_eq!(log.entries(), ["0", "3", "100000"]);
    });
}

/// Echoes with connected recv/send.
struct ConnectedEcho {
    log: Log,
}

impl Dispatcher for ConnectedEcho {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(1 << 20)?;
        self.log.push(data.len().to_string());
        channel.send(&data)?;
        Ok(())
    }
}

/// How a `Reader` receives.
#[derive(Clone, Copy, Debug)]
enum Mode {
    RecvFrom,
    Recv,
    RecvInto,
}

/// One receive per read event, each result logged ("would block" included).
struct Reader {
    log: Log,
    max: usize,
    mode: Mode,
}

impl Dispatcher for Reader {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let result = match self.mode {
            Mode::RecvFrom => channel.recvfrom(self.max).map(|(data, _)| data),
            Mode::Recv => channel.recv(self.max),
            Mode::RecvInto => {
                let mut buf = vec![0; self.max];
                channel
                    .recv_into(&mut buf)
                    .map(|n| Bytes::copy_from_slice(&buf[..n]))
            }
        };
        self.log.push(match result {
            Ok(data) => format!("ok {}", String::from_utf8_lossy(&data)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => "would block".into(),
            Err(e) => format!("error {:?} {e}", e.kind()),
        });
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("close");
        channel.close();
        Ok(())
    }
}

/// Queued datagrams: each lock-step pass delivers one read event, and each takes exactly one
/// datagram, in order; the event after the last one finds nothing and is harmless.
#[test]
fn one_read_event_per_datagram() {
    block_on(async {
        let (server, address) = datagram_channel(Family::Inet);
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for word in ["a", "", "bc", "d", "ef"] {
            peer.send_to(word.as_bytes(), address.as_inet().unwrap())
                .unwrap();
        }
        let log = Log::default();
        let map = Map::new();
        map.add(
            server,
            Reader {
                log: log.clone(),
                max: 100,
                mode: Mode::RecvFrom,
            },
        )
        .unwrap();
        for pass in 1..=5 {
            map.poll(LIMIT).await.unwrap();
            assert_eq!(log.entries().len(), pass, "{:?}", log.entries());
        }
        assert_eq!(log.entries(), ["ok a", "ok ", "ok bc", "ok d", "ok ef"]);
        map.poll(Duration::from_millis(10)).await.unwrap();
        let after: Vec<String> = log.entries().into_iter().skip(5).collect();
        assert!(
            after.iter().all(|e| e == "would block"),
            "nothing but a spurious event after the last datagram: {after:?}"
        );
        assert!(map.len() == 1, "still open");
    });
}

/// A datagram longer than the receive asked for is an InvalidData error naming the size (and
/// the sender, for recvfrom), in every receive flavour; the datagram is consumed, and the next
/// receive gets the next datagram whole.
#[test]
fn truncation_is_a_clear_error() {
    for family in FAMILIES {
        for mode in [Mode::RecvFrom, Mode::Recv, Mode::RecvInto] {
            block_on(async move {
                let (server, address) = datagram_channel(family);
                let (sender, sender_address) = datagram_channel(family);
                let log = Log::default();
                let map = Map::new();
                map.add(
                    server,
                    Reader {
                        log: log.clone(),
                        max: 1024,
                        mode,
                    },
                )
                .unwrap();
                map.add(
                    sender,
                    Sender {
                        log: log.clone(),
                        to: address,
                        datagrams: vec![pattern(2000, 0), b"next".to_vec()].into(),
                    },
                )
                .unwrap();
                while !log.entries().iter().any(|e| e == "ok next") {
                    map.poll(LIMIT).await.unwrap();
                }
                let results: Vec<String> = log
                    .entries()
                    .into_iter()
                    .filter(|e| !e.starts_with("sent") && e != "would block")
                    .collect();
                assert_eq!(results.len(), 2, "{family:?} {mode:?}: {results:?}");
                let error = &results[0];
                assert!(
                    error.starts_with("error InvalidData") && error.contains("1024 bytes"),
                    "{family:?} {mode:?}: {error}"
                );
                if let Mode::RecvFrom = mode {
                    assert!(
                        error.contains(&sender_address.to_string()),
                        "{family:?}: {error}"
                    );
                }
                assert_eq!(results[1], "ok next");
            });
        }
    }
}

/// Sends its datagrams with `sendto` on write events; logs each result.
struct Sender {
    log: Log,
    to: Address,
    datagrams: VecDeque<Vec<u8>>,
}

impl Dispatcher for Sender {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, _: &Channel) -> bool {
        !self.datagrams.is_empty()
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let Some(data) = self.datagrams.pop_front() else {
            return Ok(());
        };
        self.log.push(match channel.sendto(&data, &self.to) {
            Ok(n) => format!("sent {n}"),
            Err(e) => format!("send error {e}"),
        });
        Ok(())
    }
}

/// A datagram too large to send: a clear EMSGSIZE error that names its size and destination;
/// the channel stays usable.
#[test]
fn oversize_send_is_a_clear_emsgsize() {
    for (family, size) in [
        (Family::Inet, MAX_UDP_V4 + 1),
        (Family::Inet6, MAX_UDP_V6 + 1),
        (Family::Unix, 1 << 20),
    ] {
        block_on(async move {
            let (_receiver, address) = datagram_channel(family);
            let channel = Channel::create_datagram_socket(family).unwrap();
            if family == Family::Unix {
                channel
                    .socket()
                    .unwrap()
                    .set_send_buffer_size(65536)
                    .unwrap();
            }
            let map = Map::new();
            let log = Log::default();
            map.add(
                channel,
                Sender {
                    log: log.clone(),
                    to: address.clone(),
                    datagrams: vec![vec![0; size], b"fits".to_vec()].into(),
                },
            )
            .unwrap();
            while log.entries().len() < 2 {
                map.poll(LIMIT).await.unwrap();
            }
            let entries = log.entries();
            let error = &entries[0];
            assert!(
                error.contains(&format!("{size} bytes is too large"))
                    && error.contains("EMSGSIZE")
                    && error.contains(&address.to_string()),
                "{family:?}: {error}"
            );
            assert_eq!(entries[1], "sent 4", "{family:?}");
        });
    }
}

/// The error values themselves: EMSGSIZE keeps the OS error as its source.
#[test]
fn emsgsize_keeps_the_os_error() {
    block_on(async {
        let (_receiver, address) = datagram_channel(Family::Inet);
        let mut channel = Channel::create_datagram_socket(Family::Inet).unwrap();
        // A UDP send never waits for room, so the write readiness Tokio has not seen yet is
        // the only thing to wait for.
        let error = loop {
            match channel.sendto(&vec![0; MAX_UDP_V4 + 1], &address) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::task::yield_now().await,
                other => break other.unwrap_err(),
            }
        };
        let source = std::error::Error::source(error.get_ref().unwrap())
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error);
        assert_eq!(source, Some(libc::EMSGSIZE), "{error}");
    });
}

/// A connected UDP socket whose peer has nobody listening: after one datagram, the channel
/// only waits to read, and the refusal (a pending socket error, as `select` would report it)
/// wakes it; the receive returns it and it reaches handle_error with context, as an error, not
/// as a disconnect that would close the channel unasked.
#[test]
fn refused_datagrams_reach_handle_error() {
    block_on(async {
        let channel = refused_udp_channel();
        let log = Log::default();
        let map = Map::new();
        map.add(
            channel,
            Pinger {
                log: log.clone(),
                pings: 1,
            },
        )
        .unwrap();
        map.run().await.unwrap();
        let entries = log.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(
            entries[0].starts_with("error ConnectionRefused recv: "),
            "{entries:?}"
        );
    });
}

/// Sends up to `pings` datagrams to its connected peer, one per write event, and reads
/// replies; records errors and closes.
struct Pinger {
    log: Log,
    pings: usize,
}

impl Dispatcher for Pinger {
    fn writable(&self, _: &Channel) -> bool {
        self.pings > 0
    }
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.send(b"ping")?;
        self.pings -= 1;
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(100)?;
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("error {:?} {error}", error.kind()));
        channel.close();
    }
}

/// Misuse gets clear errors: stream operations on a datagram channel and the reverse, a send
/// without a peer, a reply to an unbound Unix sender, a byte queue on a datagram channel.
#[test]
fn misuse_is_reported() {
    block_on(async {
        let mut datagram = Channel::create_datagram_socket(Family::Inet).unwrap();
        assert!(datagram.is_datagram());
        let error = datagram.listen(5).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        let error = datagram.accept().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        let error = datagram
            .sendto(b"x", "/tmp/not-an-ip".to_string())
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");

        let mut stream = Channel::create_socket(Family::Inet).unwrap();
        assert!(!stream.is_datagram());
        let error = stream.sendto(b"x", "127.0.0.1:9").unwrap_err();
        assert!(
            error.to_string().contains("not a datagram channel"),
            "{error}"
        );
        let error = stream.recvfrom(10).unwrap_err();
        assert!(
            error.to_string().contains("not a datagram channel"),
            "{error}"
        );

        let mut out = SendBuffer::new();
        let error = out.send(&mut datagram, &b"bytes"[..]).unwrap_err();
        assert!(error.to_string().contains("datagram channel"), "{error}");

        datagram.close();
        let error = datagram.recvfrom(10).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
    });
}

/// A send on an unconnected datagram channel says what to do instead, and (unlike a stream's
/// disconnect) leaves the channel open.
#[test]
fn send_without_a_peer_is_an_error() {
    block_on(async {
        for family in FAMILIES {
            let (mut channel, _) = datagram_channel(family);
            let error = loop {
                match channel.send(b"x") {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::task::yield_now().await
                    }
                    other => break other.unwrap_err(),
                }
            };
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{family:?}");
            assert!(error.to_string().contains("use sendto"), "{error}");
            assert!(!channel.is_closed());
        }
        // Replying to an unbound Unix sender is impossible, and says why.
        let (mut server, _) = datagram_channel(Family::Unix);
        let error = server.sendto(b"x", Address::Unnamed).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    });
}

/// After a refusal the channel goes quiet (the error is collected, not reported again and
/// again) and stays usable: a second datagram is refused in turn, each with one read event.
#[test]
fn a_refused_channel_stays_usable_and_quiet() {
    block_on(async {
        let channel = refused_udp_channel();
        let log = Log::default();
        let map = Map::new();
        map.add(
            channel,
            Persistent {
                log: log.clone(),
                owed: 1,
                refusals: 0,
            },
        )
        .unwrap();
        map.run().await.unwrap();
        assert_eq!(
            log.entries(),
            ["send", "read", "refused", "send", "read", "refused"]
        );
    });
}

/// Sends a datagram whenever it owes one; on each refusal owes another, up to two refusals.
struct Persistent {
    log: Log,
    owed: usize,
    refusals: usize,
}

impl Dispatcher for Persistent {
    fn writable(&self, _: &Channel) -> bool {
        self.owed > 0
    }
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("send");
        channel.send(b"anyone?")?;
        self.owed -= 1;
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("read");
        channel.recv(100)?;
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
        self.log.push("refused");
        self.refusals += 1;
        if self.refusals == 2 {
            channel.close();
        } else {
            self.owed += 1;
        }
    }
}

/// A UDP channel connected to a loopback port nobody listens on (it was free a moment ago):
/// what it sends is refused.
fn refused_udp_channel() -> Channel {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free loopback UDP port");
    let mut channel = Channel::create_datagram_socket(Family::Inet).unwrap();
    channel.connect(closed).unwrap();
    channel
}
