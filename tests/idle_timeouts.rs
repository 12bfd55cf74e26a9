//! `echo_server --idle-timeout SECS` as a black box: silent connections do not delay a client
//! that talks, and are closed when their time is up; a connection that keeps talking stays.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use util::programs::{assert_fails_in_one_line, example, Program};
use util::LIMIT;

fn connect(address: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream
}

#[test]
fn silent_connections_are_closed_and_delay_nobody() {
    const SILENT: usize = 200;
    let mut command = Command::new(example("echo_server"));
    command.args(["--idle-timeout", "2", "127.0.0.1:0"]);
    let server = Program::start(command);
    let silent: Vec<TcpStream> = (0..SILENT).map(|_| connect(server.address)).collect();
    // A client that talks is served while the silent ones hang on, and keeps its connection by
    // talking more often than the timeout.
    let mut talker = connect(server.address);
    for round in 0..8u8 {
        talker.write_all(&[round; 100]).unwrap();
        let mut echo = [0; 100];
        talker.read_exact(&mut echo).unwrap();
        assert_eq!(echo, [round; 100]);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_all_closed(silent);
    talker.write_all(b"still here").unwrap();
    let mut echo = [0; 10];
    talker.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still here");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{stderr}");
}

#[test]
fn bad_idle_timeouts_are_one_line_errors() {
    for value in ["0", "-1", "soon", "100000"] {
        assert_fails_in_one_line(
            "echo_server",
            &["--idle-timeout", value, "127.0.0.1:0"],
            "invalid --idle-timeout",
        );
    }
    assert_fails_in_one_line("echo_server", &["--idle-timeout"], "needs a value");
}

/// `kv_server --idle-timeout SECS`: connections that never finish a command are closed; one
/// that keeps sending commands stays and is answered.
#[test]
fn kv_server_closes_half_finished_commands() {
    const SILENT: usize = 200;
    let mut command = Command::new(example("kv_server"));
    command.args(["127.0.0.1:0", "--idle-timeout", "2"]);
    let server = Program::start(command);
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| {
            let mut connection = connect(server.address);
            connection.write_all(b"GET half-a-comm").unwrap();
            connection
        })
        .collect();
    let mut talker = connect(server.address);
    for round in 0..8 {
        talker
            .write_all(format!("SET k{round} v\n").as_bytes())
            .unwrap();
        let mut answer = [0; 3];
        talker.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"OK\n");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_all_closed(silent);
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{stderr}");
}

/// Every connection is closed by the server when its time is up: end of file, nothing else.
fn assert_all_closed(connections: Vec<TcpStream>) {
    for (i, mut connection) in connections.into_iter().enumerate() {
        let mut rest = Vec::new();
        connection
            .read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("silent connection {i}: {e}"));
        assert!(rest.is_empty(), "silent connection {i} got {rest:?}");
    }
}
