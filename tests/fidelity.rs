//! Where a port depends on asyncore's exact behaviour: scenarios run pass by pass (`Map::poll`)
//! and compared with what Python's own asyncore/asynchat does in the same scenario.
//!
//! Each scenario has its Python twin below. The expected passes are written out in the tests
//! (they were taken from Python 3.11); when `python3` with `asyncore` (≤ 3.11) is installed, the
//! twin also runs, and its passes must be the ones written down, so a difference between the
//! two is always a deliberate, documented one.

mod util;

use std::cell::Cell;
use std::io;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{Channel, Dispatcher, Event, Family, Map};
use util::programs::python3;
use util::{block_on, Log, LIMIT};

/// How long a pass that should find nothing waits (asyncore's twin uses the same timeout).
const QUIET: Duration = Duration::from_millis(50);

/// Runs a Python twin with `args`; its stdout lines, or `None` without Python's asyncore.
fn python(script: &str, args: &[String]) -> Option<Vec<String>> {
    if !python3() {
        eprintln!("skipped the Python twin: python3 with asyncore is not available");
        return None;
    }
    let output = Command::new("python3")
        .args(["-W", "ignore", "-c", script])
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the Python twin failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8(output.stdout)
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
