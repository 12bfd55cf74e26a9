//! Where a port depends on asyncore's exact behaviour: scenarios run pass by pass (`Map::poll`)
//! and compared with what Python's own asyncore/asynchat does in the same scenario.
//!
//! Each scenario has its Python twin below. The expected passes are written out in the tests
//! (they were taken from Python 3.11); when `python3` with `asyncore` (≤ 3.11) is installed, the
//! twin also runs, and its passes must be the ones written down, so a difference between the
//! two is always a deliberate, documented one.

mod util;

use std::io::{self, Read, Write};
use std::process::Command;
use std::time::Duration;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{Channel, Dispatcher, Event, Family, Map};
use util::programs::python3;
use util::{any_address, block_on, Log, LIMIT};

/// How long a pass that should find nothing waits (asyncore's twin uses the same timeout).
const QUIET: Duration = Duration::from_millis(50);

/// Runs a Python twin with `args`; its stdout lines, or `None` without Python's asyncore.
fn python(script: &str, args: &[String]) -> Option<Vec<String>> {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*AVAILABLE.get_or_init(python3) {
        eprintln!("skipped the Python twin: python3 with asyncore is not available");
        return None;
    }
    let mut command = Command::new("python3");
    command.args(["-W", "ignore", "-c", script]).args(args);
    let (status, stdout, stderr) = util::programs::run(command);
    assert!(status.success(), "the Python twin failed: {stderr}");
    Some(
        String::from_utf8(stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

fn name(event: Event) -> &'static str {
    match event {
        Event::Read => "read",
        Event::Write => "write",
        Event::Expt => "expt",
        Event::Connect => "connect",
        Event::Accept => "accept",
        Event::ReadEof => "read_eof",
        Event::Close => "close",
        Event::Error => "error",
        _ => "other",
    }
}

// ----- handle_connect: when it runs, what follows it, and what a failure does -----

/// The Python twin of `connect_passes`: a client whose `handle_connect` fails `fails` times
/// (its `handle_error` does not close), against a server that sends "hi" before pass
/// `send_before`. Prints `connected connecting events` after each pass.
const CONNECT_TWIN: &str = r#"
import asyncore, socket, sys
writable, readable = sys.argv[1] == "1", sys.argv[2] == "1"
fails, send_before, passes = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
log = []
class Client(asyncore.dispatcher):
    fails_left = fails
    def writable(self): return writable
    def readable(self): return readable
    def handle_connect(self):
        log.append("connect")
        if self.fails_left:
            self.fails_left -= 1
            raise ValueError("handle_connect failed")
    def handle_write(self): log.append("write")
    def handle_read(self): self.recv(100); log.append("read")
    def handle_error(self): log.append("error")
    def handle_close(self): log.append("close"); self.close()
m = {}
c = Client(map=m); c.create_socket(); c.connect(srv.getsockname())
conn, _ = srv.accept()
for p in range(passes):
    if p == send_before: conn.sendall(b"hi")
    log.clear()
    asyncore.loop(timeout=0.05, map=m, count=1)
    print(f"{c.connected} {c.connecting} " + ",".join(log))
"#;

/// The Rust side of `CONNECT_TWIN`.
struct Connecting {
    log: Log,
    writable: bool,
    readable: bool,
    fails: usize,
}

impl Dispatcher for Connecting {
    fn readable(&self, _: &Channel) -> bool {
        self.readable
    }
    fn writable(&self, _: &Channel) -> bool {
        self.writable
    }
    fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push(format!(
            "connect connected={} connecting={}",
            channel.connected(),
            channel.connecting()
        ));
        if self.fails > 0 {
            self.fails -= 1;
            return Err(io::Error::other("handle_connect failed"));
        }
        Ok(())
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(100)?;
        Ok(())
    }
    fn handle_write(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!(
            "error connected={} connecting={} {error}",
            channel.connected(),
            channel.connecting()
        ));
    }
}

/// A connect scenario pass by pass: `connected connecting events` after each pass, as the
/// Python twin prints them. `expected` is what each pass must show; a pass expected to find
/// nothing waits `QUIET`, the others up to `LIMIT`.
fn connect_passes(
    writable: bool,
    readable: bool,
    fails: usize,
    send_before: Option<usize>,
    expected: &[&str],
) -> (Vec<String>, Log) {
    let log = Log::default();
    let lines = block_on(async {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = Channel::create_socket(Family::Inet).unwrap();
        client
            .connect(server.local_addr().unwrap().to_string().as_str())
            .unwrap();
        let map = Map::new();
        let id = map
            .add(
                client,
                Connecting {
                    log: log.clone(),
                    writable,
                    readable,
                    fails,
                },
            )
            .unwrap();
        let (mut peer, _) = server.accept().unwrap();
        let mut lines = Vec::new();
        for (n, want) in expected.iter().enumerate() {
            if send_before == Some(n) {
                io::Write::write_all(&mut peer, b"hi").unwrap();
            }
            let quiet = want.split(' ').nth(2).is_none_or(str::is_empty);
            let pass = map.poll(if quiet { QUIET } else { LIMIT }).await.unwrap();
            let events: Vec<&str> = pass.events.iter().map(|(_, e)| name(*e)).collect();
            let (connected, connecting) = map
                .with::<Connecting, _>(id, |_, ch| (ch.connected(), ch.connecting()))
                .unwrap();
            let py = |flag: bool| if flag { "True" } else { "False" };
            lines.push(format!(
                "{} {} {}",
                py(connected),
                py(connecting),
                events.join(",")
            ));
        }
        map.close_all();
        lines
    });
    (lines, log)
}

fn twin_args(
    writable: bool,
    readable: bool,
    fails: usize,
    send_before: Option<usize>,
    passes: usize,
) -> Vec<String> {
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    vec![
        flag(writable),
        flag(readable),
        fails.to_string(),
        send_before.map_or(-1, |n| n as i64).to_string(),
        passes.to_string(),
    ]
}

/// A `handle_connect` that fails is run again at the next event, as in asyncore (which sets
/// `connected` only after `handle_connect` returns): `handle_error` sees the connect still
/// pending, and no `handle_write` follows the failure in that event. Identical to Python pass
/// for pass.
#[test]
fn a_failed_handle_connect_is_retried_at_the_next_event() {
    let expected = [
        "False True connect,error",
        "False True connect,error",
        "True False connect,write",
        "True False write",
    ];
    let (passes, log) = connect_passes(true, false, 2, None, &expected);
    assert_eq!(passes, expected);
    assert_eq!(
        log.entries(),
        [
            // Different: connected() is already true inside handle_connect (asyncore: false).
            "connect connected=true connecting=false",
            "error connected=false connecting=true handle_connect failed",
            "connect connected=true connecting=false",
            "error connected=false connecting=true handle_connect failed",
            "connect connected=true connecting=false",
        ]
    );
    if let Some(twin) = python(CONNECT_TWIN, &twin_args(true, false, 2, None, 4)) {
        assert_eq!(twin, expected, "Python's asyncore");
    }
}

/// Readable and writable, data waiting: the read event's `handle_connect` fails, the write
/// event of the same pass runs it again, and only then `handle_write`. Identical to Python.
#[test]
fn a_failed_handle_connect_in_the_read_event_is_retried_by_the_write_event() {
    let expected = [
        "True False connect,error,connect,write",
        "True False read,write",
        "True False write",
    ];
    let (passes, _) = connect_passes(true, true, 1, Some(0), &expected);
    assert_eq!(passes, expected);
    if let Some(twin) = python(CONNECT_TWIN, &twin_args(true, true, 1, Some(0), 3)) {
        assert_eq!(twin, expected, "Python's asyncore");
    }
}

/// A connecting channel whose `writable()` is false. Python waits only for what `readable()`
/// and `writable()` ask, so it learns of the connect only at the first read event (and never,
/// if the peer sends nothing). Here the reactor waits for writability while a connect is
/// pending, so `handle_connect` runs as soon as the connect completes; but, as in Python,
/// `handle_write` never runs for a channel whose `writable()` said no.
#[test]
fn a_connecting_channel_that_is_not_writable_gets_handle_connect_but_no_handle_write() {
    let expected = [
        "True False connect",
        "True False ",
        "True False read",
        "True False ",
    ];
    let (passes, _) = connect_passes(false, true, 0, Some(2), &expected);
    assert_eq!(passes, expected);
    if let Some(twin) = python(CONNECT_TWIN, &twin_args(false, true, 0, Some(2), 4)) {
        assert_eq!(
            twin,
            [
                "False True ",
                "False True ",
                "True False connect,read",
                "True False ",
            ],
            "Python's asyncore"
        );
    }
    // Neither readable nor writable: Python never completes the connect; here it completes,
    // and nothing else runs.
    let (passes, _) = connect_passes(false, false, 0, Some(0), &["True False connect"]);
    assert_eq!(passes, ["True False connect"]);
}

/// A `handle_connect` that panics or returns `ExitNow` fails too: the panic reaches
/// `handle_error` with the connect still pending, `ExitNow` ends the pass, and either way the
/// next event runs `handle_connect` again (asyncore: `ExitNow` leaves `connected` false, so the
/// next `loop()` calls it again).
#[test]
fn a_panicking_or_exiting_handle_connect_is_retried() {
    struct Once {
        log: Log,
        exit: bool,
        failed: bool,
    }
    impl Dispatcher for Once {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
            self.log.push("connect");
            if std::mem::replace(&mut self.failed, true) {
                return Ok(());
            }
            if self.exit {
                return Err(asyncore::ExitNow.into());
            }
            panic!("handle_connect panicked on purpose");
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.log.push("write");
            channel.close();
            Ok(())
        }
        fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
            self.log
                .push(format!("error connecting={} {error}", channel.connecting()));
        }
    }
    for exit in [false, true] {
        let log = Log::default();
        block_on(async {
            let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = Channel::create_socket(Family::Inet).unwrap();
            client
                .connect(server.local_addr().unwrap().to_string().as_str())
                .unwrap();
            let map = Map::new();
            let once = Once {
                log: log.clone(),
                exit,
                failed: false,
            };
            map.add(client, once).unwrap();
            let _peer = server.accept().unwrap();
            let first = map.poll(LIMIT).await;
            if exit {
                assert!(asyncore::ExitNow::is(&first.unwrap_err()));
            } else {
                let names: Vec<_> = first.unwrap().events.iter().map(|e| name(e.1)).collect();
                assert_eq!(names, ["connect", "error"]);
            }
            let second = map.poll(LIMIT).await.unwrap();
            let names: Vec<_> = second.events.iter().map(|e| name(e.1)).collect();
            assert_eq!(names, ["connect", "write"], "exit={exit}");
            assert!(map.is_empty());
        });
        let mut expected = vec!["connect"];
        let error =
            "error connecting=true handle_connect panicked: handle_connect panicked on purpose";
        if !exit {
            expected.push(error);
        }
        expected.extend(["connect", "write"]);
        assert_eq!(log.entries(), expected, "exit={exit}");
    }
}

// ----- asynchat: a reply pushed right before the channel closes -----

/// The Python twin of `push_then_close`: an `async_chat` on one end of a socket pair answers
/// "go\n" with `size` bytes, then closes (`close`) or closes when done (`close_when_done`).
/// With `close`, the peer reads only once the map is empty; with `close_when_done`, between
/// passes. Prints how many bytes the peer got.
const PUSH_CLOSE_TWIN: &str = r#"
import asyncore, asynchat, socket, sys
mode, size, sndbuf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a, b = socket.socketpair()
if sndbuf:
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
reply = (bytes(range(251)) * (size // 251 + 1))[:size]
class Reply(asynchat.async_chat):
    def collect_incoming_data(self, data): pass
    def found_terminator(self):
        self.push(reply)
        if mode == "close": self.close()
        else: self.close_when_done()
m = {}
r = Reply(a, map=m); r.set_terminator(b"\n")
b.sendall(b"go\n")
got = bytearray()
b.setblocking(False)
while m:
    asyncore.loop(timeout=1, map=m, count=1)
    if mode == "close": continue
    try:
        while True:
            d = b.recv(1 << 20)
            if not d: break
            got += d
    except BlockingIOError:
        pass
b.setblocking(True)
while True:
    d = b.recv(1 << 20)
    if not d: break
    got += d
assert got == reply[:len(got)]
print(len(got))
"#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Goodbye {
    /// `chat.push(reply); channel.close()`
    Close,
    /// `chat.push(reply); chat.close_when_done()`
    CloseWhenDone,
}

fn reply(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Answers the first line with `reply(size)`, then closes as `goodbye` says.
struct Replier {
    size: usize,
    goodbye: Goodbye,
}

impl ChatHandler for Replier {
    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        chat.take_data();
        chat.push(reply(self.size));
        match self.goodbye {
            Goodbye::Close => channel.close(),
            Goodbye::CloseWhenDone => chat.close_when_done(),
        }
        Ok(())
    }
}

/// The peer's end of a connection: a blocking std socket with `LIMIT` as its read timeout.
trait Peer: Read + Write + Send {}
impl<T: Read + Write + Send> Peer for T {}

/// A connected channel over `family` (loopback TCP, or a Unix socket whose file is removed
/// once connected) and the peer's end.
fn connection(family: Family) -> (Channel, Box<dyn Peer>) {
    let address = any_address(family);
    match &address {
        asyncore::Address::Inet(ip) => {
            let listener = std::net::TcpListener::bind(ip).unwrap();
            let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (ours, _) = listener.accept().unwrap();
            ours.set_nonblocking(true).unwrap();
            peer.set_read_timeout(Some(LIMIT)).unwrap();
            let ours = tokio::net::TcpStream::from_std(ours).unwrap();
            (Channel::from_tcp(ours), Box::new(peer))
        }
        asyncore::Address::Unix(path) => {
            let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
            let peer = std::os::unix::net::UnixStream::connect(path).unwrap();
            let (ours, _) = listener.accept().unwrap();
            std::fs::remove_file(path).unwrap();
            ours.set_nonblocking(true).unwrap();
            peer.set_read_timeout(Some(LIMIT)).unwrap();
            let ours = tokio::net::UnixStream::from_std(ours).unwrap();
            (Channel::from_unix(ours), Box::new(peer))
        }
        other => panic!("no connection for {other:?}"),
    }
}

/// Serves one `Replier` on `ours` and returns what the peer read up to end of file. With
/// `Goodbye::Close` the peer starts reading only once the map is empty, so the count is what
/// the close itself delivered; with `CloseWhenDone` it reads from the start.
fn push_then_close(
    connect: impl FnOnce() -> (Channel, Box<dyn Peer>),
    size: usize,
    goodbye: Goodbye,
    sndbuf: Option<usize>,
) -> Vec<u8> {
    block_on(async move {
        let (ours, mut peer) = connect();
        if let Some(size) = sndbuf {
            ours.socket().unwrap().set_send_buffer_size(size).unwrap();
        }
        let map = Map::new();
        map.add(ours, AsyncChat::new(Replier { size, goodbye }, b"\n"))
            .unwrap();
        peer.write_all(b"go\n").unwrap();
        let (go, start) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            start.recv().unwrap();
            let mut all = Vec::new();
            peer.read_to_end(&mut all).map(|_| all)
        });
        if goodbye == Goodbye::CloseWhenDone {
            go.send(()).unwrap();
        }
        map.run().await.unwrap();
        let _ = go.send(());
        tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap()
            .unwrap()
    })
}

/// asynchat's `push` sends at once, so a reply pushed right before `close()` reaches the
/// peer. Here `push` only queues, and `close` sends what the socket takes first: a reply that
/// fits in the socket's buffer arrives whole, then end of file. Over TCP (v4, v6) and Unix
/// sockets; `close_when_done` likewise.
#[test]
fn a_reply_pushed_before_close_reaches_the_peer() {
    for family in util::FAMILIES {
        for size in [10, 4096] {
            for goodbye in [Goodbye::Close, Goodbye::CloseWhenDone] {
                let got = push_then_close(|| connection(family), size, goodbye, None);
                assert!(
                    got == reply(size),
                    "{family:?} {goodbye:?}: the peer got {} of {size} bytes",
                    got.len()
                );
            }
        }
    }
}

/// A reply larger than the socket's send buffer, pushed before `close()`: the close sends
/// what the socket takes without waiting, and the rest is dropped with the socket (asynchat
/// sends one chunk of at most 64 KiB inside `push` and drops the rest too). The peer gets a
/// prefix of the reply, then end of file; `close_when_done` delivers all of it.
#[test]
fn a_reply_larger_than_the_socket_buffer() {
    const BIG: usize = 1_000_000;
    for family in util::FAMILIES {
        let got = push_then_close(|| connection(family), BIG, Goodbye::Close, Some(4096));
        assert!(
            !got.is_empty() && got.len() < BIG,
            "{family:?}: the peer got {} bytes",
            got.len()
        );
        assert!(
            got[..] == reply(BIG)[..got.len()],
            "{family:?}: not a prefix"
        );
        let got = push_then_close(
            || connection(family),
            BIG,
            Goodbye::CloseWhenDone,
            Some(4096),
        );
        assert!(
            got == reply(BIG),
            "{family:?} close_when_done: the peer got {} of {BIG} bytes",
            got.len()
        );
    }
}

/// Side by side with asynchat on a Unix socket pair: after `push` and `close`, the peer gets at
/// least what it gets from asynchat (which sends one chunk of at most 64 KiB), with default
/// and with small send buffers; after `close_when_done`, everything, as from asynchat.
#[test]
fn push_then_close_delivers_at_least_what_asynchat_does() {
    let cases = [
        (Goodbye::Close, 10, None),
        (Goodbye::Close, 100_000, None),
        (Goodbye::Close, 1_000_000, None),
        (Goodbye::Close, 1_000_000, Some(4096)),
        (Goodbye::CloseWhenDone, 100_000, None),
        (Goodbye::CloseWhenDone, 1_000_000, Some(4096)),
    ];
    for (goodbye, size, sndbuf) in cases {
        let pair = || {
            let (ours, theirs) = util::socket_pair();
            (ours, Box::new(theirs) as Box<dyn Peer>)
        };
        let got = push_then_close(pair, size, goodbye, sndbuf);
        assert!(got[..] == reply(size)[..got.len()], "not a prefix");
        if goodbye == Goodbye::CloseWhenDone || size <= 65536 {
            assert_eq!(got.len(), size, "{goodbye:?} {size}");
        }
        let mode = match goodbye {
            Goodbye::Close => "close",
            Goodbye::CloseWhenDone => "close_when_done",
        };
        let args = [
            mode.to_string(),
            size.to_string(),
            sndbuf.unwrap_or(0).to_string(),
        ];
        if let Some(twin) = python(PUSH_CLOSE_TWIN, &args) {
            let python_got: usize = twin[0].parse().unwrap();
            assert!(
                got.len() >= python_got,
                "{goodbye:?} {size} {sndbuf:?}: {} bytes here, {python_got} from asynchat",
                got.len()
            );
            eprintln!(
                "{mode} {size} {sndbuf:?}: {} here, {python_got} from asynchat",
                got.len()
            );
        }
    }
}

/// The other ways a chat's channel closes send the queued reply first too: from native code
/// (`Map::with`), from `handle_close` (a goodbye pushed there, then `close()`, as a port of
/// asynchat's `handle_close` writes it), and `close_all`.
#[test]
fn every_close_of_a_chat_sends_its_queued_reply() {
    struct Goodbye;
    impl ChatHandler for Goodbye {
        fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
            chat.take_data();
            Ok(())
        }
        fn handle_read_eof(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
            channel.request_close();
            Ok(())
        }
        fn handle_close(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
            chat.push("421 closing\r\n");
            channel.close();
            Ok(())
        }
    }
    for way in ["with", "handle_close", "close_all"] {
        let got = block_on(async {
            let (ours, mut peer) = util::socket_pair();
            let map = Map::new();
            let id = map.add(ours, AsyncChat::new(Goodbye, b"\r\n")).unwrap();
            // One pass: the reactor has asked the chat what it waits for.
            map.poll(QUIET).await.unwrap();
            match way {
                "with" => map
                    .with::<AsyncChat<Goodbye>, _>(id, |chat, channel| {
                        chat.push("bye\r\n");
                        channel.close();
                    })
                    .unwrap(),
                "handle_close" => {
                    peer.shutdown(std::net::Shutdown::Write).unwrap();
                    map.run().await.unwrap();
                }
                _ => {
                    map.with::<AsyncChat<Goodbye>, _>(id, |chat, _| chat.push("bye\r\n"))
                        .unwrap();
                    map.close_all();
                }
            }
            assert!(map.is_empty());
            let mut got = String::new();
            peer.read_to_string(&mut got).unwrap();
            got
        });
        let expected = if way == "handle_close" {
            "421 closing\r\n"
        } else {
            "bye\r\n"
        };
        assert_eq!(got, expected, "{way}");
    }
}
