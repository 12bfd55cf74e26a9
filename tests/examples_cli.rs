//! The example programs against their command-line contract (examples/README.md), over
//! real sockets, with Rust and Python peers.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use util::programs::{
    assert_fails_in_one_line, assert_server_errors_are_one_line, example, python3, run, Program,
};
use util::LIMIT;

fn echo_server(args: &[&str]) -> Program {
    server("echo_server", args)
}

/// Starts example `name` (a server) with `args`.
fn server(name: &str, args: &[&str]) -> Program {
    let mut command = Command::new(example(name));
    command.args(args);
    Program::start(command)
}

/// The crate's echo server and its native Tokio twin (migration step 4, the benchmark baseline)
/// keep the same contract.
const ECHO_SERVERS: [&str; 2] = ["echo_server", "native_echo_server"];

fn connect(address: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// Every byte comes back in order; after the client's FIN the server flushes, then closes; on
/// SIGTERM it exits 0 with nothing on stderr.
#[test]
fn echo_server_echoes_then_exits_on_signals() {
    for (name, signal) in ECHO_SERVERS
        .into_iter()
        .flat_map(|name| [(name, "TERM"), (name, "INT")])
    {
        let server = server(name, &["127.0.0.1:0"]);
        let mut stream = connect(server.address);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                stream.write_all(&data).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).unwrap(); // ends only when the server closes
        writer.join().unwrap();
        assert!(
            echoed == data,
            "{name} echoed {} of {} bytes, or out of order",
            echoed.len(),
            data.len()
        );
        let (status, stderr) = server.stop(signal);
        assert!(status.success(), "{name} {signal}: {status:?} {stderr}");
        assert_eq!(stderr, "");
    }
}

/// A client that sends without ever reading stalls once the socket buffers are full: the server
/// stops reading while it owes bytes (asyncore's `dispatcher_with_send` would buffer all of it).
/// The server goes on serving others.
#[test]
fn echo_server_pushes_back_on_a_client_that_does_not_read() {
    const CEILING: usize = 64 << 20; // far above loopback's socket buffers, both ways
    const CHUNK: usize = 1 << 20;
    for name in ECHO_SERVERS {
        let server = server(name, &["127.0.0.1:0"]);
        let mut stream = connect(server.address);
        stream
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let chunk = vec![7u8; CHUNK];
        let mut accepted = 0;
        while accepted < CEILING && stream.write_all(&chunk).is_ok() {
            accepted += CHUNK;
        }
        assert!(
            accepted < CEILING,
            "{name} took {accepted} bytes from a client that reads nothing"
        );
        let mut other = connect(server.address);
        other.write_all(b"still here").unwrap();
        let mut echo = [0u8; 10];
        other.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"still here");
        drop(stream);
        let (status, stderr) = server.stop("TERM");
        assert!(status.success(), "{name}: {status:?} {stderr}");
    }
}

/// IPv6 works as well as IPv4.
#[test]
fn echo_server_on_ipv6() {
    let server = echo_server(&["[::1]:0"]);
    assert!(server.address.is_ipv6());
    let mut stream = connect(server.address);
    stream.write_all(b"over six").unwrap();
    let mut echo = [0u8; 8];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"over six");
}

/// `--interest-scope own|shared` (benches/echo_load measures both) serves as ADDR alone does;
/// a bad value, a missing one or an unknown option is a one-line error.
#[test]
fn echo_server_interest_scope_option() {
    for scope in ["own", "shared"] {
        let server = echo_server(&["--interest-scope", scope, "127.0.0.1:0"]);
        let mut stream = connect(server.address);
        stream.write_all(b"either way").unwrap();
        let mut echo = [0u8; 10];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"either way");
        drop(stream);
        let (status, stderr) = server.stop("TERM");
        assert!(status.success() && stderr.is_empty(), "{scope}: {stderr}");
    }
    for (args, expect) in [
        (vec!["--interest-scope", "all"], "invalid --interest-scope"),
        (vec!["127.0.0.1:0", "--interest-scope"], "needs a value"),
        (vec!["--threads", "2"], "unknown option"),
    ] {
        assert_fails_in_one_line("echo_server", &args, expect);
    }
}

/// Bad arguments and unusable addresses: one clear line on stderr, a failing status.
#[test]
fn echo_server_errors_are_one_line() {
    for name in ECHO_SERVERS {
        assert_server_errors_are_one_line(name);
    }
}

/// A storm of clients that connect and reset at once leaves the server serving (bpo-10340).
#[test]
fn echo_server_survives_resets() {
    let server = echo_server(&["127.0.0.1:0"]);
    for _ in 0..200 {
        let stream = TcpStream::connect(server.address).unwrap();
        asyncore::socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        let _ = (&stream).write(b"x");
    }
    let mut stream = connect(server.address);
    stream.write_all(b"still here").unwrap();
    let mut echo = [0u8; 10];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still here");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success() && stderr.is_empty(), "{stderr}");
}

/// Out of file descriptors (EMFILE on accept): the server logs, does not spin, and serves the
/// waiting clients once descriptors are free again (asyncore would close the listener).
#[test]
fn echo_server_survives_emfile() {
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=24:24", "--"])
        .arg(example("echo_server"))
        .arg("127.0.0.1:0");
    command.env("RUST_LOG", "asyncore=error");
    let server = Program::start(command);
    // Hold enough connections to exhaust the server's descriptors; the rest wait in the backlog.
    let held: Vec<TcpStream> = (0..30).map(|_| connect(server.address)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(server.child.id());
    std::thread::sleep(Duration::from_millis(500));
    let spent = cpu_ticks(server.child.id()) - before;
    assert!(
        spent < 25,
        "the server spun while out of descriptors: {spent} ticks in 0.5 s"
    );
    drop(held);
    let mut stream = connect(server.address);
    stream.write_all(b"fds are back").unwrap();
    let mut echo = [0u8; 12];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"fds are back");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success());
    assert!(
        stderr.contains("accept failed") && stderr.contains("Too many open files"),
        "{stderr}"
    );
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn echo_client_against_echo_server() {
    let server = echo_server(&["127.0.0.1:0"]);
    let mut command = Command::new(example("echo_client"));
    let big = "z".repeat(100_000);
    command
        .arg(server.address.to_string())
        .args(["hello", "world", "a b c", &big]);
    let (status, stdout, stderr) = run(command);
    assert!(status.success(), "{stderr}");
    assert_eq!(stderr, "");
    let mut lines: Vec<String> = String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let mut expected = vec![
        "hello -> hello".to_string(),
        "world -> world".into(),
        "a b c -> a b c".into(),
        format!("{big} -> {big}"),
    ];
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn echo_client_errors_are_one_line() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for args in [
        vec![closed.as_str(), "hi"],
        vec!["127.0.0.1:1"],
        vec!["bogus", "hi"],
    ] {
        assert_fails_in_one_line("echo_client", &args, "");
    }
}

/// http_client sends exactly the request of asyncore's documentation example and copies the response, byte for byte.
#[test]
fn http_client_fetches_raw_response() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut response =
        b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    response.extend((0..200_000u32).map(|i| (i * 7 % 256) as u8));
    let reply = response.clone();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            request.push(byte[0]);
        }
        stream.write_all(&reply).unwrap();
        request
    });
    let mut command = Command::new(example("http_client"));
    command.arg(format!("http://127.0.0.1:{port}/some/path?q=1"));
    let (status, stdout, stderr) = run(command);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        server.join().unwrap(),
        b"GET /some/path?q=1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    );
    assert!(
        stdout == response,
        "stdout differs from the response ({} vs {} bytes)",
        stdout.len(),
        response.len()
    );
}

#[test]
fn http_client_errors_are_one_line() {
    let closed = util::closed_port();
    let refused = format!("http://127.0.0.1:{closed}/");
    for args in [
        vec!["ftp://example/"],
        vec!["http://:80/"],
        vec![refused.as_str()],
        vec![],
    ] {
        assert_fails_in_one_line("http_client", &args, "");
    }
}

/// Python's own asyncore as the peer: its dispatcher_with_send client (test_send's shape)
/// against our echo_server, and our echo_client against its echo server.
#[test]
fn python_asyncore_peers() {
    if !python3() {
        eprintln!("skipped: python3 with asyncore is not available");
        return;
    }
    let server = echo_server(&["127.0.0.1:0"]);
    let client = format!(
        r#"
import asyncore, socket, sys
class Client(asyncore.dispatcher_with_send):
    def __init__(self):
        asyncore.dispatcher_with_send.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(("127.0.0.1", {port}))
        self.got = b""
        self.send(b"x" * 100000 + b"\n")
    def handle_read(self):
        self.got += self.recv(65536)
        if len(self.got) >= 100001:
            self.close()
c = Client()
asyncore.loop(timeout=0.1, count=2000)
sys.stdout.write("ok" if c.got == b"x" * 100000 + b"\n" else "bad %d" % len(c.got))
"#,
        port = server.address.port()
    );
    let mut command = Command::new("python3");
    command.args(["-W", "ignore", "-c", &client]);
    let (status, stdout, stderr) = run(command);
    assert!(status.success(), "{stderr}");
    assert_eq!(String::from_utf8(stdout).unwrap(), "ok");

    let python_server = r#"
import asyncore, socket, sys
class Handler(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)
class Server(asyncore.dispatcher):
    def __init__(self):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(128)
        print("listening on 127.0.0.1:%d" % self.socket.getsockname()[1], flush=True)
    def handle_accepted(self, sock, addr):
        Handler(sock)
Server()
asyncore.loop(timeout=0.1)
"#;
    let mut command = Command::new("python3");
    command.args(["-W", "ignore", "-c", python_server]);
    let python = Program::start(command);
    let mut command = Command::new(example("echo_client"));
    command
        .arg(python.address.to_string())
        .args(["from", "rust"]);
    let (status, stdout, stderr) = run(command);
    assert!(status.success(), "{stderr}");
    let mut lines: Vec<String> = String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(lines, ["from -> from", "rust -> rust"]);
}

/// The migration guide's steps are the same echo server: each echoes and stops cleanly.
#[test]
fn migration_steps_all_echo() {
    let mut steps = vec![
        Command::new(example("migration_step2_dispatchers")),
        Command::new(example("migration_step3_mixed")),
        Command::new(example("native_echo_server")),
    ];
    if python3() {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/migration_step1_asyncore.py");
        let mut python = Command::new("python3");
        python.arg("-W").arg("ignore").arg(script);
        steps.push(python);
    }
    for mut step in steps {
        let name = format!("{:?}", step.get_program());
        step.arg("127.0.0.1:0");
        let server = Program::start(step);
        let mut stream = connect(server.address);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || stream.write_all(&data).unwrap())
        };
        let mut echoed = vec![0u8; data.len()];
        stream.read_exact(&mut echoed).unwrap();
        writer.join().unwrap();
        assert!(echoed == data, "{name} echoed something else");
        let (status, stderr) = server.stop("INT");
        assert!(status.success(), "{name}: {status:?} {stderr}");
    }
}

fn udp_echo_server(args: &[&str]) -> Program {
    let mut command = Command::new(example("udp_echo_server"));
    command.args(args);
    Program::start(command)
}

fn udp_client(server: std::net::SocketAddr) -> std::net::UdpSocket {
    let local = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = std::net::UdpSocket::bind(local).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    socket
}

/// Sends `data` to `server` and checks that it comes back unchanged, from the server.
fn udp_round_trip(socket: &std::net::UdpSocket, server: std::net::SocketAddr, data: &[u8]) {
    socket.send_to(data, server).unwrap();
    let mut echo = vec![0u8; 65536];
    let (n, from) = socket.recv_from(&mut echo).unwrap();
    assert_eq!(from, server);
    assert!(
        echo[..n] == data[..],
        "{} bytes came back for {}",
        n,
        data.len()
    );
}

/// Every datagram comes back to its sender unchanged: empty, small, the largest UDP datagram,
/// and a burst in order; two senders are kept apart; SIGTERM and SIGINT end it with status 0
/// and nothing on stderr.
#[test]
fn udp_echo_server_echoes_then_exits_on_signals() {
    for signal in ["TERM", "INT"] {
        let server = udp_echo_server(&["127.0.0.1:0"]);
        let socket = udp_client(server.address);
        let largest: Vec<u8> = (0..65507u32).map(|i| (i % 249) as u8).collect();
        for data in [&b""[..], b"hello", &largest, b""] {
            udp_round_trip(&socket, server.address, data);
        }
        let other = udp_client(server.address);
        for i in 0..100u32 {
            socket.send_to(&i.to_be_bytes(), server.address).unwrap();
            other
                .send_to(&(1000 + i).to_be_bytes(), server.address)
                .unwrap();
        }
        for (client, base) in [(&socket, 0u32), (&other, 1000)] {
            for i in 0..100u32 {
                let mut echo = [0u8; 8];
                let n = client.recv(&mut echo).unwrap();
                assert_eq!(&echo[..n], &(base + i).to_be_bytes(), "in order per sender");
            }
        }
        let (status, stderr) = server.stop(signal);
        assert!(status.success(), "{signal}: {status:?} {stderr}");
        assert_eq!(stderr, "");
    }
}

/// UDP over IPv6, with IPv6's largest datagram.
#[test]
fn udp_echo_server_on_ipv6() {
    let server = udp_echo_server(&["[::1]:0"]);
    assert!(server.address.is_ipv6());
    let socket = udp_client(server.address);
    let largest: Vec<u8> = (0..65527u32).map(|i| (i % 241) as u8).collect();
    for data in [&b"over six"[..], b"", &largest] {
        udp_round_trip(&socket, server.address, data);
    }
}

/// Bad arguments and unusable addresses: one clear line on stderr, a failing status.
#[test]
fn udp_echo_server_errors_are_one_line() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    for (args, expect) in [
        (vec!["nonsense"], "invalid address"),
        (vec!["127.0.0.1:0", "extra"], "unexpected argument"),
        (vec![in_use.as_str()], "Address already in use"),
        (vec!["192.0.2.1:80"], "bind 192.0.2.1:80"),
    ] {
        assert_fails_in_one_line("udp_echo_server", &args, expect);
    }
}

// ----- chat_server (asynchat) -----

/// Reads exactly `expect.len()` bytes and compares them.
fn expect_bytes(stream: &mut TcpStream, expect: &[u8], who: &str) {
    let mut got = vec![0u8; expect.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expect),
        "{who} received"
    );
}

/// Each complete line goes to every other client, newline included, never back to its
/// sender; a partial line waits for its newline; an empty line and a `\r\n` line pass
/// unchanged; a client's half-close ends its connection; on a signal the server exits 0.
#[test]
fn chat_server_relays_lines_to_the_others() {
    for signal in ["TERM", "INT"] {
        let server = server("chat_server", &["127.0.0.1:0"]);
        let mut a = connect(server.address);
        let mut b = connect(server.address);
        let mut c = connect(server.address);
        for s in [&a, &b, &c] {
            s.set_nodelay(true).unwrap();
        }
        // The listener accepts in order, so when C's line is relayed, A and B are members.
        c.write_all(b"C joined\n").unwrap();
        expect_bytes(&mut a, b"C joined\n", "A");
        expect_bytes(&mut b, b"C joined\n", "B");
        // A partial line from A, then a round trip through the server, then the rest.
        a.write_all(b"par").unwrap();
        b.write_all(b"from B\n").unwrap();
        expect_bytes(&mut a, b"from B\n", "A");
        expect_bytes(&mut c, b"from B\n", "C");
        a.write_all(b"tial\n\nx\r\n").unwrap();
        expect_bytes(&mut b, b"partial\n\nx\r\n", "B");
        expect_bytes(&mut c, b"partial\n\nx\r\n", "C");
        // An unterminated last line is not relayed; each half-close ends that connection.
        c.write_all(b"never finished").unwrap();
        for (name, s) in [("C", &mut c), ("A", &mut a), ("B", &mut b)] {
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert_eq!(String::from_utf8_lossy(&rest), "", "{name} received more");
        }
        let (status, stderr) = server.stop(signal);
        assert!(
            status.success(),
            "chat_server {signal}: {status:?} {stderr}"
        );
        assert_eq!(stderr, "");
    }
}

/// A line longer than the room's 1 MiB limit closes its sender (and only it); the others keep
/// chatting.
#[test]
fn chat_server_closes_a_sender_of_endless_lines() {
    let server = server("chat_server", &["127.0.0.1:0"]);
    let mut a = connect(server.address);
    let mut b = connect(server.address);
    b.write_all(b"B here\n").unwrap();
    expect_bytes(&mut a, b"B here\n", "A");
    let endless = {
        let mut a = a.try_clone().unwrap();
        std::thread::spawn(move || {
            let block = vec![b'x'; 64 * 1024];
            // The server closes A after 1 MiB; writing fails soon after. Bounded anyway.
            (0..160).take_while(|_| a.write_all(&block).is_ok()).count()
        })
    };
    let mut rest = Vec::new();
    let _ = a.read_to_end(&mut rest); // EOF, or a reset: either way the server closed A
    assert!(rest.is_empty(), "A got {} bytes", rest.len());
    let blocks = endless.join().unwrap();
    assert!(blocks < 160, "the server kept reading an endless line");
    let mut c = connect(server.address);
    c.write_all(b"C here\n").unwrap();
    expect_bytes(&mut b, b"C here\n", "B");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// Bad arguments and unusable addresses: one clear line on stderr, a failing status; so are an
/// unknown option and a timeout that is not a positive number of seconds.
#[test]
fn chat_server_errors_are_one_line() {
    assert_server_errors_are_one_line("chat_server");
    for (args, expect) in [
        (vec!["--bogus"], "unknown option \"--bogus\""),
        (
            vec!["127.0.0.1:0", "--stall-timeout"],
            "--stall-timeout needs a value",
        ),
        (
            vec!["--stall-timeout", "soon"],
            "invalid --stall-timeout \"soon\"",
        ),
        (vec!["--idle-timeout", "0"], "invalid --idle-timeout \"0\""),
        (
            vec!["--idle-timeout", "-3"],
            "invalid --idle-timeout \"-3\"",
        ),
    ] {
        assert_fails_in_one_line("chat_server", &args, expect);
    }
}

/// The options come before or after the address.
#[test]
fn chat_server_takes_its_options_anywhere() {
    for args in [
        [
            "--stall-timeout",
            "5",
            "127.0.0.1:0",
            "--idle-timeout",
            "60",
        ],
        [
            "127.0.0.1:0",
            "--idle-timeout",
            "60",
            "--stall-timeout",
            "0.5",
        ],
    ] {
        let server = server("chat_server", &args);
        let mut a = connect(server.address);
        let mut b = connect(server.address);
        b.write_all(b"B here\n").unwrap();
        expect_bytes(&mut a, b"B here\n", "A");
        let (status, stderr) = server.stop("TERM");
        assert!(status.success(), "{status:?} {stderr}");
    }
}

/// The benchmark's native baseline keeps the same contract: lines to the others, a partial
/// line held, signals → 0, one-line errors.
#[test]
fn native_chat_server_relays_lines_to_the_others() {
    assert_server_errors_are_one_line("native_chat_server");
    let server = server("native_chat_server", &["127.0.0.1:0"]);
    let mut a = connect(server.address);
    let mut b = connect(server.address);
    let mut c = connect(server.address);
    c.write_all(b"C joined\n").unwrap();
    expect_bytes(&mut a, b"C joined\n", "A");
    expect_bytes(&mut b, b"C joined\n", "B");
    a.write_all(b"par").unwrap();
    b.write_all(b"from B\n").unwrap();
    expect_bytes(&mut a, b"from B\n", "A");
    a.write_all(b"tial\n").unwrap();
    expect_bytes(&mut c, b"from B\npartial\n", "C");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

// ----- file_cat (file_dispatcher) -----

/// Pseudo-random bytes (xorshift64*), the same for every run.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        bytes.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Runs `file_cat` with `stdin` and `stdout` as given; feeds `input` if stdin is a pipe and
/// collects stdout if it is one. Returns status, stdout (if piped) and stderr; bounded.
fn file_cat(
    stdin: std::process::Stdio,
    stdout: std::process::Stdio,
    input: Option<Vec<u8>>,
) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut child = Command::new(example("file_cat"))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let feeder = child.stdin.take().map(|mut pipe| {
        let input = input.unwrap_or_default();
        std::thread::spawn(move || pipe.write_all(&input).unwrap())
    });
    let reader = child.stdout.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            pipe.read_to_end(&mut out).unwrap();
            out
        })
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = util::programs::wait(&mut child);
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    let out = reader.map(|r| r.join().unwrap()).unwrap_or_default();
    (status, out, stderr)
}

/// 10 MB of random bytes through pipes on both sides, byte for byte; exit 0, nothing on stderr.
#[test]
fn file_cat_copies_pipes_byte_for_byte() {
    use std::process::Stdio;
    let input = random_bytes(10 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15);
    let (status, out, stderr) = file_cat(Stdio::piped(), Stdio::piped(), Some(input.clone()));
    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(stderr, "");
    assert!(
        out == input,
        "copied {} of {} bytes, or changed them",
        out.len(),
        input.len()
    );
}

/// Empty input: nothing out, exit 0.
#[test]
fn file_cat_empty_input() {
    use std::process::Stdio;
    let (status, out, stderr) = file_cat(Stdio::piped(), Stdio::piped(), Some(Vec::new()));
    assert!(status.success() && stderr.is_empty(), "{status:?} {stderr}");
    assert!(out.is_empty());
}

/// stdin a regular file or /dev/null (always ready: epoll refuses them), stdout a pipe or a
/// regular file.
#[test]
fn file_cat_from_regular_files_and_dev_null() {
    use std::process::Stdio;
    let input_path = util::TempPath::new("file-cat-in");
    let output_path = util::TempPath::new("file-cat-out");
    let input = random_bytes(3 * 1024 * 1024 + 17, 42);
    std::fs::write(&input_path, &input).unwrap();

    let (status, out, stderr) = file_cat(
        std::fs::File::open(&input_path).unwrap().into(),
        Stdio::piped(),
        None,
    );
    assert!(status.success() && stderr.is_empty(), "{status:?} {stderr}");
    assert!(
        out == input,
        "file -> pipe: {} of {} bytes",
        out.len(),
        input.len()
    );

    let (status, _, stderr) = file_cat(
        std::fs::File::open(&input_path).unwrap().into(),
        std::fs::File::create(&output_path).unwrap().into(),
        None,
    );
    assert!(status.success() && stderr.is_empty(), "{status:?} {stderr}");
    assert!(
        std::fs::read(&output_path).unwrap() == input,
        "file -> file"
    );

    let (status, out, stderr) = file_cat(Stdio::null(), Stdio::piped(), None);
    assert!(status.success() && stderr.is_empty(), "{status:?} {stderr}");
    assert!(out.is_empty());

    let (status, _, stderr) = file_cat(
        std::fs::File::open(&input_path).unwrap().into(),
        Stdio::null(),
        None,
    );
    assert!(status.success() && stderr.is_empty(), "{status:?} {stderr}");
}

/// stdout's reader goes away: one line on stderr, a failing status, no hang.
#[test]
fn file_cat_reports_a_closed_stdout() {
    use std::process::Stdio;
    let mut child = Command::new(example("file_cat"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is written
    let mut stdin = child.stdin.take().unwrap();
    // The write fails once file_cat has exited; until then it feeds it.
    let feeder = std::thread::spawn(move || {
        let chunk = [b'x'; 4096];
        for _ in 0..1024 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = util::programs::wait(&mut child);
    feeder.join().unwrap();
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("file_cat: stdout"), "{stderr}");
}
