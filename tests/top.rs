//! `examples/top.rs` in a real terminal: tmux runs it (`new-session -d`), `capture-pane -p`
//! reads its screen, `send-keys` types. Checks the first screen (header, totals, the columns,
//! the listener's row, the demo's spinning and stalled channels), a client's row, sorting and
//! `q`. Skipped, with a message, where tmux is not installed.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use util::LIMIT;

/// A private tmux server (its own socket), killed and its socket removed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|out| out.status.success())
    }

    fn new() -> Tmux {
        let socket = std::env::temp_dir().join(format!("asyncore-top-{}.tmux", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        Tmux { socket }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits (at most LIMIT) until the screen satisfies `done`; returns that screen.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The row of the channel whose dispatcher is `name`.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(name))
}

#[test]
fn top_shows_the_map_live() {
    if !Tmux::available() {
        eprintln!(
            "skipped: tmux is not installed (apt-get install tmux); top's screen is not checked"
        );
        return;
    }
    let top = util::programs::example("top");
    let tmux = Tmux::new();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "24",
        top.to_str().unwrap(),
        "127.0.0.1:0",
        "--demo",
        ";",
        "set-option",
        "-t",
        "top",
        "remain-on-exit",
        "on",
    ]);

    // The first screen.
    let first = tmux.wait_for("first screen", |screen| {
        screen.contains("asyncore top:") && screen.contains("accepting")
    });
    let header = first.lines().next().unwrap();
    assert!(
        header.contains("chat room listening on 127.0.0.1:"),
        "{first}"
    );
    assert!(header.contains("sorted by activity"), "{first}");
    let totals = first.lines().nth(1).unwrap();
    for field in [
        "channels 3",
        "callbacks/s",
        "in ",
        "out ",
        "queued",
        "spinning",
        "stalled",
    ] {
        assert!(totals.contains(field), "{field:?} missing:\n{first}");
    }
    let heading = first
        .lines()
        .find(|line| line.starts_with("ID"))
        .unwrap_or_else(|| panic!("no column headings:\n{first}"));
    let columns: Vec<&str> = heading.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "ID",
            "DISPATCHER",
            "STATE",
            "PEER",
            "WANTS",
            "READY",
            "CB/S",
            "IN/S",
            "OUT/S",
            "QUEUED",
            "IDLE",
            "MARK"
        ],
        "{first}"
    );
    let room = row(&first, "Room").unwrap_or_else(|| panic!("no listener row:\n{first}"));
    assert!(
        room.starts_with("#1 ") && room.contains("accepting") && room.contains("READ"),
        "{room}"
    );
    assert!(
        row(&first, "Spinner").is_some() && row(&first, "EchoHandler").is_some(),
        "{first}"
    );
    assert!(first.contains("q: quit"), "{first}");

    // The demo's channels get their marks (at the latest once a second snapshot compares).
    let marked = tmux.wait_for("spinning and stalled marks", |screen| {
        row(screen, "Spinner").is_some_and(|r| r.ends_with("spinning"))
            && row(screen, "EchoHandler").is_some_and(|r| r.ends_with("stalled"))
    });
    let echo = row(&marked, "EchoHandler").unwrap();
    assert!(echo.contains(" P "), "a paused output queue: {echo}");

    // A client joins the room: its row appears.
    let port: u16 = header
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {header:?}"));
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    let other = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    other.set_read_timeout(Some(LIMIT)).unwrap();
    let joined = tmux.wait_for("two members", |screen| {
        screen
            .lines()
            .filter(|l| l.contains("AsyncChat<Member>"))
            .count()
            == 2
    });
    assert!(joined.contains("channels 5"), "{joined}");
    // The room works: a line from one member reaches the other.
    client.write_all(b"hello room\n").unwrap();
    let mut heard = String::new();
    BufReader::new(&other).read_line(&mut heard).unwrap();
    assert!(heard.ends_with(": hello room\n"), "{heard:?}");

    // Sorting, then quitting.
    tmux.run(&["send-keys", "-t", "top", "s"]);
    tmux.wait_for("sorted by bytes queued", |screen| {
        screen.contains("sorted by bytes queued")
    });
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = tmux.run(&[
            "display-message",
            "-p",
            "-t",
            "top",
            "#{pane_dead} #{pane_dead_status}",
        ]);
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // tmux may mark the pane dead a moment before it records the exit status.
        if state.starts_with('1') && state.split_whitespace().count() == 2 {
            assert_eq!(state, "1 0", "top's exit");
            break;
        }
        assert!(Instant::now() < deadline, "top did not quit: {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server shut down with it: the clients see end of file.
    let mut rest = String::new();
    assert_eq!(BufReader::new(&client).read_line(&mut rest).unwrap(), 0);
}
