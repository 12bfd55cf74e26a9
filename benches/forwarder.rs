//! The port forwarder (`examples/port_forwarder`, the asyncore recipe ported line for line, its
//! dispatchers' interest `Shared`) against a native Tokio forwarder (`copy_bidirectional`) and a
//! direct connection, side by side in one run: the round trip of one byte (the first byte of a
//! request, answered by the remote end) and the throughput of 64 MiB each way at once.
//!
//! `cargo bench --bench forwarder` (5 interleaved rounds; `FORWARDER_ROUNDS` to change).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PINGS: usize = 2000;
const BULK: usize = 64 << 20;

/// An echo server on its own thread: the remote end.
fn remote_end() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0; 256 * 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// A native Tokio forwarder on its own thread, current-thread runtime, a task per connection.
fn native_forwarder(remote: SocketAddr) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut server = tokio::net::TcpStream::connect(remote).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
    });
    address
}

/// The crate's forwarder, as the example program.
fn crate_forwarder(remote: SocketAddr) -> (Child, SocketAddr) {
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--example", "port_forwarder"])
        .status()
        .unwrap();
    assert!(built.success());
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/release/examples/port_forwarder");
    let mut child = Command::new(program)
        .args(["127.0.0.1:0", &remote.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    (child, address)
}

/// Median round trip of one byte, over one connection.
fn ping(address: SocketAddr) -> Duration {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut times = Vec::with_capacity(PINGS);
    let mut byte = [0u8; 1];
    for i in 0..PINGS {
        let started = Instant::now();
        stream.write_all(&[i as u8]).unwrap();
        stream.read_exact(&mut byte).unwrap();
        times.push(started.elapsed());
        assert_eq!(byte[0], i as u8);
    }
    median(times)
}

/// MiB/s of `BULK` bytes sent and echoed back at once.
fn bulk(address: SocketAddr) -> f64 {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let sending = std::thread::spawn(move || {
        let chunk = vec![7u8; 256 * 1024];
        for _ in 0..BULK / chunk.len() {
            writer.write_all(&chunk).unwrap();
        }
    });
    let mut buf = vec![0; 256 * 1024];
    let mut got = 0;
    while got < BULK {
        let n = (&stream).read(&mut buf).unwrap();
        assert!(n > 0, "the forwarder closed early");
        got += n;
    }
    sending.join().unwrap();
    (BULK as f64 / (1 << 20) as f64) / started.elapsed().as_secs_f64()
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("FORWARDER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let remote = remote_end();
    let native = native_forwarder(remote);
    let (mut child, ours) = crate_forwarder(remote);
    let targets = [
        ("direct", remote),
        ("native", native),
        ("port_forwarder", ours),
    ];
    let mut pings = vec![Vec::new(); targets.len()];
    let mut rates = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for (i, (_, address)) in targets.iter().enumerate() {
            pings[i].push(ping(*address));
            rates[i].push(bulk(*address));
        }
    }
    println!(
        "| path | 1-byte round trip (median of {rounds} medians of {PINGS}) | 64 MiB both ways |"
    );
    println!("|---|---|---|");
    for (i, (name, _)) in targets.iter().enumerate() {
        println!(
            "| {name} | {:.1} µs | {:.0} MiB/s |",
            median(pings[i].clone()).as_secs_f64() * 1e6,
            median(rates[i].clone())
        );
    }
    let (crate_rate, native_rate) = (median(rates[2].clone()), median(rates[1].clone()));
    println!(
        "port_forwarder / native throughput: {:.2}",
        crate_rate / native_rate
    );
    let _ = child.kill();
    let _ = child.wait();
}
