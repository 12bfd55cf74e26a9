//! Urgent (out-of-band) TCP data: `handle_expt` once per urgent byte for a channel that asked
//! for urgent events, `recv_urgent`, no spinning afterwards, and a socket error at that moment
//! going to `handle_close` (asyncore's `handle_expt_event`). CPython's `test_handle_expt`.

mod util;

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use asyncore::{Address, Channel, Dispatcher, Event, Family, Map};
use util::{block_on, listener, Log, LIMIT};

/// A connected TCP channel and its peer as a blocking std socket.
async fn tcp_pair(family: Family) -> (Channel, TcpStream) {
    let ip = if family == Family::Inet6 {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let listener = std::net::TcpListener::bind(ip).unwrap();
    let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (theirs, _) = listener.accept().unwrap();
    theirs.set_read_timeout(Some(LIMIT)).unwrap();
    (Channel::from_tcp(ours), theirs)
}

fn send_urgent(peer: &TcpStream, byte: u8) {
    assert_eq!(
        asyncore::socket2::SockRef::from(peer)
            .send_out_of_band(&[byte])
            .unwrap(),
        1
    );
}

/// Logs reads, urgent bytes (if it reads them) and closes.
struct Client {
    log: Log,
    read_urgent: bool,
}

impl Dispatcher for Client {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(1024)?;
        self.log
            .push(format!("read {}", String::from_utf8_lossy(&data)));
        Ok(())
    }
    fn handle_expt(&mut self, channel: &mut Channel) -> io::Result<()> {
        if self.read_urgent {
            let byte = channel.recv_urgent()?;
            self.log.push(format!("expt {byte}"));
        } else {
            self.log.push("expt");
        }
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("error {error}"));
        channel.close();
    }
}

/// Counts the urgent events of `passes` lock-step passes that wait at most `wait` each.
async fn count_expt(map: &Map, passes: usize, wait: Duration) -> usize {
    let mut count = 0;
    for _ in 0..passes {
        let pass = map.poll(wait).await.unwrap();
        count += pass.events.iter().filter(|e| e.1 == Event::Expt).count();
    }
    count
}

/// test_handle_expt: a server handler sends one byte with MSG_OOB when it accepts; the
/// client's `handle_expt` runs and reads it. Over IPv4 and IPv6 (CPython skips AF_UNIX: no
/// urgent data there).
#[test]
fn handle_expt_runs_for_urgent_data() {
    struct Sender;
    impl Dispatcher for Sender {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.recv(1024)?;
            Ok(())
        }
        fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.close();
            Ok(())
        }
    }
    struct Server;
    impl Dispatcher for Server {
        fn handle_accepted(
            &mut self,
            ch: &mut Channel,
            conn: Channel,
            _: Address,
        ) -> io::Result<()> {
            conn.socket()?.send_out_of_band(&[244])?;
            ch.map().unwrap().add(conn, Sender)?;
            ch.close();
            Ok(())
        }
    }
    for family in [Family::Inet, Family::Inet6] {
        block_on(async {
            let (server, address) = listener(family).unwrap();
            let map = Map::new();
            map.add(server, Server).unwrap();
            let mut client = Channel::create_socket(family).unwrap();
            client.connect(&address).unwrap();
            client.set_urgent_events(true).unwrap();
            assert!(client.urgent_events());
            let log = Log::default();
            let id = map
                .add(
                    client,
                    Client {
                        log: log.clone(),
                        read_urgent: true,
                    },
                )
                .unwrap();
            let mut passes = 0;
            while !log.contains("expt 244") {
                passes += 1;
                assert!(
                    passes < 100,
                    "{family:?}: no handle_expt: {:?}",
                    log.entries()
                );
                map.poll(LIMIT).await.unwrap();
            }
            assert_eq!(log.entries(), ["expt 244"], "{family:?}");
            map.close_channel(id);
            map.close_all();
        });
    }
}

/// One urgent byte, one `handle_expt`, whether the handler reads the byte or not; then quiet
/// passes (no spinning); the next byte is a new event. Ordinary data around it is unaffected.
#[test]
fn one_event_per_urgent_byte_and_no_spin() {
    for read_urgent in [true, false] {
        block_on(async {
            let (mut channel, mut peer) = tcp_pair(Family::Inet).await;
            channel.set_urgent_events(true).unwrap();
            let log = Log::default();
            let map = Map::new();
            let id = map
                .add(
                    channel,
                    Client {
                        log: log.clone(),
                        read_urgent,
                    },
                )
                .unwrap();
            peer.write_all(b"ab").unwrap();
            send_urgent(&peer, b'!');
            peer.write_all(b"cd").unwrap();
            wait_for(&map, id, libc::POLLPRI);
            let mut expts = 0;
            let mut passes = 0;
            let reads = |log: &Log| -> String {
                log.entries()
                    .iter()
                    .filter_map(|e| e.strip_prefix("read "))
                    .collect()
            };
            while expts == 0 || reads(&log) != "abcd" {
                passes += 1;
                assert!(passes < 100, "{:?}", log.entries());
                expts += count_expt(&map, 1, LIMIT).await;
            }
            expts += count_expt(&map, 10, Duration::from_millis(20)).await;
            assert_eq!(expts, 1, "read_urgent={read_urgent}: {:?}", log.entries());
            assert_eq!(reads(&log), "abcd", "the urgent byte is not in the stream");
            if read_urgent {
                assert!(log.contains("expt 33"), "{:?}", log.entries());
            }

            send_urgent(&peer, b'?');
            wait_for(&map, id, libc::POLLPRI);
            let mut second = 0;
            for _ in 0..100 {
                second += count_expt(&map, 1, LIMIT).await;
                if second > 0 {
                    break;
                }
            }
            second += count_expt(&map, 10, Duration::from_millis(20)).await;
            assert_eq!(second, 1, "read_urgent={read_urgent}: {:?}", log.entries());
            if read_urgent {
                assert!(log.contains("expt 63"), "{:?}", log.entries());
            }
            assert!(!log.entries().iter().any(|e| e.starts_with("error")));
            map.close_all();
        });
    }
}

/// Without the opt-in, urgent data runs no callback (Tokio cannot see it), and `recv_urgent`
/// still reads the byte; with nothing waiting it is `WouldBlock`.
#[test]
fn without_opt_in_no_event_but_recv_urgent_works() {
    block_on(async {
        let (channel, peer) = tcp_pair(Family::Inet).await;
        let _ = &peer;
        assert!(!channel.urgent_events());
        let log = Log::default();
        let map = Map::new();
        let id = map
            .add(
                channel,
                Client {
                    log: log.clone(),
                    read_urgent: true,
                },
            )
            .unwrap();
        send_urgent(&peer, 7);
        wait_for(&map, id, libc::POLLPRI);
        // Linux drops an unread urgent byte once ordinary reads pass it, so no data follows.
        assert_eq!(count_expt(&map, 5, Duration::from_millis(20)).await, 0);
        let byte = map
            .with(id, |_: &mut Client, ch| ch.recv_urgent())
            .unwrap()
            .unwrap();
        assert_eq!(byte, 7);
        let again = map
            .with(id, |_: &mut Client, ch| ch.recv_urgent())
            .unwrap()
            .unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::WouldBlock, "{again}");
        assert!(
            log.entries().iter().all(|e| e == "read "),
            "{:?}",
            log.entries()
        );
        map.close_all();
    });
}

/// asyncore's `handle_expt_event`: a socket error pending when urgent data is reported runs
/// `handle_close`, not `handle_expt` (the peer sends an urgent byte, then resets).
#[test]
fn socket_error_with_urgent_data_closes() {
    struct Idle(Log);
    impl Dispatcher for Idle {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, _: &mut Channel) -> io::Result<()> {
            self.0.push("read"); // leaves the reset for the urgent event to find
            Ok(())
        }
        fn handle_expt(&mut self, _: &mut Channel) -> io::Result<()> {
            self.0.push("expt");
            Ok(())
        }
        fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0.push("close");
            channel.close();
            Ok(())
        }
        fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
            self.0.push(format!("error {error}"));
            channel.close();
        }
    }
    block_on(async {
        let (mut channel, peer) = tcp_pair(Family::Inet).await;
        send_urgent(&peer, b'!');
        asyncore::socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer); // RST
        wait_for_error(&channel);
        channel.set_urgent_events(true).unwrap();
        let log = Log::default();
        let map = Map::new();
        map.add(channel, Idle(log.clone())).unwrap();
        let mut passes = 0;
        while !map.is_empty() {
            passes += 1;
            assert!(passes < 100, "{:?}", log.entries());
            map.poll(LIMIT).await.unwrap();
        }
        assert_eq!(log.entries(), ["read", "close"]);
    });
}

/// Waits (bounded) until `poll(2)` reports `events` on channel `id`'s socket: the peer's
/// segments have arrived, whatever Tokio has seen yet.
fn wait_for(map: &Map, id: asyncore::ChannelId, events: libc::c_short) {
    let fd = map.fileno(id).unwrap();
    assert!(poll_fd(fd, events) & events != 0);
}

#[allow(unsafe_code)]
fn poll_fd(fd: std::os::fd::RawFd, events: libc::c_short) -> libc::c_short {
    let mut fds = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    // SAFETY: `poll` reads and writes the one-element array it is given.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, LIMIT.as_millis() as i32) };
    assert_eq!(n, 1, "nothing within {LIMIT:?}");
    fds[0].revents
}

/// Waits (bounded) until the kernel reports the reset on `channel`'s socket, so that the
/// urgent event finds the error.
fn wait_for_error(channel: &Channel) {
    // With no events asked, `poll` waits for POLLERR/POLLHUP only, which it always reports.
    let revents = poll_fd(channel.fileno().unwrap(), 0);
    assert!(revents & libc::POLLERR != 0, "{revents:#x}");
}

/// Only TCP has urgent data: asking on other channels is a clear error.
#[test]
fn urgent_events_need_tcp() {
    block_on(async {
        let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
        let mut unix = Channel::from_unix(ours);
        let error = unix.set_urgent_events(true).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("TCP"), "{error}");
        let mut udp = Channel::create_datagram_socket(Family::Inet).unwrap();
        assert!(udp.set_urgent_events(true).is_err());
        let (mut tcp, _peer) = tcp_pair(Family::Inet).await;
        tcp.set_urgent_events(true).unwrap();
        tcp.set_urgent_events(false).unwrap();
        assert!(!tcp.urgent_events());
        tcp.close();
        let error = tcp.set_urgent_events(true).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotConnected);
    });
}
