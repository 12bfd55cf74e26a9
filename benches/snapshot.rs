//! `Map::snapshot()` over a map of 10,000 channels: how much one look at the whole map costs,
//! on the map's thread and from another thread (`MapHandle::snapshot`, which adds the trip
//! there and back and the move of the result). Target: well under 10 ms, so that a monitor can
//! take one every second (1 % of a core).
//!
//! ```text
//! cargo bench --bench snapshot            # 10,000 channels, 200 snapshots each way
//! cargo bench --bench snapshot -- quick   # 1,000 channels, 20 snapshots
//! ```
//!
//! The channels are loopback TCP connections that their listeners never accept (as in
//! `lockstep_pass`: one descriptor per channel; a connection in a listener's backlog is
//! connected), half of them plain dispatchers that report no buffers, half asynchat
//! connections that report their framer and output queue (`Dispatcher::buffered`). The map
//! runs for a moment first, so that every channel's task has asked its interest and waits, as
//! in a server.

use std::io;
use std::time::{Duration, Instant};

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{Channel, Dispatcher, InterestScope, Map};

/// An idle connection: it would read, has nothing to write.
struct Idle;

impl Dispatcher for Idle {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own
    }
    fn writable(&self, _: &Channel) -> bool {
        false
    }
}

/// A line handler that never gets a line.
struct Lines;

impl ChatHandler for Lines {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own
    }
    fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
        let line = chat.take_line();
        chat.push_line(line);
        Ok(())
    }
}

/// Connections per listener: below the usual `somaxconn` of 4096.
const PER_LISTENER: usize = 4000;

fn main() -> io::Result<()> {
    let quick = std::env::args().any(|a| a == "quick");
    let (channels, samples) = if quick { (1_000, 20) } else { (10_000, 200) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (local, remote) = runtime.block_on(measure(channels, samples))?;
    report("Map::snapshot (map's thread)", channels, local);
    report("MapHandle::snapshot (another thread)", channels, remote);
    Ok(())
}

async fn measure(channels: usize, samples: usize) -> io::Result<(Vec<Duration>, Vec<Duration>)> {
    let map = Map::new();
    let mut listeners = Vec::new();
    let mut target = None;
    for i in 0..channels {
        if i % PER_LISTENER == 0 {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            socket.listen(PER_LISTENER as i32 + 16)?;
            target = socket.local_addr()?.as_socket();
            listeners.push(socket);
        }
        let address = target.ok_or_else(|| io::Error::other("a listener without an address"))?;
        let stream = std::net::TcpStream::connect(address)?;
        stream.set_nonblocking(true)?;
        let channel = Channel::from_tcp(tokio::net::TcpStream::from_std(stream)?);
        if i % 2 == 0 {
            map.add(channel, Idle)?;
        } else {
            map.add(channel, AsyncChat::new(Lines, b"\n"))?;
        }
    }
    // Every task asks its interest and waits.
    map.run_until(tokio::time::sleep(Duration::from_millis(200)))
        .await?;
    let first = map.snapshot();
    assert_eq!(first.channels.len(), channels);
    assert!(
        first.channels.iter().all(|c| c.waiting),
        "every channel waits"
    );

    let mut local = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        let snapshot = map.snapshot();
        local.push(start.elapsed());
        std::hint::black_box(snapshot);
    }

    let handle = map.handle();
    let (done, finished) = tokio::sync::oneshot::channel();
    let monitor = std::thread::spawn(move || -> io::Result<Vec<Duration>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let times = runtime.block_on(async {
            let mut times = Vec::with_capacity(samples);
            for _ in 0..samples {
                let start = Instant::now();
                let snapshot = handle.snapshot().await?;
                times.push(start.elapsed());
                std::hint::black_box(snapshot);
            }
            io::Result::Ok(times)
        });
        let _ = done.send(());
        times
    });
    map.serve(async {
        let _ = finished.await;
    })
    .await?;
    let remote = monitor
        .join()
        .map_err(|_| io::Error::other("the monitor thread panicked"))??;
    map.close_all();
    Ok((local, remote))
}

fn report(what: &str, channels: usize, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: usize| times[(times.len() - 1) * q / 100];
    println!(
        "snapshot: {what}, {channels} channels, {} snapshots: min {:?}, median {:?}, p90 {:?}, \
         max {:?}; median per channel {:?}",
        times.len(),
        at(0),
        at(50),
        at(90),
        at(100),
        at(50) / channels as u32,
    );
}
