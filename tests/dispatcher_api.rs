//! CPython's `test_asyncore.py` BaseTestAPI, ported: each scenario over IPv4, IPv6 and Unix
//! sockets, once with free-running channels (`Map::run`) and once in lock-step passes
//! (`Map::poll`), as CPython runs each over select and poll.

mod util;

use std::io;
use std::time::Duration;

use asyncore::{Address, Channel, Dispatcher, Family, Map};
use util::{block_on, connector, listener, Log, Recorder, Server, FAMILIES};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Free,
    LockStep,
}

const MODES: [Mode; 2] = [Mode::Free, Mode::LockStep];

/// Runs the map in `mode` until `done()` holds (or the map empties), then closes what is left.
async fn drive(map: &Map, mode: Mode, done: impl Fn() -> bool) {
    match mode {
        Mode::Free => {
            let wait = async {
                while !done() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            map.run_until(wait).await.unwrap();
        }
        Mode::LockStep => {
            while !done() && !map.is_empty() {
                map.poll(Duration::from_millis(20)).await.unwrap();
            }
        }
    }
    map.close_all();
}

/// Runs `scenario` for every family and mode, naming the variant in any failure.
fn each_variant(scenario: impl Fn(Family, Mode) -> io::Result<()>) {
    for family in FAMILIES {
        for mode in MODES {
            if let Err(e) = scenario(family, mode) {
                panic!("{family:?}/{mode:?}: {e}");
            }
        }
    }
}

/// A server of `make()` handlers, and a client with `client`; returns the client's id.
fn pair<D: Dispatcher, F: FnMut() -> D + 'static>(
    map: &Map,
    family: Family,
    log: &Log,
    make: F,
    client: impl Dispatcher,
) -> io::Result<()> {
    let (listening, address) = listener(family)?;
    map.add(
        listening,
        Server {
            make,
            log: log.clone(),
        },
    )?;
    map.add(connector(&address)?, client)?;
    Ok(())
}

/// One connection: the client's `handle_connect` and the listener's `handle_accept` each fire
/// exactly once.
#[test]
fn handle_connect_and_handle_accept() {
    each_variant(|family, mode| {
        block_on(async {
            let map = Map::new();
            let log = Log::default();
            let server_log = log.clone();
            let client = Recorder {
                readable: false,
                ..Recorder::new("client", &log)
            };
            pair(
                &map,
                family,
                &log,
                move || Recorder::new("handler", &server_log),
                client,
            )?;
            let connected = "client: connect connected=true";
            drive(&map, mode, || {
                log.contains(connected) && log.contains("server: accepted")
            })
            .await;
            assert_eq!(log.count(connected), 1, "{:?}", log.entries());
            assert_eq!(log.count("server: accepted"), 1, "{:?}", log.entries());
            Ok(())
        })
    });
}

/// The default `handle_accepted` closes the connection: the client sees end of file.
#[test]
fn handle_accepted_default_closes() {
    struct Plain;
    impl Dispatcher for Plain {}
    each_variant(|family, mode| {
        block_on(async {
            let map = Map::new();
            let log = Log::default();
            let (listening, address) = listener(family)?;
            map.add(listening, Plain)?;
            map.add(connector(&address)?, Recorder::new("client", &log))?;
            drive(&map, mode, || log.contains("client: close")).await;
            assert_eq!(log.count("client: close"), 1, "{:?}", log.entries());
            Ok(())
        })
    });
}

/// A handler that sends 1024 bytes as soon as it is accepted (CPython's test_handle_read).
struct Greeter;
impl Dispatcher for Greeter {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(1024)?;
        Ok(())
    }
}

struct GreetingServer;
impl Dispatcher for GreetingServer {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        mut connection: Channel,
        _: Address,
    ) -> io::Result<()> {
        assert_eq!(connection.send(&[b'x'; 1024])?, 1024);
        channel.map().unwrap().add(connection, Greeter)?;
        Ok(())
    }
}

#[test]
fn handle_read() {
    each_variant(|family, mode| {
        block_on(async {
            let map = Map::new();
            let log = Log::default();
            let (listening, address) = listener(family)?;
            map.add(listening, GreetingServer)?;
            map.add(connector(&address)?, Recorder::new("client", &log))?;
            drive(&map, mode, || log.contains("client: data 1024")).await;
            assert!(log.contains("client: data 1024"), "{:?}", log.entries());
            // The connect completes before the first read callback.
            log.assert_order("client: connect", "client: read");
            Ok(())
        })
    });
}

#[test]
fn handle_write() {
    each_variant(|family, mode| {
        block_on(async {
            let map = Map::new();
            let log = Log::default();
            let server_log = log.clone();
            let client = Recorder {
                readable: false,
                writable: true,
                ..Recorder::new("client", &log)
            };
            pair(
                &map,
                family,
                &log,
                move || Recorder::new("handler", &server_log),
                client,
            )?;
            drive(&map, mode, || log.contains("client: write")).await;
            log.assert_order("client: connect", "client: write");
            Ok(())
        })
    });
}

/// The server's handler closes at once; the client's recv sees end of file, and handle_close
/// runs exactly once.
#[test]
fn handle_close() {
    each_variant(|family, mode| {
        block_on(async {
            let map = Map::new();
            let log = Log::default();
            let server_log = log.clone();
            let make = move || Recorder {
                writable: true,
                close_on_event: true,
                ..Recorder::new("handler", &server_log)
            };
            pair(&map, family, &log, make, Recorder::new("client", &log))?;
            drive(&map, mode, || log.contains("client: close")).await;
            assert_eq!(log.count("client: close"), 1, "{:?}", log.entries());
            assert!(log.contains("client: data 0"), "{:?}", log.entries());
            assert!(
                !log.entries().iter().any(|e| e.starts_with("client: error")),
                "{:?}",
                log.entries()
            );
            Ok(())
        })
    });
}

/// A client that keeps writing while the server reads a little and closes gets handle_close,
/// never handle_error (bpo-5661, bpo-11265).
#[test]
fn handle_close_after_conn_broken() {
    struct Writer(Log);
    impl Dispatcher for Writer {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.send(&[b'x'; 128])?;
            Ok(())
        }
        fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0.push("writer: close");
            channel.close();
            Ok(())
        }
        fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
            self.0.push(format!("writer: error {error}"));
            channel.close();
        }
        fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
            Ok(())
        }
    }
    struct ReadOnceAndClose;
    impl Dispatcher for ReadOnceAndClose {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.recv(128)?;
            channel.close();
            Ok(())
        }
    }
    each_variant(|family, mode| {
        block_on(async {
            let map = Map::new();
            let log = Log::default();
            pair(&map, family, &log, || ReadOnceAndClose, Writer(log.clone()))?;
            drive(&map, mode, || {
                log.contains("writer: close") || log.entries().iter().any(|e| e.contains("error"))
            })
            .await;
            assert_eq!(
                log.entries()
                    .iter()
                    .filter(|e| e.starts_with("writer"))
                    .cloned()
                    .collect::<Vec<_>>(),
                ["writer: close"]
            );
            Ok(())
        })
    });
}

/// An error returned by a callback goes to handle_error; so does a panic.
#[test]
fn handle_error() {
    struct Failing {
        log: Log,
        panic: bool,
    }
    impl Dispatcher for Failing {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
            Ok(())
        }
        fn handle_write(&mut self, _: &mut Channel) -> io::Result<()> {
            if self.panic {
                panic!("division by zero");
            }
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "division by zero",
            ))
        }
        fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
            self.log.push(format!("error {:?} {}", error.kind(), error));
            channel.close();
        }
    }
    for panic in [false, true] {
        each_variant(|family, mode| {
            block_on(async {
                let map = Map::new();
                let log = Log::default();
                let client = Failing {
                    log: log.clone(),
                    panic,
                };
                pair(&map, family, &log, || Greeter, client)?;
                drive(&map, mode, || {
                    log.entries().iter().any(|e| e.starts_with("error"))
                })
                .await;
                let expected = if panic {
                    "error Other handle_write panicked: division by zero"
                } else {
                    "error InvalidData division by zero"
                };
                assert_eq!(log.count(expected), 1, "{:?}", log.entries());
                Ok(())
            })
        });
    }
}

#[test]
fn connection_attributes() {
    struct Attributes(Log);
    impl Dispatcher for Attributes {
        fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0.push(format!(
                "connect connected={} connecting={}",
                channel.connected(),
                channel.connecting()
            ));
            Ok(())
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0.push(format!(
                "write connected={} accepting={}",
                channel.connected(),
                channel.accepting()
            ));
            channel.close();
            self.0.push(format!(
                "closed connected={} accepting={} connecting={}",
                channel.connected(),
                channel.accepting(),
                channel.connecting()
            ));
            Ok(())
        }
    }
    each_variant(|family, mode| {
        block_on(async {
            let map = Map::new();
            let log = Log::default();
            let (listening, address) = listener(family)?;
            assert!(listening.accepting() && !listening.connected());
            let listener_id = map.add(listening, Greeter)?;
            let client = connector(&address)?;
            assert!(client.connecting() && !client.connected());
            map.add(client, Attributes(log.clone()))?;
            drive(&map, mode, || {
                log.entries().iter().any(|e| e.starts_with("closed"))
            })
            .await;
            assert_eq!(
                log.entries(),
                [
                    "connect connected=true connecting=false",
                    "write connected=true accepting=false",
                    "closed connected=false accepting=false connecting=false"
                ]
            );
            assert!(!map.contains(listener_id));
            Ok(())
        })
    });
}

#[test]
fn create_socket() {
    block_on(async {
        for family in FAMILIES {
            let channel = Channel::create_socket(family).unwrap();
            let socket = channel.socket().unwrap();
            assert_eq!(socket.r#type().unwrap(), asyncore::socket2::Type::STREAM);
            assert_eq!(
                socket.domain().unwrap(),
                match family {
                    Family::Inet => asyncore::socket2::Domain::IPV4,
                    Family::Inet6 => asyncore::socket2::Domain::IPV6,
                    Family::Unix => asyncore::socket2::Domain::UNIX,
                }
            );
            assert!(
                socket.nonblocking().unwrap(),
                "{family:?} socket is blocking"
            );
            assert!(
                cloexec(channel.fileno().unwrap()),
                "{family:?} socket is inheritable"
            );
            assert!(!channel.connected() && !channel.accepting() && !channel.connecting());
        }
    });
}

/// A second bind to a port in use fails, and the error names the address.
#[test]
fn bind_in_use() {
    block_on(async {
        for family in [Family::Inet, Family::Inet6] {
            let (first, address) = listener(family).unwrap();
            let mut second = Channel::create_socket(family).unwrap();
            let error = second.bind(&address).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
            assert!(error.to_string().contains(&address.to_string()), "{error}");
            drop(first);
        }
    });
}

#[test]
fn set_reuse_addr() {
    block_on(async {
        for family in [Family::Inet, Family::Inet6] {
            let mut channel = Channel::create_socket(family).unwrap();
            assert!(!channel.socket().unwrap().reuse_address().unwrap());
            channel.set_reuse_addr().unwrap();
            assert!(channel.socket().unwrap().reuse_address().unwrap());
        }
    });
}

/// Clients that connect and reset at once (SO_LINGER 0) never disturb the server, which then
/// still serves a normal client (bpo-10340).
#[test]
fn quick_connect() {
    for family in [Family::Inet, Family::Inet6] {
        for mode in MODES {
            block_on(async {
                let map = Map::new();
                let log = Log::default();
                let server_log = log.clone();
                let (listening, address) = listener(family).unwrap();
                map.add(
                    listening,
                    Server {
                        make: move || Recorder::new("handler", &server_log),
                        log: log.clone(),
                    },
                )
                .unwrap();
                let target = address.as_inet().unwrap();
                let resets = std::thread::spawn(move || {
                    for _ in 0..50 {
                        let socket = std::net::TcpStream::connect(target).unwrap();
                        asyncore::socket2::SockRef::from(&socket)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                    }
                });
                drive(&map, mode, || {
                    resets.is_finished() && log.count("server: accepted") >= 50
                })
                .await;
                assert_eq!(log.count("server: accepted"), 50, "{family:?}/{mode:?}");
                assert!(
                    !log.entries().iter().any(|e| e.contains("error")),
                    "{:?}",
                    log.entries()
                );
            });
        }
    }
}

/// Whether FD_CLOEXEC is set, read from /proc (no unsafe fcntl needed).
fn cloexec(fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap()
        .trim();
    u32::from_str_radix(flags, 8).unwrap() & 0o2000000 != 0
}

/// `bind` keeps the address as given (port 0 stays 0, B30); `local_addr` has the real one; the
/// channel prints like asyncore's repr (B51).
#[test]
fn bind_keeps_the_given_address() {
    block_on(async {
        let mut channel = Channel::create_socket(Family::Inet).unwrap();
        channel.bind("127.0.0.1:0").unwrap();
        assert_eq!(channel.addr().unwrap().to_string(), "127.0.0.1:0");
        assert_ne!(channel.local_addr().unwrap().as_inet().unwrap().port(), 0);
        channel.listen(5).unwrap();
        assert_eq!(
            channel.to_string(),
            format!("<{} listening 127.0.0.1:0>", channel.id())
        );
    });
}

/// A listener waits for reads only, never for writes, whatever `writable()` says (B8).
#[test]
fn a_listener_is_never_writable() {
    block_on(async {
        let map = Map::new();
        let (listening, _) = listener(Family::Inet).unwrap();
        let log = Log::default();
        let id = map
            .add(
                listening,
                Recorder {
                    writable: true,
                    ..Recorder::new("listener", &log)
                },
            )
            .unwrap();
        let pass = map.poll(Duration::from_millis(10)).await.unwrap();
        assert_eq!(pass.wanted, vec![(id, asyncore::Interest::READ)]);
        assert!(pass.events.is_empty() && log.entries().is_empty());
        map.close_all();
    });
}
