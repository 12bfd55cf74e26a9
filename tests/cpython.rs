//! The rest of CPython's test_asyncore and test_asynchat, ported over real sockets:
//! `DispatcherTests` (logging, the unhandled-event defaults, `readable`/`writable` defaults),
//! `HelperFunctionTests.test_readwriteexc` (`ExitNow` and other errors from every kind of
//! event), `BaseTestAPI.test_handle_accept`/`test_handle_accepted` (an overridden
//! `handle_accept`), `test_connection_attributes` (the listener's flags after the loop and
//! after close), and `TestAsynchatMocked.test_blockingioerror` through the reactor. The
//! scenarios that run a loop run free (`Map::run`) and in lock-step passes (`Map::poll`).

mod util;

use std::io::{self, Write};
use std::os::fd::OwnedFd;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::socket2::{SockRef, Socket};
use asyncore::{Address, Channel, Dispatcher, Event, ExitNow, Family, Interest, Map};
use util::{block_on, connector, listener, Log, Recorder, FAMILIES, LIMIT};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Free,
    LockStep,
}

const MODES: [Mode; 2] = [Mode::Free, Mode::LockStep];

/// Runs the map in `mode` until `done()` holds or the map empties: free-running, or one
/// lock-step pass at a time (each bounded by `LIMIT`).
async fn drive(map: &Map, mode: Mode, done: impl Fn() -> bool) -> io::Result<()> {
    match mode {
        Mode::Free => {
            let wait = async {
                while !done() {
                    tokio::task::yield_now().await;
                }
            };
            map.run_until(wait).await
        }
        Mode::LockStep => {
            while !done() && !map.is_empty() {
                map.poll(LIMIT).await?;
            }
            Ok(())
        }
    }
}

// ----- logging -----

use util::log::Captured;

const L1: &str = "Have you got anything without spam?";
const L2: &str = "Why can't she have egg bacon spam and sausage?";
const L3: &str = "THAT'S got spam in it!";

/// The child process of `log_info_goes_to_tracing_not_stdout` sets this.
const CHILD: &str = "ASYNCORE_TEST_LOG_INFO_CHILD";

/// test_log_info: asyncore prints `TYPE: message` on stdout; here each message is a `tracing`
/// event (the type as its level, or as a `kind` field for types that are not levels), and
/// nothing reaches stdout, with or without a subscriber.
#[test]
fn log_info_goes_to_tracing_not_stdout() {
    let log_three = || {
        let channel = Channel::create_socket(Family::Inet).unwrap();
        channel.log_info(L1, "EGGS");
        channel.log_info(L2, "info");
        channel.log_info(L3, "SPAM");
        channel.log_info("careful", "warning");
        channel.log_info("broken", "error");
    };
    if std::env::var_os(CHILD).is_some() {
        log_three(); // no subscriber: nothing anywhere
        return;
    }
    let captured = Captured::default();
    tracing::subscriber::with_default(captured.subscriber(tracing::Level::DEBUG), log_three);
    let eggs = captured.line(L1);
    assert!(
        eggs.starts_with(" INFO") && eggs.contains("kind=\"EGGS\""),
        "{eggs}"
    );
    let info = captured.line(L2);
    assert!(
        info.starts_with(" INFO") && !info.contains("kind="),
        "{info}"
    );
    assert!(captured.line(L3).contains("kind=\"SPAM\""));
    assert!(captured.line("careful").starts_with(" WARN"));
    assert!(captured.line("broken").starts_with("ERROR"));
    assert_eq!(captured.lines().len(), 5, "{:#?}", captured.lines());

    // The same calls in a process of their own, stdout captured: not a word of it there.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "log_info_goes_to_tracing_not_stdout",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1");
    let (status, stdout, stderr) = util::programs::run(child);
    assert!(status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(stdout.contains("1 passed"), "{stdout}");
    for message in [L1, L2, L3, "careful", "broken"] {
        assert!(!stdout.contains(message), "{message:?} on stdout: {stdout}");
    }
}

/// A dispatcher that overrides nothing: asyncore's `dispatcher` itself.
struct Plain;
impl Dispatcher for Plain {}

/// A connected TCP channel and its peer (a blocking std socket).
fn tcp_pair(family: Family) -> (Channel, std::net::TcpStream) {
    let ip = if family == Family::Inet6 {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let listener = std::net::TcpListener::bind(ip).unwrap();
    let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    theirs.set_read_timeout(Some(LIMIT)).unwrap();
    (Channel::try_from(ours).unwrap(), theirs)
}

fn send_urgent(peer: &std::net::TcpStream, byte: u8) {
    assert_eq!(SockRef::from(peer).send_out_of_band(&[byte]).unwrap(), 1);
}

/// test_unhandled, through the reactor: a dispatcher that overrides nothing logs "unhandled
/// … event" for every event it gets (connect, read, write, urgent data, an accepted
/// connection, close). asyncore logs them as warnings that it hides by default
/// (`ignore_log_types`); here they are `DEBUG` events.
#[test]
fn default_handlers_log_unhandled_events() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::DEBUG));
    block_on(async {
        let map = Map::new();
        // A connecting client whose peer sends data and an urgent byte.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = Channel::create_socket(Family::Inet).unwrap();
        client
            .connect(server.local_addr().unwrap().to_string().as_str())
            .unwrap();
        client.set_urgent_events(true).unwrap();
        map.add(client, Plain).unwrap();
        let (peer, _) = server.accept().unwrap();
        (&peer).write_all(b"data").unwrap();
        send_urgent(&peer, b'!');
        // A listener with a client waiting.
        let (listening, address) = listener(Family::Inet).unwrap();
        map.add(listening, Plain).unwrap();
        let _waiting = std::net::TcpStream::connect(address.as_inet().unwrap()).unwrap();

        let expected = [
            "unhandled connect event",
            "unhandled read event",
            "unhandled write event",
            "unhandled incoming priority event",
            "unhandled accepted event",
        ];
        let seen = || {
            let lines = captured.lines();
            expected
                .iter()
                .all(|message| lines.iter().any(|line| line.contains(message)))
        };
        for _ in 0..100 {
            if seen() {
                break;
            }
            map.poll(LIMIT).await.unwrap();
        }
        // The default handle_close logs too, then closes: a graceful shutdown asks for it.
        map.shutdown(LIMIT).await.unwrap();
        assert!(map.is_empty());
        for message in expected.iter().chain(&["unhandled close event"]) {
            let line = captured.line(message);
            assert!(line.starts_with("DEBUG"), "{line}");
            assert!(line.contains("channel=#"), "names the channel: {line}");
        }
    });
}

/// test_basic: `readable()` and `writable()` default to true; through the reactor, a
/// connected channel of a dispatcher that overrides nothing waits for both, a listener for
/// reads only.
#[test]
fn readable_and_writable_default_to_true() {
    block_on(async {
        for family in FAMILIES {
            let (channel, _peer): (Channel, Box<dyn std::any::Any>) = match family {
                Family::Unix => {
                    let (channel, peer) = util::socket_pair();
                    (channel, Box::new(peer))
                }
                _ => {
                    let (channel, peer) = tcp_pair(family);
                    (channel, Box::new(peer))
                }
            };
            assert!(Plain.readable(&channel) && Plain.writable(&channel));
            let (listening, _) = listener(family).unwrap();
            assert!(Plain.readable(&listening) && Plain.writable(&listening));
            let map = Map::new();
            let connected = map.add(channel, Plain).unwrap();
            let listening = map.add(listening, Plain).unwrap();
            let pass = map.poll(LIMIT).await.unwrap();
            assert_eq!(
                pass.wanted,
                [
                    (connected, Interest::READ | Interest::WRITE),
                    (listening, Interest::READ)
                ],
                "{family:?}"
            );
            assert_eq!(pass.events, [(connected, Event::Write)], "{family:?}");
            map.close_all();
        }
    });
}

// ----- ExitNow and errors from every kind of event -----

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Read,
    Write,
    Urgent,
    Close,
}

/// test_readwriteexc / test_readwrite: the callback of `path` fails with `ExitNow` (`exit`)
/// or with another error.
struct Failing {
    path: Path,
    exit: bool,
    log: Log,
}

impl Failing {
    fn fail(&self, what: &str) -> io::Result<()> {
        self.log.push(what);
        if self.exit {
            Err(ExitNow.into())
        } else {
            Err(io::Error::other(format!("{what} failed")))
        }
    }
}

impl Dispatcher for Failing {
    fn readable(&self, _: &Channel) -> bool {
        self.path != Path::Write
    }
    fn writable(&self, _: &Channel) -> bool {
        self.path == Path::Write
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        if self.path == Path::Read {
            return self.fail("read");
        }
        channel.recv(1024)?;
        Ok(())
    }
    fn handle_write(&mut self, _: &mut Channel) -> io::Result<()> {
        self.fail("write")
    }
    fn handle_expt(&mut self, channel: &mut Channel) -> io::Result<()> {
        if self.path == Path::Urgent {
            return self.fail("expt");
        }
        channel.recv_urgent()?;
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        if self.path == Path::Close {
            return self.fail("close");
        }
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("error {error}"));
        channel.close();
    }
}

/// `ExitNow` from a read, write, urgent-data or close callback ends the loop with it (the
/// channel stays in the map); any other error from the same callbacks reaches `handle_error`
/// and the loop goes on. Over TCP v4 and v6 (urgent data needs TCP), free-running and in
/// lock-step passes.
#[test]
fn exit_now_and_errors_from_every_event() {
    for family in [Family::Inet, Family::Inet6] {
        for mode in MODES {
            for path in [Path::Read, Path::Write, Path::Urgent, Path::Close] {
                for exit in [true, false] {
                    let what = format!("{family:?} {mode:?} {path:?} exit={exit}");
                    let log = Log::default();
                    block_on(async {
                        let (mut channel, mut peer) = tcp_pair(family);
                        channel.set_urgent_events(true).unwrap();
                        let map = Map::new();
                        let failing = Failing {
                            path,
                            exit,
                            log: log.clone(),
                        };
                        map.add(channel, failing).unwrap();
                        match path {
                            Path::Read => peer.write_all(b"data").unwrap(),
                            Path::Write => {}
                            Path::Urgent => send_urgent(&peer, b'!'),
                            Path::Close => peer.shutdown(std::net::Shutdown::Write).unwrap(),
                        }
                        let result = drive(&map, mode, || !log.entries().is_empty()).await;
                        if exit {
                            let error = result.unwrap_err();
                            assert!(ExitNow::is(&error), "{what}: {error}");
                            assert_eq!(map.len(), 1, "{what}: the channel stays");
                        } else {
                            result.unwrap();
                            // handle_error closed the channel and the loop went on to the end.
                            drive(&map, mode, || false).await.unwrap();
                            assert!(map.is_empty(), "{what}");
                        }
                        map.close_all();
                    });
                    let name = match path {
                        Path::Read => "read",
                        Path::Write => "write",
                        Path::Urgent => "expt",
                        Path::Close => "close",
                    };
                    let mut expected = vec![name.to_string()];
                    if !exit {
                        expected.push(format!("error {name} failed"));
                    }
                    assert_eq!(log.entries(), expected, "{what}");
                }
            }
        }
    }
}

// ----- an overridden handle_accept; the listener's flags -----

/// Logs every callback that BaseTestHandler forbids ("not supposed to be called").
struct Forbidding {
    log: Log,
    /// Accept through the default path (test_handle_accepted) rather than not at all
    /// (test_handle_accept).
    accept: bool,
}

impl Dispatcher for Forbidding {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_accept(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("accept");
        if self.accept {
            // asyncore.dispatcher.handle_accept(self)
            if let Some((connection, address)) = channel.accept()? {
                self.handle_accepted(channel, connection, address)?;
            }
        }
        Ok(())
    }
    fn handle_accepted(
        &mut self,
        _: &mut Channel,
        mut connection: Channel,
        _: Address,
    ) -> io::Result<()> {
        if !self.accept {
            self.log.push("unexpected handle_accepted");
        }
        connection.close();
        self.log.push("accepted");
        Ok(())
    }
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        self.log.push("unexpected handle_connect");
        Ok(())
    }
    fn handle_expt(&mut self, _: &mut Channel) -> io::Result<()> {
        self.log.push("unexpected handle_expt");
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("unexpected handle_close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("unexpected handle_error {error}"));
        channel.close();
    }
}

/// test_handle_accept: an overridden `handle_accept` runs when a client connects, instead of
/// the default accept (and nothing else runs); test_handle_accepted: an override that calls
/// the default path gets `handle_accepted`.
#[test]
fn an_overridden_handle_accept() {
    for family in FAMILIES {
        for mode in MODES {
            for accept in [false, true] {
                let what = format!("{family:?} {mode:?} accept={accept}");
                let log = Log::default();
                block_on(async {
                    let map = Map::new();
                    let (listening, address) = listener(family).unwrap();
                    let forbidding = Forbidding {
                        log: log.clone(),
                        accept,
                    };
                    map.add(listening, forbidding).unwrap();
                    let client = Recorder {
                        readable: false,
                        ..Recorder::new("client", &log)
                    };
                    map.add(connector(&address).unwrap(), client).unwrap();
                    let flag = if accept { "accepted" } else { "accept" };
                    drive(&map, mode, || log.contains(flag)).await.unwrap();
                    map.close_all();
                });
                assert!(log.contains("accept"), "{what}: {:?}", log.entries());
                assert_eq!(log.contains("accepted"), accept, "{what}");
                assert!(
                    !log.entries().iter().any(|e| e.starts_with("unexpected")),
                    "{what}: {:?}",
                    log.entries()
                );
            }
        }
    }
}

/// test_connection_attributes: the listener is accepting and not connected before the loop,
/// after it (the client connected), after the client closed, and neither once closed itself.
#[test]
fn listener_flags_after_the_loop_and_after_close() {
    for family in FAMILIES {
        for mode in MODES {
            let what = format!("{family:?} {mode:?}");
            let log = Log::default();
            block_on(async {
                let map = Map::new();
                let (listening, address) = listener(family).unwrap();
                assert!(listening.accepting() && !listening.connected());
                let client = connector(&address).unwrap();
                assert!(!client.accepting());
                let server = map.add(listening, Plain).unwrap();
                let recorder = Recorder {
                    readable: false,
                    ..Recorder::new("client", &log)
                };
                let client = map.add(client, recorder).unwrap();
                let flags = |id| {
                    map.with::<Plain, _>(id, |_, ch| (ch.connected(), ch.accepting()))
                        .or_else(|_| {
                            map.with::<Recorder, _>(id, |_, ch| (ch.connected(), ch.accepting()))
                        })
                        .unwrap()
                };
                drive(&map, mode, || {
                    log.contains("client: connect connected=true")
                })
                .await
                .unwrap();
                assert_eq!(
                    flags(server),
                    (false, true),
                    "{what}: server after the loop"
                );
                assert_eq!(
                    flags(client),
                    (true, false),
                    "{what}: client after the loop"
                );

                map.close_channel(client);
                assert_eq!(
                    flags(server),
                    (false, true),
                    "{what}: server after the client closed"
                );
                let closed = map
                    .with::<Plain, _>(server, |_, ch| {
                        ch.close();
                        (ch.connected(), ch.accepting(), ch.is_closed())
                    })
                    .unwrap();
                assert_eq!(closed, (false, false, true), "{what}: server closed");
                assert!(map.is_empty(), "{what}");
            });
        }
    }
}

// ----- a read event that finds nothing (test_blockingioerror) -----

/// Reads everything waiting on its duplicate of the victim's socket, then closes: so the
/// victim's read event, in the same pass, finds nothing (what CPython's test mocks with a
/// socket whose `recv` raises `BlockingIOError`).
struct Thief;

impl Dispatcher for Thief {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(65536)?;
        channel.close();
        Ok(())
    }
}

/// A victim and a thief reading the same socket (two descriptors of it, so the reactor
/// watches both), and the peer; the thief's channel is made first, so it reads first in a pass.
fn victim_and_thief() -> (Channel, Channel, std::os::unix::net::UnixStream) {
    let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let duplicate = Socket::from(OwnedFd::from(ours.try_clone().unwrap()));
    let thief = Channel::from_socket(duplicate).unwrap();
    let victim = Channel::try_from(ours).unwrap();
    (thief, victim, peer)
}

/// A chat's hooks, logged.
struct Lines(Log);

impl ChatHandler for Lines {
    fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
        let line = chat.take_data();
        self.0
            .push(format!("line {}", String::from_utf8_lossy(&line)));
        Ok(())
    }
    fn handle_error(&mut self, _: &mut Chat, channel: &mut Channel, error: io::Error) {
        self.0.push(format!("error {error}"));
        channel.close();
    }
}

/// test_blockingioerror, through the reactor: a read event whose `recv` would block (the
/// data was taken between the readiness and the read) is not an error, for an `AsyncChat`
/// (as in asynchat) and for a plain dispatcher (asyncore's `recv` raises `BlockingIOError`
/// there, which reaches `handle_error` and closes the channel). The channel then reads on as
/// before. In lock-step passes, so that both read events are in one pass.
#[test]
fn a_read_event_that_would_block_is_not_an_error() {
    for chat in [true, false] {
        let log = Log::default();
        block_on(async {
            let (thief, victim, mut peer) = victim_and_thief();
            let map = Map::new();
            let thief = map.add(thief, Thief).unwrap();
            let victim = if chat {
                map.add(victim, AsyncChat::new(Lines(log.clone()), b"\n"))
                    .unwrap()
            } else {
                map.add(victim, Recorder::new("victim", &log)).unwrap()
            };
            peer.write_all(b"stolen\n").unwrap();
            let pass = map.poll(LIMIT).await.unwrap();
            assert_eq!(
                pass.events,
                [(thief, Event::Read), (victim, Event::Read)],
                "chat={chat}: both read in one pass: {pass:?}"
            );
            assert!(map.contains(victim) && !map.contains(thief));

            peer.write_all(b"kept\n").unwrap();
            let pass = map.poll(LIMIT).await.unwrap();
            assert_eq!(pass.events, [(victim, Event::Read)], "chat={chat}");
            map.close_all();
        });
        let expected = if chat {
            vec!["line kept".to_string()]
        } else {
            // The recorder logs "read" before its recv: the first read found nothing.
            ["victim: read", "victim: read", "victim: data 5"]
                .map(String::from)
                .to_vec()
        };
        assert_eq!(log.entries(), expected, "chat={chat}");
    }
}
