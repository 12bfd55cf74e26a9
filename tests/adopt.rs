//! Adopting sockets made elsewhere (asyncore's `dispatcher(sock)` / `set_socket(sock)`):
//! `Channel::from_socket` for a `socket2::Socket` in any state, the std sockets through
//! `TryFrom`, Tokio's listeners through `From`; each kind served over loopback TCP (IPv4 and
//! IPv6), UDP and Unix sockets.

mod util;

use std::io::{self, Read, Write};
use std::path::PathBuf;

use asyncore::socket2::{Domain, SockAddr, Socket, Type};
use asyncore::{Address, Channel, Dispatcher, Family, Map};
use tokio::io::AsyncReadExt;
use util::{any_address, block_on, Log, LIMIT};

/// An IP address on loopback for `family`, port 0.
fn loopback(family: Family) -> std::net::SocketAddr {
    match any_address(family) {
        Address::Inet(addr) => addr,
        other => panic!("not an IP family: {other:?}"),
    }
}

/// A fresh Unix socket path, removed when dropped.
struct SocketFile(PathBuf);

impl SocketFile {
    fn new() -> SocketFile {
        match any_address(Family::Unix) {
            Address::Unix(path) => SocketFile(path),
            other => panic!("{other:?}"),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Accepts one connection, greets it with "hi" and closes it and itself.
struct Greeter(Log);

impl Dispatcher for Greeter {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        mut connection: Channel,
        _: Address,
    ) -> io::Result<()> {
        self.0.push("accepted");
        connection.send(b"hi")?;
        connection.close();
        channel.close();
        Ok(())
    }
}

/// An adopted listener is accepting, non-blocking, named by its local address, and serves a
/// client.
async fn serves_as_a_listener(channel: Channel) {
    assert!(
        channel.accepting() && !channel.connected() && !channel.connecting(),
        "{channel}"
    );
    assert!(channel.socket().unwrap().nonblocking().unwrap());
    let local = channel.local_addr().unwrap();
    assert_eq!(channel.addr(), Some(&local));
    let map = Map::new();
    let log = Log::default();
    map.add(channel, Greeter(log.clone())).unwrap();
    let client = async {
        let mut greeting = Vec::new();
        match &local {
            Address::Inet(addr) => {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.read_to_end(&mut greeting).await.unwrap();
            }
            Address::Unix(path) => {
                let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
                stream.read_to_end(&mut greeting).await.unwrap();
            }
            other => panic!("{other:?}"),
        }
        greeting
    };
    let (served, greeting) = tokio::join!(map.run(), client);
    served.unwrap();
    assert_eq!(greeting, b"hi");
    assert_eq!(log.entries(), ["accepted"]);
}

#[test]
fn listening_sockets_become_accepting_channels() {
    block_on(async {
        for family in [Family::Inet, Family::Inet6] {
            let std = std::net::TcpListener::bind(loopback(family)).unwrap();
            serves_as_a_listener(Channel::try_from(std).unwrap()).await;

            let socket =
                Socket::new(Domain::for_address(loopback(family)), Type::STREAM, None).unwrap();
            socket.set_reuse_address(true).unwrap();
            socket.bind(&loopback(family).into()).unwrap();
            socket.listen(128).unwrap();
            serves_as_a_listener(Channel::from_socket(socket).unwrap()).await;

            let tokio = tokio::net::TcpListener::bind(loopback(family))
                .await
                .unwrap();
            serves_as_a_listener(Channel::from(tokio)).await;
        }
        let file = SocketFile::new();
        let std = std::os::unix::net::UnixListener::bind(&file.0).unwrap();
        serves_as_a_listener(Channel::try_from(std).unwrap()).await;
        drop(file);

        let file = SocketFile::new();
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        socket.bind(&SockAddr::unix(&file.0).unwrap()).unwrap();
        socket.listen(128).unwrap();
        serves_as_a_listener(Channel::from_socket(socket).unwrap()).await;
        drop(file);

        let file = SocketFile::new();
        let tokio = tokio::net::UnixListener::bind(&file.0).unwrap();
        serves_as_a_listener(Channel::from(tokio)).await;
    });
}

/// Echoes what it reads, once, then closes; records whether `handle_connect` ran.
struct EchoOnce(Log);

impl Dispatcher for EchoOnce {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        self.0.push("connect");
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(1024)?;
        self.0
            .push(format!("read {}", String::from_utf8_lossy(&data)));
        channel.send(&data)?;
        channel.close();
        Ok(())
    }
}

trait Peer: Read + Write + Send {}
impl<T: Read + Write + Send> Peer for T {}

/// An adopted connected stream is connected, non-blocking, named by its peer, gets no
/// `handle_connect`, and talks.
async fn serves_as_a_connection(channel: Channel, mut peer: Box<dyn Peer>) {
    assert!(channel.connected() && !channel.accepting() && !channel.connecting());
    assert!(channel.socket().unwrap().nonblocking().unwrap());
    let remote = channel.peer_addr().unwrap();
    assert_eq!(
        channel.addr().map(ToString::to_string),
        Some(remote.to_string())
    );
    let map = Map::new();
    let log = Log::default();
    map.add(channel, EchoOnce(log.clone())).unwrap();
    peer.write_all(b"ping").unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        let mut echo = Vec::new();
        peer.read_to_end(&mut echo).map(|_| echo)
    });
    map.run().await.unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), b"ping");
    assert_eq!(log.entries(), ["read ping"]);
}

fn blocking<T: Peer + 'static>(peer: T) -> Box<dyn Peer> {
    Box::new(peer)
}

#[test]
fn connected_streams_become_connected_channels() {
    block_on(async {
        for family in [Family::Inet, Family::Inet6] {
            let listener = std::net::TcpListener::bind(loopback(family)).unwrap();
            let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (theirs, _) = listener.accept().unwrap();
            theirs.set_read_timeout(Some(LIMIT)).unwrap();
            assert!(!asyncore::socket2::SockRef::from(&ours)
                .nonblocking()
                .unwrap());
            serves_as_a_connection(Channel::try_from(ours).unwrap(), blocking(theirs)).await;

            let ours =
                Socket::new(Domain::for_address(loopback(family)), Type::STREAM, None).unwrap();
            ours.connect(&listener.local_addr().unwrap().into())
                .unwrap();
            let (theirs, _) = listener.accept().unwrap();
            theirs.set_read_timeout(Some(LIMIT)).unwrap();
            serves_as_a_connection(Channel::from_socket(ours).unwrap(), blocking(theirs)).await;
        }
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_read_timeout(Some(LIMIT)).unwrap();
        serves_as_a_connection(Channel::try_from(ours).unwrap(), blocking(theirs)).await;

        let file = SocketFile::new();
        let listener = std::os::unix::net::UnixListener::bind(&file.0).unwrap();
        let ours = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        ours.connect(&SockAddr::unix(&file.0).unwrap()).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        theirs.set_read_timeout(Some(LIMIT)).unwrap();
        serves_as_a_connection(Channel::from_socket(ours).unwrap(), blocking(theirs)).await;
    });
}

/// A fresh socket (made by other code, options set) connects like a `create_socket` channel:
/// `handle_connect` from the reactor, then the conversation.
#[test]
fn fresh_sockets_connect() {
    block_on(async {
        for family in [Family::Inet, Family::Inet6, Family::Unix] {
            let file = SocketFile::new();
            let (target, listener): (Address, Box<dyn Fn() -> Box<dyn Peer>>) = match family {
                Family::Unix => {
                    let listener = std::os::unix::net::UnixListener::bind(&file.0).unwrap();
                    let accept = move || -> Box<dyn Peer> {
                        let (peer, _) = listener.accept().unwrap();
                        peer.set_read_timeout(Some(LIMIT)).unwrap();
                        Box::new(peer)
                    };
                    (Address::Unix(file.0.clone()), Box::new(accept))
                }
                _ => {
                    let listener = std::net::TcpListener::bind(loopback(family)).unwrap();
                    let address = Address::Inet(listener.local_addr().unwrap());
                    let accept = move || -> Box<dyn Peer> {
                        let (peer, _) = listener.accept().unwrap();
                        peer.set_read_timeout(Some(LIMIT)).unwrap();
                        Box::new(peer)
                    };
                    (address, Box::new(accept))
                }
            };
            let domain = match family {
                Family::Inet => Domain::IPV4,
                Family::Inet6 => Domain::IPV6,
                Family::Unix => Domain::UNIX,
            };
            let socket = Socket::new(domain, Type::STREAM, None).unwrap();
            let mut channel = Channel::from_socket(socket).unwrap();
            assert!(!channel.connected() && !channel.accepting() && !channel.connecting());
            assert_eq!(channel.family(), family);
            assert!(channel.socket().unwrap().nonblocking().unwrap());
            channel.connect(&target).unwrap();
            let map = Map::new();
            let log = Log::default();
            map.add(channel, EchoOnce(log.clone())).unwrap();
            let mut peer = listener();
            peer.write_all(b"pong").unwrap();
            let reader = tokio::task::spawn_blocking(move || {
                let mut echo = Vec::new();
                peer.read_to_end(&mut echo).map(|_| echo)
            });
            map.run().await.unwrap();
            assert_eq!(reader.await.unwrap().unwrap(), b"pong", "{family:?}");
            assert_eq!(log.entries(), ["connect", "read pong"], "{family:?}");
        }
    });
}

/// A bound socket that does not listen yet: the channel listens, then accepts.
#[test]
fn bound_sockets_listen() {
    block_on(async {
        for family in [Family::Inet, Family::Inet6] {
            let socket =
                Socket::new(Domain::for_address(loopback(family)), Type::STREAM, None).unwrap();
            socket.bind(&loopback(family).into()).unwrap();
            let mut channel = Channel::from_socket(socket).unwrap();
            assert!(!channel.accepting() && !channel.connected());
            channel.listen(128).unwrap();
            serves_as_a_listener(channel).await;
        }
        let file = SocketFile::new();
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        socket.bind(&SockAddr::unix(&file.0).unwrap()).unwrap();
        let mut channel = Channel::from_socket(socket).unwrap();
        channel.listen(128).unwrap();
        serves_as_a_listener(channel).await;
    });
}

/// Answers every datagram to its sender, once, then closes.
struct Reflect(Log);

impl Dispatcher for Reflect {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let (data, from) = channel.recvfrom(1024)?;
        self.0
            .push(format!("datagram {}", String::from_utf8_lossy(&data)));
        if channel.connected() {
            channel.send(&data)?;
        } else {
            channel.sendto(&data, from)?;
        }
        channel.close();
        Ok(())
    }
}

/// Sends "hello" to `to` on its first write event, notes its own address, and closes.
struct SpeakFirst {
    to: std::net::SocketAddr,
    from: std::rc::Rc<std::cell::Cell<Option<std::net::SocketAddr>>>,
}

impl Dispatcher for SpeakFirst {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        assert_eq!(channel.sendto(b"hello", self.to)?, 5);
        self.from.set(channel.local_addr()?.as_inet());
        channel.close();
        Ok(())
    }
}

/// An adopted datagram socket is a datagram channel, connected iff the socket was, and
/// answers a datagram; `peer` sends one and reads the answer.
async fn serves_as_a_datagram_channel(
    channel: Channel,
    connected: bool,
    peer: impl FnOnce() -> Vec<u8> + Send + 'static,
) {
    assert!(channel.is_datagram());
    assert_eq!(channel.connected(), connected);
    assert!(!channel.accepting() && !channel.connecting());
    assert!(channel.socket().unwrap().nonblocking().unwrap());
    if connected {
        let remote = channel.peer_addr().unwrap();
        assert_eq!(
            channel.addr().map(ToString::to_string),
            Some(remote.to_string())
        );
    } else {
        assert!(channel.addr().is_none());
    }
    let map = Map::new();
    let log = Log::default();
    map.add(channel, Reflect(log.clone())).unwrap();
    let peer = tokio::task::spawn_blocking(peer);
    map.run().await.unwrap();
    assert_eq!(peer.await.unwrap(), b"echo");
    assert_eq!(log.entries(), ["datagram echo"]);
}

fn udp_peer(family: Family) -> std::net::UdpSocket {
    let peer = std::net::UdpSocket::bind(loopback(family)).unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    peer
}

fn ask(peer: &std::net::UdpSocket, to: std::net::SocketAddr) -> Vec<u8> {
    peer.send_to(b"echo", to).unwrap();
    let mut buf = [0; 64];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(from, to);
    buf[..n].to_vec()
}

#[test]
fn datagram_sockets_become_datagram_channels() {
    block_on(async {
        for family in [Family::Inet, Family::Inet6] {
            // Bound, not connected: std and socket2.
            let ours = std::net::UdpSocket::bind(loopback(family)).unwrap();
            let at = ours.local_addr().unwrap();
            let peer = udp_peer(family);
            let channel = Channel::try_from(ours).unwrap();
            serves_as_a_datagram_channel(channel, false, move || ask(&peer, at)).await;

            let ours =
                Socket::new(Domain::for_address(loopback(family)), Type::DGRAM, None).unwrap();
            ours.bind(&loopback(family).into()).unwrap();
            let at = ours.local_addr().unwrap().as_socket().unwrap();
            let peer = udp_peer(family);
            let channel = Channel::from_socket(ours).unwrap();
            serves_as_a_datagram_channel(channel, false, move || ask(&peer, at)).await;

            // Connected.
            let ours = std::net::UdpSocket::bind(loopback(family)).unwrap();
            let at = ours.local_addr().unwrap();
            let peer = udp_peer(family);
            ours.connect(peer.local_addr().unwrap()).unwrap();
            let channel = Channel::try_from(ours).unwrap();
            serves_as_a_datagram_channel(channel, true, move || ask(&peer, at)).await;

            // Fresh: not even bound; it speaks first, from an ephemeral port.
            let ours =
                Socket::new(Domain::for_address(loopback(family)), Type::DGRAM, None).unwrap();
            let channel = Channel::from_socket(ours).unwrap();
            assert!(channel.is_datagram() && !channel.connected() && channel.addr().is_none());
            let peer = udp_peer(family);
            let map = Map::new();
            let sent_from = std::rc::Rc::new(std::cell::Cell::new(None));
            let speaker = SpeakFirst {
                to: peer.local_addr().unwrap(),
                from: sent_from.clone(),
            };
            map.add(channel, speaker).unwrap();
            map.run().await.unwrap();
            let mut buf = [0; 16];
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            // Bound by the send to the wildcard address and an ephemeral port.
            assert_eq!(Some(from.port()), sent_from.get().map(|a| a.port()));
        }

        // Unix: a bound socket, and both ends of a pair (connected).
        let file = SocketFile::new();
        let ours = std::os::unix::net::UnixDatagram::bind(&file.0).unwrap();
        let peer_file = SocketFile::new();
        let peer = std::os::unix::net::UnixDatagram::bind(&peer_file.0).unwrap();
        peer.set_read_timeout(Some(LIMIT)).unwrap();
        let path = file.0.clone();
        let channel = Channel::try_from(ours).unwrap();
        serves_as_a_datagram_channel(channel, false, move || {
            peer.send_to(b"echo", &path).unwrap();
            let mut buf = [0; 64];
            let n = peer.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        })
        .await;

        let (ours, peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
        peer.set_read_timeout(Some(LIMIT)).unwrap();
        let channel = Channel::try_from(ours).unwrap();
        assert_eq!(channel.family(), Family::Unix);
        serves_as_a_datagram_channel(channel, true, move || {
            peer.send(b"echo").unwrap();
            let mut buf = [0; 64];
            let n = peer.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        })
        .await;
    });
}

/// What cannot be adopted says so: other socket types, descriptors that are not sockets; and
/// adopting a socket Tokio must register is an error, not a panic, outside a runtime.
#[test]
fn unsupported_sockets_are_errors() {
    block_on(async {
        let seqpacket = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let error = Channel::from_socket(seqpacket).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");
        assert!(error.to_string().contains("SEQPACKET"), "{error}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let not_a_socket = Socket::from(std::os::fd::OwnedFd::from(file));
        let error = Channel::from_socket(not_a_socket).unwrap_err();
        let cause = std::error::Error::source(&error)
            .and_then(|e| e.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error);
        assert_eq!(cause, Some(libc::ENOTSOCK), "{error}");
        assert!(error.to_string().contains("adopt a socket"), "{error}");
    });
    // No runtime: the listener is refused with an error; a fresh socket needs none.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = Channel::try_from(listener).unwrap_err();
    assert!(error.to_string().contains("no Tokio runtime"), "{error}");
    let fresh = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    assert!(Channel::from_socket(fresh).is_ok());
}
