//! Line framing, lines per second: an `AsyncChat` line echo server (terminator `b"\n"`,
//! `take_data` + `push_line`) against a native Tokio server using tokio-util's `LinesCodec`
//! (`Framed::split`, `forward`: lines are fed to the sink and flushed when the input runs
//! dry), fed the same input over loopback in one run, rounds interleaved. Then memory: 100 MiB
//! without a terminator to chats whose record limit is 64 KiB, and to one without a limit for
//! contrast, sampling the process's VmRSS.
//!
//! ```text
//! cargo bench --bench line_framing
//! LINE_BENCH_LINES=400000 LINE_BENCH_ROUNDS=7 cargo bench --bench line_framing
//! ```
//!
//! What runs where: each server has its own thread and current-thread runtime; the generator is
//! blocking std sockets on this thread (a writer thread per connection sends every line at
//! once, the main thread reads the echo and checks every byte).

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{Address, Channel, Dispatcher, Family, Map};
use bytes::Bytes;

use support::{env, median};

const LIMIT: Duration = Duration::from_secs(60);

/// The chat line echo.
struct LineEcho;

impl ChatHandler for LineEcho {
    fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
        let line = chat.take_data();
        chat.push_line(line);
        Ok(())
    }
}

/// A chat that keeps at most its record limit of an over-long line and counts the rest, as
/// smtpd does with "line too long": it answers with the count at the terminator.
struct Discarding {
    dropped: usize,
}

impl ChatHandler for Discarding {
    fn collect_incoming_data(&mut self, chat: &mut Chat, data: Bytes) -> io::Result<()> {
        if chat.incoming_len() + data.len() > chat.max_frame_len() {
            self.dropped += data.len();
            Ok(())
        } else {
            chat.collect_incoming_data(data)
        }
    }
    fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
        let kept = chat.take_data().len();
        chat.push(format!("kept {kept} dropped {}\n", self.dropped));
        self.dropped = 0;
        Ok(())
    }
}

/// Accepts connections, each served by what `make` builds.
struct Acceptor<F>(F);

impl<F: FnMut(&Map, Channel) -> io::Result<()> + 'static> Dispatcher for Acceptor<F> {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        conn: Channel,
        _: Address,
    ) -> io::Result<()> {
        (self.0)(&channel.map().expect("in a map"), conn)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A map on its own thread with a listener whose connections `make` serves.
fn chat_server<F>(make: F) -> SocketAddr
where
    F: FnMut(&Map, Channel) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut listener = Channel::create_socket(Family::Inet).unwrap();
            listener.bind("127.0.0.1:0").unwrap();
            listener.listen(128).unwrap();
            tx.send(listener.local_addr().unwrap().as_inet().unwrap())
                .unwrap();
            let map = Map::new();
            map.add(listener, Acceptor(make)).unwrap();
            map.run().await.unwrap();
        })
    });
    rx.recv().unwrap()
}

/// The native Tokio line echo: LinesCodec, split, forward.
fn native_server() -> SocketAddr {
    use futures::StreamExt;
    use tokio_util::codec::{Framed, LinesCodec};
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send(listener.local_addr().unwrap()).unwrap();
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        tokio::task::spawn_local(async move {
                            let codec = LinesCodec::new_with_max_length(64 * 1024);
                            let (sink, stream) = Framed::new(stream, codec).split();
                            let _ = stream.forward(sink).await;
                        });
                    }
                })
                .await
        })
    });
    rx.recv().unwrap()
}

fn connect(server: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server, LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// One round: `input` (whole lines) sent on each of `connections` connections at once; every
/// echoed byte checked; lines per second over all connections.
fn round(server: SocketAddr, input: &'static [u8], lines: usize, connections: usize) -> f64 {
    let streams: Vec<TcpStream> = (0..connections).map(|_| connect(server)).collect();
    let started = Instant::now();
    let writers: Vec<_> = streams
        .iter()
        .map(|s| {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || s.write_all(input).unwrap())
        })
        .collect();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut echo = vec![0u8; input.len()];
                s.read_exact(&mut echo).unwrap();
                assert!(echo == input, "the echo differs from the input");
            })
        })
        .collect();
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
    (lines * connections) as f64 / started.elapsed().as_secs_f64()
}

/// `lines` lines of 20 to 80 bytes (varied, so reads end mid-line), each ending in `\n`.
fn input(lines: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    for i in 0..lines {
        let len = 20 + (i * 37) % 61;
        out.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
        out.push(b'\n');
    }
    (out, lines)
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `total` bytes without a newline, then one; samples VmRSS every 10 MiB; returns the
/// samples in KiB and the server's answer (or what the connection did).
fn endless_line(server: SocketAddr, total: usize) -> (Vec<u64>, String) {
    let mut stream = connect(server);
    let block = vec![b'x'; 1 << 20];
    let mut samples = vec![vm_rss_kib()];
    let mut sent = 0;
    while sent < total {
        if stream.write_all(&block).is_err() {
            break;
        }
        sent += block.len();
        if sent % (10 << 20) == 0 {
            samples.push(vm_rss_kib());
        }
    }
    let answer = if stream.write_all(b"\n").is_ok() {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        String::from_utf8_lossy(&line).into_owned()
    } else {
        format!(
            "connection closed by the server after {} MiB sent",
            sent >> 20
        )
    };
    samples.push(vm_rss_kib());
    (samples, answer)
}

fn main() {
    let lines = env("LINE_BENCH_LINES", 200_000);
    let rounds = env("LINE_BENCH_ROUNDS", 5).max(1);
    let (data, lines) = input(lines);
    let data: &'static [u8] = Box::leak(data.into_boxed_slice());
    let ours = chat_server(|map, conn| map.add(conn, AsyncChat::new(LineEcho, b"\n")).map(drop));
    let native = native_server();
    let (warm, warm_lines) = input(lines / 10);
    let warm: &'static [u8] = Box::leak(warm.into_boxed_slice());
    round(ours, warm, warm_lines, 1);
    round(native, warm, warm_lines, 1);
    println!(
        "line echo, {lines} lines of 20-80 bytes ({:.1} MiB) per connection, {rounds} rounds each, interleaved",
        data.len() as f64 / (1 << 20) as f64
    );
    for connections in [1, 8] {
        let (mut a, mut t) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(round(ours, data, lines, connections));
            t.push(round(native, data, lines, connections));
        }
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("{connections} connection(s):");
        println!("  AsyncChat line echo     lines/s: {}", fmt(&a));
        println!("  tokio-util LinesCodec   lines/s: {}", fmt(&t));
        let (ma, mt) = (median(a), median(t));
        println!(
            "  median: AsyncChat {ma:.0}/s, LinesCodec {mt:.0}/s, ratio {:.3}",
            ma / mt
        );
    }

    let total = env("LINE_BENCH_ENDLESS_MIB", 100) << 20;
    println!(
        "\n{} MiB without a terminator (VmRSS of the whole process, KiB):",
        total >> 20
    );
    let bounded = chat_server(|map, conn| {
        map.add(conn, AsyncChat::new(Discarding { dropped: 0 }, b"\n"))
            .map(drop)
    });
    let closing = chat_server(|map, conn| map.add(conn, AsyncChat::new(LineEcho, b"\n")).map(drop));
    let unbounded = chat_server(|map, conn| {
        let mut chat = Chat::new(b"\n");
        chat.set_max_frame_len(usize::MAX);
        map.add(conn, AsyncChat::with_chat(Discarding { dropped: 0 }, chat))
            .map(drop)
    });
    for (name, server) in [
        ("limit 64 KiB, over-long part dropped", bounded),
        ("limit 64 KiB, default handle_error", closing),
        ("no limit (max_frame_len = usize::MAX)", unbounded),
    ] {
        let (samples, answer) = endless_line(server, total);
        let first = samples[0];
        let peak = samples.iter().copied().max().unwrap();
        println!(
            "  {name}: start {first}, peak {peak} (+{} KiB), samples {:?}; {answer:.60}",
            peak - first,
            samples
        );
    }
}
