//! `examples/kv_server` as a black box: async_chat connections on one map thread talking to a
//! native store task, over real loopback sockets. Every read has a timeout.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use util::programs::{assert_server_errors_are_one_line, example, Program};
use util::LIMIT;

fn kv_server() -> Program {
    let mut command = Command::new(example("kv_server"));
    command.arg("127.0.0.1:0");
    Program::start(command)
}

/// A client connection that reads answer lines.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Reads `n` answers on a thread of its own, however slowly they come (each read bounded
    /// by LIMIT); true if every one was `OK`.
    fn oks(&self, n: usize) -> std::thread::JoinHandle<bool> {
        let mut reader = self.reader.get_ref().try_clone().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(&mut reader);
            let mut line = String::new();
            (0..n).all(|_| {
                line.clear();
                reader.read_line(&mut line).is_ok() && line == "OK\n"
            })
        })
    }

    fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&address, LIMIT).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The next answer line, without its newline; "" at end of file.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end_matches('\n').to_string()
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(format!("{command}\n").as_bytes());
        self.line()
    }

    /// True when the server has closed the connection (and sent nothing more).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).unwrap();
        rest.is_empty()
    }
}

/// Every command gets its answer; values keep their spaces; `\r\n` works like `\n`.
#[test]
fn commands_and_answers() {
    let server = kv_server();
    let mut client = Client::connect(server.address);
    assert_eq!(client.ask("GET color"), "NOT_FOUND");
    assert_eq!(client.ask("SET color deep blue sea"), "OK");
    assert_eq!(client.ask("GET color"), "VALUE deep blue sea");
    assert_eq!(
        client.ask("set color red\r"),
        "OK",
        "verbs in any case, CRLF"
    );
    assert_eq!(client.ask("GET color"), "VALUE red");
    assert_eq!(client.ask("DEL color"), "DELETED");
    assert_eq!(client.ask("DEL color"), "NOT_FOUND");
    assert_eq!(client.ask("SET empty"), "OK", "an empty value");
    assert_eq!(client.ask("GET empty"), "VALUE ");
    assert_eq!(client.ask("QUIT"), "BYE");
    assert!(client.closed());
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(stderr, "");
}

/// Commands sent all at once are answered one by one, in order, though each answer comes from
/// another thread; what follows QUIT is never answered.
#[test]
fn pipelined_commands_keep_their_order() {
    let server = kv_server();
    let mut client = Client::connect(server.address);
    let mut script = String::new();
    let mut expected = Vec::new();
    for i in 0..500 {
        script.push_str(&format!("SET k{} {i}\nGET k{}\n", i % 7, i % 7));
        expected.push("OK".to_string());
        expected.push(format!("VALUE {i}"));
    }
    script.push_str("QUIT\nGET k0\n");
    expected.push("BYE".to_string());
    client.send(script.as_bytes());
    for (n, want) in expected.iter().enumerate() {
        assert_eq!(&client.line(), want, "answer {n}");
    }
    assert!(client.closed(), "nothing after BYE");
}

/// A watcher hears about every change another client makes, through the store's handle to its
/// channel; after the watcher leaves, changes go on without it.
#[test]
fn watchers_hear_changes_from_other_clients() {
    let server = kv_server();
    let mut watcher = Client::connect(server.address);
    let mut writer = Client::connect(server.address);
    assert_eq!(watcher.ask("WATCH door"), "WATCHING door");
    assert_eq!(writer.ask("SET door open"), "OK");
    assert_eq!(watcher.line(), "CHANGED door open");
    assert_eq!(writer.ask("SET window open"), "OK", "another key: not told");
    assert_eq!(writer.ask("DEL door"), "DELETED");
    assert_eq!(watcher.line(), "DELETED door");
    assert_eq!(
        watcher.ask("GET window"),
        "VALUE open",
        "nothing else was pushed"
    );
    drop(watcher);
    // The store forgets the watcher; later changes find no one and nothing breaks.
    let mut second = Client::connect(server.address);
    assert_eq!(second.ask("WATCH door"), "WATCHING door");
    for state in ["ajar", "shut"] {
        assert_eq!(writer.ask(&format!("SET door {state}")), "OK");
        assert_eq!(second.line(), format!("CHANGED door {state}"));
    }
    let (status, stderr) = server.stop("INT");
    assert!(status.success(), "{status:?} {stderr}");
}

/// Changes made in a burst reach a watcher in the order the store made them.
#[test]
fn notifications_keep_their_order() {
    let server = kv_server();
    let mut watcher = Client::connect(server.address);
    let mut writer = Client::connect(server.address);
    assert_eq!(watcher.ask("WATCH n"), "WATCHING n");
    let burst: String = (0..300).map(|i| format!("SET n {i}\n")).collect();
    writer.send(burst.as_bytes());
    for i in 0..300 {
        assert_eq!(watcher.line(), format!("CHANGED n {i}"));
    }
    for _ in 0..300 {
        assert_eq!(writer.line(), "OK");
    }
}

/// Bad commands get `ERR` and the connection goes on; a line over the limit gets
/// `ERR line too long` and the connection is closed; other clients never notice.
#[test]
fn bad_input_gets_errors_not_crashes() {
    let server = kv_server();
    let mut bystander = Client::connect(server.address);
    assert_eq!(bystander.ask("SET safe yes"), "OK");

    let mut client = Client::connect(server.address);
    for command in ["FLY away", "GET", "GET a b", "QUIT now", ""] {
        let answer = client.ask(command);
        assert!(answer.starts_with("ERR "), "{command:?}: {answer}");
    }
    client.send(b"GET \xff\xfe\n");
    assert!(client.line().starts_with("ERR "), "invalid UTF-8");
    client.send(b"\0\0\0\n");
    assert!(client.line().starts_with("ERR "), "NULs");
    assert_eq!(client.ask("GET safe"), "VALUE yes", "still serving");

    let mut flooder = Client::connect(server.address);
    flooder.send(&vec![b'x'; 64 * 1024]);
    assert_eq!(flooder.line(), "ERR line too long");
    // The server closes; unread bytes may turn its close into a reset, which is fine too.
    let mut rest = Vec::new();
    let _ = flooder.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the error");

    assert_eq!(bystander.ask("GET safe"), "VALUE yes");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// Many clients at once, each with its own keys, each answer checked.
#[test]
fn many_clients_at_once() {
    let server = kv_server();
    let address = server.address;
    let clients: Vec<_> = (0..16)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(address);
                for i in 0..100 {
                    assert_eq!(client.ask(&format!("SET c{c}.{i} v{c}.{i}")), "OK");
                }
                for i in 0..100 {
                    assert_eq!(
                        client.ask(&format!("GET c{c}.{i}")),
                        format!("VALUE v{c}.{i}")
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// Bad arguments and a taken address: one line on stderr, non-zero exit.
#[test]
fn errors_are_one_line() {
    assert_server_errors_are_one_line("kv_server");
}

/// The server's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(server: &Program) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A watcher that never reads cannot make the server grow: its notifications are bounded
/// (256 KiB for it, 16 MiB for all watchers), the writer is slowed meanwhile, and after the
/// stall timeout the watcher is dropped and the writer goes on at full speed. 160 MB of
/// notifications leave the server's peak memory far below that.
#[test]
fn a_watcher_that_never_reads_is_bounded_then_dropped() {
    let mut command = Command::new(example("kv_server"));
    command.args(["127.0.0.1:0", "--stall-timeout", "1"]);
    let server = Program::start(command);
    let mut watcher = Client::connect(server.address);
    assert_eq!(watcher.ask("WATCH big"), "WATCHING big");
    let before = peak_rss(&server);
    const SETS: usize = 20_000;
    let value = "v".repeat(8 * 1024);
    let mut writer = Client::connect(server.address);
    let answers = writer.oks(SETS);
    let script = format!("SET big {value}\n").repeat(SETS);
    writer.send(script.as_bytes());
    assert!(
        answers.join().unwrap(),
        "the writer did not get all its answers"
    );
    let peak = peak_rss(&server);
    assert!(
        peak < before + 64 * 1024 * 1024,
        "the server grew from {before} to {peak} bytes"
    );
    // The watcher was dropped: what it was sent, then the end of the connection.
    let mut rest = Vec::new();
    let _ = watcher.reader.read_to_end(&mut rest);
    assert!(
        rest.len() < SETS * value.len(),
        "the watcher was not dropped"
    );
    // The store goes on: another watcher hears the next change.
    let mut second = Client::connect(server.address);
    assert_eq!(second.ask("WATCH big"), "WATCHING big");
    assert_eq!(writer.ask("SET big small"), "OK");
    assert_eq!(second.line(), "CHANGED big small");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// A watcher that reads slowly but steadily is never dropped, and hears every change in order.
#[test]
fn a_slow_watcher_hears_every_change() {
    let mut command = Command::new(example("kv_server"));
    command.args(["127.0.0.1:0", "--stall-timeout", "2"]);
    let server = Program::start(command);
    let mut watcher = Client::connect(server.address);
    assert_eq!(watcher.ask("WATCH n"), "WATCHING n");
    let mut writer = Client::connect(server.address);
    const SETS: usize = 2_000;
    let pad = "p".repeat(1000);
    let burst: String = (0..SETS).map(|i| format!("SET n {i} {pad}\n")).collect();
    let answers = writer.oks(SETS);
    writer.send(burst.as_bytes());
    for i in 0..SETS {
        if i % 100 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5)); // a slow reader
        }
        assert_eq!(watcher.line(), format!("CHANGED n {i} {pad}"));
    }
    assert!(answers.join().unwrap());
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// An unknown option and a bad stall timeout: one line on stderr, non-zero exit.
#[test]
fn option_errors_are_one_line() {
    use util::programs::assert_fails_in_one_line;
    assert_fails_in_one_line("kv_server", &["--bogus"], "unknown option \"--bogus\"");
    assert_fails_in_one_line(
        "kv_server",
        &["--stall-timeout", "never"],
        "invalid --stall-timeout \"never\"",
    );
}
