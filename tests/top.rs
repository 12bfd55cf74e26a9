//! `examples/top.rs` in a real terminal: tmux runs it (`new-session -d`), `capture-pane -p`
//! reads its screen, `send-keys` types. Checks the first screen in 110 and in 80 columns
//! (header, totals, the columns, the listener's row with its whole address, the demo's
//! spinning and stalled channels with whole marks), the clients' rows, sorting and `q`.
//! Skipped, with a message, where tmux is not installed.

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

    /// A server of its own for each test (`name`), which run at the same time.
    fn new(name: &str) -> Tmux {
        let socket = std::env::temp_dir().join(format!(
            "asyncore-test-{}-top-{name}.tmux",
            std::process::id()
        ));
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

/// Starts `top --demo` in a terminal `columns` wide; returns it, its first screen (once the
/// demo's channels have their marks) and the port it listens on.
fn start_top(columns: u16) -> (Tmux, String, u16) {
    let top = util::programs::example("top");
    let tmux = Tmux::new(&columns.to_string());
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        &columns.to_string(),
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
    // The demo's channels get their marks once a second snapshot compares.
    let first = tmux.wait_for("first screen with its marks", |screen| {
        screen.contains("asyncore top:")
            && row(screen, "Spinner").is_some_and(|r| r.ends_with("spinning"))
            && row(screen, "EchoHandler").is_some_and(|r| r.ends_with("stalled"))
    });
    let header = first.lines().next().unwrap();
    let port: u16 = header
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {header:?}"));
    (tmux, first, port)
}

/// The first screen in `columns`: the header and every total, the column headings
/// `expected`, the listener's row with its whole address, the demo's channels with whole
/// marks, and the keys.
fn check_first_screen(first: &str, port: u16, columns: usize, expected: &[&str]) {
    assert!(
        first.lines().all(|l| l.chars().count() <= columns),
        "{first}"
    );
    let header = first.lines().next().unwrap();
    assert!(
        header.contains("chat room listening on 127.0.0.1:"),
        "{first}"
    );
    assert!(header.contains("sorted by activity"), "{first}");
    // The totals, on one line or two, none cut.
    let totals: Vec<&str> = first
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with('─'))
        .collect();
    let totals = totals.join("  ");
    for field in [
        "channels 3",
        "callbacks/s ",
        "in ",
        "out ",
        "queued ",
        "spinning 1",
        "stalled 1",
    ] {
        assert!(totals.contains(field), "{field:?} missing:\n{first}");
    }
    let heading = first
        .lines()
        .find(|line| line.starts_with("ID"))
        .unwrap_or_else(|| panic!("no column headings:\n{first}"));
    let columns: Vec<&str> = heading.split_whitespace().collect();
    assert_eq!(columns, expected, "{first}");
    let room = row(first, "Room").unwrap_or_else(|| panic!("no listener row:\n{first}"));
    assert!(
        room.starts_with("#1 ") && room.contains("accepting") && room.contains("READ"),
        "{room}"
    );
    assert!(
        room.contains(&format!(" 127.0.0.1:{port} ")),
        "the listener's address is cut: {room}"
    );
    let echo = row(first, "EchoHandler").unwrap();
    assert!(echo.contains(" P "), "a paused output queue: {echo}");
    assert!(first.contains("q: quit"), "{first}");
}

/// Types `q` and waits (bounded) for top's clean exit.
fn quit(tmux: &Tmux) {
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = tmux.run(&[
            "display-message",
            "-p",
            "-t",
            "top",
            "#{pane_dead} #{pane_dead_status}#{pane_dead_signal}",
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
}

const ALL_COLUMNS: [&str; 12] = [
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
    "MARK",
];

#[test]
fn top_shows_the_map_live() {
    if !Tmux::available() {
        eprintln!(
            "skipped: tmux is not installed (apt-get install tmux); top's screen is not checked"
        );
        return;
    }
    let (tmux, first, port) = start_top(110);
    check_first_screen(&first, port, 110, &ALL_COLUMNS);

    // Two clients join the room: their rows appear, each with its whole address.
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
    for stream in [&client, &other] {
        let address = stream.local_addr().unwrap().to_string();
        assert!(
            joined
                .lines()
                .any(|l| l.contains("AsyncChat<Member>") && l.contains(&format!(" {address} "))),
            "no whole {address}:\n{joined}"
        );
    }
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
    quit(&tmux);
    // The server shut down with it: the clients see end of file.
    let mut rest = String::new();
    assert_eq!(BufReader::new(&client).read_line(&mut rest).unwrap(), 0);
}

/// In 80 columns the totals take two lines and the byte rates give way; addresses and marks
/// stay whole.
#[test]
fn top_fits_an_80_column_terminal() {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let (tmux, first, port) = start_top(80);
    let shown: Vec<&str> = ALL_COLUMNS
        .into_iter()
        .filter(|c| !["IN/S", "OUT/S"].contains(c))
        .collect();
    check_first_screen(&first, port, 80, &shown);
    quit(&tmux);
}
