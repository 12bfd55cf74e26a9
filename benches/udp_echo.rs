//! UDP echo, datagrams per second: the `udp_echo_server` example's dispatcher on a map against
//! a native Tokio echo (current-thread runtime, a `recv_from`/`send_to` loop), in the same run.
//!
//! Each server runs on its own thread with its own current-thread runtime; the load generator
//! (blocking std sockets) runs on the main thread and keeps `window` datagrams of 64 bytes in
//! flight, checking that every echo is the datagram it sent, in order. Rounds alternate
//! between the two servers; the report gives each round, the medians and the ratio.
//!
//! ```text
//! cargo bench --bench udp_echo
//! UDP_BENCH_DATAGRAMS=100000 UDP_BENCH_ROUNDS=9 cargo bench --bench udp_echo
//! ```

mod support;

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asyncore::{Address, Channel, Dispatcher, Family, Map};
use bytes::Bytes;

use support::{env, median};

const PAYLOAD: usize = 64;
/// How long the generator waits for an echo before it calls the round lost.
const PATIENCE: Duration = Duration::from_secs(2);

/// The example's `EchoHandler` (examples/udp_echo_server.rs), without its logging.
#[derive(Default)]
struct EchoHandler {
    pending: VecDeque<(Bytes, Address)>,
}

impl Dispatcher for EchoHandler {
    fn readable(&self, _: &Channel) -> bool {
        self.pending.len() < 1024
    }
    fn writable(&self, _: &Channel) -> bool {
        !self.pending.is_empty()
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let (data, sender) = channel.recvfrom(65535)?;
        self.pending.push_back((data, sender));
        self.handle_write(channel)
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        while let Some((data, sender)) = self.pending.front() {
            match channel.sendto(data, sender) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                _ => {}
            }
            self.pending.pop_front();
        }
        Ok(())
    }
    fn handle_error(&mut self, _: &mut Channel, _: io::Error) {}
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts the asyncore server thread; returns its address.
fn asyncore_server() -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new().name("asyncore-udp".into());
    thread
        .spawn(move || {
            runtime().block_on(async move {
                let mut channel = Channel::create_datagram_socket(Family::Inet).unwrap();
                channel.bind("127.0.0.1:0").unwrap();
                tx.send(channel.local_addr().unwrap().as_inet().unwrap())
                    .unwrap();
                let map = Map::new();
                map.add(channel, EchoHandler::default()).unwrap();
                map.run().await.unwrap();
            })
        })
        .unwrap();
    rx.recv().unwrap()
}

/// Starts the native Tokio server thread; returns its address.
fn tokio_server() -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new().name("tokio-udp".into());
    thread
        .spawn(move || {
            runtime().block_on(async move {
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                tx.send(socket.local_addr().unwrap()).unwrap();
                let mut buf = vec![0u8; 65536];
                loop {
                    let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                    socket.send_to(&buf[..n], from).await.unwrap();
                }
            })
        })
        .unwrap();
    rx.recv().unwrap()
}

/// One round: `count` datagrams through `server`, `window` in flight; datagrams per second.
fn round(server: SocketAddr, count: u64, window: u64) -> f64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let datagram = |seq: u64| {
        let mut d = [0u8; PAYLOAD];
        d[..8].copy_from_slice(&seq.to_be_bytes());
        d
    };
    let started = Instant::now();
    let mut sent = 0;
    while sent < window.min(count) {
        socket.send(&datagram(sent)).unwrap();
        sent += 1;
    }
    let mut echo = [0u8; 2 * PAYLOAD];
    for expected in 0..count {
        let n = socket
            .recv(&mut echo)
            .unwrap_or_else(|e| panic!("echo {expected} of {count} lost ({e}); lower the window"));
        assert_eq!(
            echo[..n],
            datagram(expected),
            "echo out of order or changed"
        );
        if sent < count {
            socket.send(&datagram(sent)).unwrap();
            sent += 1;
        }
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let count = env("UDP_BENCH_DATAGRAMS", 50_000);
    let rounds = env("UDP_BENCH_ROUNDS", 7).max(1);
    let ours = asyncore_server();
    let native = tokio_server();
    // Warm both up (page faults, socket buffers) outside the measurement.
    round(ours, 2_000, 16);
    round(native, 2_000, 16);
    println!(
        "udp echo, {PAYLOAD}-byte datagrams, {count} per round, {rounds} rounds each, interleaved"
    );
    for window in [1, 32] {
        let (mut a, mut t) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(round(ours, count, window));
            t.push(round(native, count, window));
        }
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{:.0}", x))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("window {window}:");
        println!("  asyncore udp_echo_server  datagrams/s: {}", fmt(&a));
        println!("  tokio recv_from/send_to   datagrams/s: {}", fmt(&t));
        let (ma, mt) = (median(a), median(t));
        println!(
            "  median: asyncore {ma:.0}/s, tokio {mt:.0}/s, ratio {:.3}",
            ma / mt
        );
    }
}
