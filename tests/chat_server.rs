//! `examples/chat_server` as a black box under load, over real loopback sockets: back-pressure
//! instead of shedding, the stall and idle timeouts, lines up to 1 MiB, and whole lines at
//! shutdown. Every read and write has a timeout.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use util::programs::{example, Program};
use util::LIMIT;

fn chat_server(options: &[&str]) -> Program {
    let mut command = Command::new(example("chat_server"));
    command.arg("127.0.0.1:0").args(options);
    Program::start(command)
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// Connects a client whose receive buffer is a fixed 64 KiB.
fn small_receive_buffer(address: SocketAddr) -> TcpStream {
    use asyncore::socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect_timeout(&address.into(), LIMIT).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream
}

/// Connects `count` members and makes sure the server has added them all: the last one says
/// hello and the first hears it (the listener accepts in order).
fn members(address: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut members: Vec<TcpStream> = (0..count).map(|_| connect(address)).collect();
    members[count - 1].write_all(b"hello\n").unwrap();
    for member in &mut members[..count - 1] {
        let mut hello = [0u8; 6];
        member.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"hello\n");
    }
    members
}

/// Line `i` of a flood: `len` bytes, newline included, made of its number and filler.
fn flood_line(i: usize, len: usize) -> Vec<u8> {
    let mut line = format!("{i:08} ").into_bytes();
    line.resize(len - 1, b'a' + (i % 26) as u8);
    line.push(b'\n');
    line
}

/// Writes lines `0..count` of `len` bytes; whether every write succeeded.
fn flood(mut stream: TcpStream, count: usize, len: usize) -> JoinHandle<bool> {
    std::thread::spawn(move || {
        let mut block = Vec::new();
        for i in 0..count {
            block.extend_from_slice(&flood_line(i, len));
            if block.len() >= 256 * 1024 || i + 1 == count {
                if stream.write_all(&block).is_err() {
                    return false;
                }
                block.clear();
            }
        }
        true
    })
}

/// Reads until end of file or a reset; what was read, and whether it ended cleanly.
fn read_all(stream: TcpStream) -> JoinHandle<(Vec<u8>, bool)> {
    read_up_to(stream, usize::MAX, false)
}

/// Reads until `limit` bytes, end of file or a reset; what was read, and whether it ended
/// cleanly (or reached `limit`). A `paced` reader takes 64 KiB per millisecond at most.
fn read_up_to(mut stream: TcpStream, limit: usize, paced: bool) -> JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; if paced { 64 * 1024 } else { 256 * 1024 }];
        while got.len() < limit {
            if paced {
                std::thread::sleep(Duration::from_millis(1));
            }
            match stream.read(&mut buf) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, false),
                Err(e) => panic!("read: {e} after {} bytes", got.len()),
            }
        }
        (got, true)
    })
}

/// Checks that `got` is lines `0..` of the flood in order, each whole; returns how many.
fn whole_flood_lines(got: &[u8], len: usize, who: &str) -> usize {
    assert_eq!(got.len() % len, 0, "{who} received a cut line");
    for (i, line) in got.chunks(len).enumerate() {
        assert!(line == flood_line(i, len), "{who}: line {i} is wrong");
    }
    got.len() / len
}

/// A reader that keeps reading at full speed is never dropped, however fast another member
/// floods the room: the flooder is slowed to the reader's speed instead, and the reader
/// receives every line, whole and in order.
#[test]
fn a_full_speed_reader_is_never_dropped_by_a_flood() {
    let server = chat_server(&[]);
    let mut room = members(server.address, 2);
    let reader = room.pop().unwrap();
    let flooder = room.pop().unwrap();
    const LINES: usize = 64 * 1024;
    const LEN: usize = 1024; // 64 MiB in all
    let writer = flood(flooder.try_clone().unwrap(), LINES, LEN);
    let reading = read_up_to(reader.try_clone().unwrap(), LINES * LEN, false);
    assert!(writer.join().unwrap(), "the flooder was cut off");
    let (got, whole) = reading.join().unwrap();
    assert!(whole, "the reader was dropped after {} bytes", got.len());
    assert_eq!(whole_flood_lines(&got, LEN, "the reader"), LINES);
    // The flooder never got its own lines; each half-close ends its connection cleanly.
    for (who, member) in [("flooder", flooder), ("reader", reader)] {
        member.shutdown(Shutdown::Write).unwrap();
        let (rest, clean) = read_all(member).join().unwrap();
        assert!(
            clean && rest.is_empty(),
            "the {who} got {} bytes more",
            rest.len()
        );
    }
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// A line of exactly 1 MiB (newline excluded) reaches every other member intact; a longer one
/// closes its sender, and nobody sees any of it.
#[test]
fn a_one_mebibyte_line_is_relayed_intact() {
    let server = chat_server(&[]);
    let room = members(server.address, 3);
    let mut line: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    line.push(b'\n');
    let sender = {
        let mut a = room[0].try_clone().unwrap();
        let line = line.clone();
        std::thread::spawn(move || a.write_all(&line).unwrap())
    };
    for (who, mut member) in [("B", &room[1]), ("C", &room[2])] {
        let mut got = vec![0u8; line.len()];
        member.read_exact(&mut got).unwrap();
        assert!(got == line, "{who} received a different line");
    }
    sender.join().unwrap();
    // One byte more: the sender is closed, the others get nothing of it.
    let mut long = vec![b'z'; 1024 * 1024 + 1];
    long.push(b'\n');
    let mut a = room[0].try_clone().unwrap();
    let _ = a.write_all(&long); // the server may close A before it has it all
    let mut rest = Vec::new();
    let _ = a.read_to_end(&mut rest); // end of file or a reset: A is closed
    assert!(rest.is_empty());
    let mut b = &room[1];
    let mut c = &room[2];
    c.write_all(b"after\n").unwrap();
    let mut after = [0u8; 6];
    b.read_exact(&mut after).unwrap();
    assert_eq!(&after, b"after\n", "B saw nothing of the long line");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// A member that reads nothing holds the room back only for the stall timeout: it is then
/// dropped (never with a cut line followed by a clean end of file), the flooder goes on at
/// the reader's speed, and the reader gets every line.
#[test]
fn a_member_that_reads_nothing_is_dropped_after_the_stall_timeout() {
    let server = chat_server(&["--stall-timeout", "2"]);
    let mut room = members(server.address, 3);
    let sleeper = room.pop().unwrap();
    let reader = room.pop().unwrap();
    let flooder = room.pop().unwrap();
    const LINES: usize = 32 * 1024;
    const LEN: usize = 1024; // 32 MiB: more than the log and every socket buffer hold
    let writer = flood(flooder.try_clone().unwrap(), LINES, LEN);
    let reading = read_up_to(reader.try_clone().unwrap(), LINES * LEN, false);
    assert!(writer.join().unwrap(), "the flooder was cut off");
    // The sleeper wakes up: what it was sent, then the end of its connection.
    let (slept, clean) = read_all(sleeper).join().unwrap();
    assert!(slept.len() < LINES * LEN, "the sleeper was not dropped");
    if clean {
        whole_flood_lines(&slept, LEN, "the dropped member");
    }
    let (got, whole) = reading.join().unwrap();
    assert!(whole, "the reader was dropped after {} bytes", got.len());
    assert_eq!(whole_flood_lines(&got, LEN, "the reader"), LINES);
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// A pause stops the floods, not the conversation: while a member who stopped reading holds
/// the log at its high-water mark and a flooder is held back, another member's line still
/// reaches the others at once, not when the stall timeout drops the one who stopped.
#[test]
fn a_member_who_talks_is_heard_while_the_room_is_paused() {
    let server = chat_server(&["--stall-timeout", "60"]);
    // A member who never reads, with a small receive buffer: the log, not its socket, holds
    // what it is owed. Accepted first, so in the room when the others have joined.
    let sleeper = small_receive_buffer(server.address);
    let mut room = members(server.address, 3);
    let mut hello = [0u8; 6];
    (&sleeper).read_exact(&mut hello).unwrap();
    let listener = room.pop().unwrap();
    let talker = room.pop().unwrap();
    let flooder = room.pop().unwrap();
    const LINE: &[u8] = b"a line from someone who talks\n";
    let received = Arc::new(AtomicUsize::new(0));
    let (heard, hearing) = mpsc::channel::<()>();
    {
        let received = received.clone();
        let mut listener = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut tail = Vec::new(); // the end of what came, where the line may start
            while let Ok(n) = listener.read(&mut buf) {
                if n == 0 {
                    return;
                }
                received.fetch_add(n, Ordering::Relaxed);
                tail.extend_from_slice(&buf[..n]);
                if tail.windows(LINE.len()).any(|w| w == LINE) {
                    let _ = heard.send(());
                    return;
                }
                tail.drain(..tail.len().saturating_sub(LINE.len()));
            }
        });
    }
    // 64 MiB: the room pauses long before the flooder is through.
    let _writer = flood(flooder.try_clone().unwrap(), 64 * 1024, 1024);
    // Paused: the listener has had the log's worth and gets nothing more (bounded: the pause
    // lasts until the stall timeout).
    let deadline = Instant::now() + 3 * LIMIT;
    let mut seen = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = received.load(Ordering::Relaxed);
        if now == seen && now > 0 {
            break;
        }
        seen = now;
        assert!(Instant::now() < deadline, "the room never paused");
    }
    (&talker).write_all(LINE).unwrap();
    hearing
        .recv_timeout(Duration::from_secs(5))
        .expect("the line waited for the stall timeout");
    drop(sleeper);
}

/// At SIGTERM, a member that has most of a mebibyte of lines waiting for it (its socket full,
/// because it has not read yet) and reads from then on receives them all, whole, and its connection
/// ends at a line boundary with a clean end of file.
#[test]
fn no_member_receives_a_cut_line_at_shutdown() {
    let mut server = chat_server(&[]);
    // A receive buffer of a fixed 64 KiB: what the room holds for this member cannot all wait
    // in its socket.
    let late = small_receive_buffer(server.address);
    // Accepted first, so in the room when the others have joined.
    let mut room = members(server.address, 2);
    let mut hello = [0u8; 6];
    (&late).read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello\n");
    let reader = room.pop().unwrap();
    let flooder = room.pop().unwrap();
    // 960 kB in all (the room holds no more than its log's high-water mark for a member that
    // does not read), in lines that straddle every buffer boundary. Once the reader has every
    // line, the room has them all and the late member's socket is full.
    const LINES: usize = 24;
    const LEN: usize = 40_003;
    let reading = read_up_to(reader, LINES * LEN, false);
    assert!(flood(flooder.try_clone().unwrap(), LINES, LEN)
        .join()
        .unwrap());
    let (got, whole) = reading.join().unwrap();
    assert!(whole);
    whole_flood_lines(&got, LEN, "the reader");
    let (start, go) = std::sync::mpsc::channel::<()>();
    let late_reading = std::thread::spawn(move || {
        go.recv().unwrap();
        read_all(late).join().unwrap()
    });
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    start.send(()).unwrap();
    let (got, clean) = late_reading.join().unwrap();
    assert!(clean, "the late member was reset after {} bytes", got.len());
    assert_eq!(whole_flood_lines(&got, LEN, "the late member"), LINES);
    let status = util::programs::wait(&mut server.child);
    assert!(status.success(), "{status:?}");
    drop(flooder);
}

/// Many slowloris clients (each sends half a line, then a byte now and then) delay nobody: a
/// normal member's line reaches the others at once; their half lines are never relayed; and
/// with `--idle-timeout` they are closed when their time is up.
#[test]
fn slowloris_clients_delay_nobody_and_are_closed_when_idle() {
    let server = chat_server(&["--idle-timeout", "3"]);
    let reader = connect(server.address);
    let slow: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut s = connect(server.address);
            s.write_all(format!("half a line from {i}").as_bytes())
                .unwrap();
            s
        })
        .collect();
    let trickle = {
        let slow: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            // A byte every 200 ms each, until the server closes them (bounded: 8 s).
            for _ in 0..40 {
                if slow.iter().all(|mut s| s.write_all(b".").is_err()) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // Accepted after every slowloris client (the listener accepts in order), so they are all
    // in the room when its line is read.
    let talker = connect(server.address);
    (&talker).write_all(b"normal\n").unwrap();
    let mut normal = [0u8; 7];
    (&reader).read_exact(&mut normal).unwrap();
    assert_eq!(&normal, b"normal\n");
    // The line came through while every slowloris client was still connected.
    for (i, s) in slow.iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let peek = s.peek(&mut byte); // the whole line waits there, or nothing yet
        assert!(
            matches!(&peek, Ok(1)) || matches!(&peek, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "slowloris client {i} was closed before the normal line went through: {peek:?}"
        );
        s.set_nonblocking(false).unwrap();
    }
    for (i, s) in slow.into_iter().enumerate() {
        let (got, _) = read_all(s).join().unwrap(); // ends: closed when idle
        assert_eq!(
            got, b"normal\n",
            "slowloris client {i}: only the whole line"
        );
    }
    trickle.join().unwrap();
    // The normal members are idle too by now and closed the same way; nothing reached them.
    for (n, member) in [talker, reader].into_iter().enumerate() {
        let (got, _) = read_all(member).join().unwrap();
        assert!(got.is_empty(), "member {n} received {got:?}");
    }
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}
