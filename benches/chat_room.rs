//! Chat-room benchmark: `examples/chat_server` (asynchat, one log with a cursor per member,
//! back-pressure) against `examples/native_chat_server` (plain Tokio, one `broadcast` channel)
//! side by side in one run, under the same clients.
//!
//! ```text
//! cargo bench --bench chat_room                 # 3 rounds of every point
//! CHAT_ROOM_ROUNDS=5 cargo bench --bench chat_room
//! cargo bench --bench chat_room -- quick        # 1 short round, 1000 members only
//! CHAT_ROOM_MEMBERS=10000 cargo bench --bench chat_room   # only these room sizes
//! ```
//!
//! Points: 1,000 and 10,000 members; one member talking, or all of them. The one talker writes
//! 64-byte lines as fast as its socket takes them; when all talk, each member writes one line
//! every `members / 10,000` seconds (10,000 lines a second from the room as a whole, phases
//! spread evenly), which is more than either server relays to every member, while the clients'
//! own thread is not spent on writing alone. Every member reads everything at full speed and
//! counts the lines it receives. After the members have joined and a warm-up, a window of
//! fixed length gives the lines relayed per second (lines received by all members together),
//! and the server's peak resident memory (`VmHWM` from `/proc`) is read at the end of the round.
//!
//! Each point is measured in rounds, crate then native then crate... (the order alternates by
//! round); the table shows the medians over rounds and the ratio crate / native. Both servers
//! are child processes on a current-thread runtime; the clients are this process, one
//! current-thread Tokio runtime. The file-descriptor limit is raised to its hard limit, which
//! the servers inherit.
//!
//! What the native server does differently under load: a member more than 1024 lines behind
//! loses lines (`Lagged`) where `chat_server` slows the talkers down instead; lost lines are not
//! counted as relayed.

mod support;

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{args, connect, env, example, median, raise_fd_limit, Server};

const SERVERS: [&str; 2] = ["chat_server", "native_chat_server"];
const LINE: usize = 64;
/// Lines a second the whole room sends when all members talk.
const ROOM_RATE: f64 = 10_000.0;

#[derive(Clone, Copy)]
struct Point {
    members: usize,
    all_talk: bool,
}

impl Point {
    fn name(&self) -> String {
        let who = if self.all_talk {
            "all talk"
        } else {
            "one talks"
        };
        format!("{} members, {who}", self.members)
    }
}

struct Sample {
    lines_per_sec: f64,
    peak_rss: u64,
}

fn main() {
    let args = args();
    let quick = args.iter().any(|a| a == "quick");
    let rounds: usize = env("CHAT_ROOM_ROUNDS", if quick { 1 } else { 3 });
    let (warmup, window) = if quick {
        (Duration::from_millis(300), Duration::from_secs(1))
    } else {
        (Duration::from_millis(500), Duration::from_secs(2))
    };
    if let Err(e) = raise_fd_limit() {
        eprintln!("chat_room: cannot raise the file-descriptor limit: {e}");
    }
    let binaries: Vec<PathBuf> = match SERVERS.iter().map(|s| example(s)).collect() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("chat_room: {e}");
            std::process::exit(1);
        }
    };
    let sizes: Vec<usize> = match std::env::var("CHAT_ROOM_MEMBERS") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) if quick => vec![1000],
        Err(_) => vec![1000, 10_000],
    };
    let points: Vec<Point> = sizes
        .iter()
        .flat_map(|&members| [false, true].map(|all_talk| Point { members, all_talk }))
        .collect();
    let mut samples: Vec<[Vec<Sample>; 2]> = points.iter().map(|_| [vec![], vec![]]).collect();
    for round in 0..rounds {
        for (p, point) in points.iter().enumerate() {
            for k in 0..2 {
                let s = (k + round) % 2;
                match measure(&binaries[s], *point, warmup, window) {
                    Ok(sample) => {
                        eprintln!(
                            "round {round}: {} {}: {:.0} lines/s, peak RSS {:.1} MiB",
                            point.name(),
                            SERVERS[s],
                            sample.lines_per_sec,
                            sample.peak_rss as f64 / (1 << 20) as f64
                        );
                        samples[p][s].push(sample);
                    }
                    Err(e) => eprintln!("round {round}: {} {}: {e}", point.name(), SERVERS[s]),
                }
            }
        }
    }
    println!(
        "chat_room: {rounds} round(s), {window:?} window after {warmup:?} warm-up, {LINE}-byte \
         lines, medians; ratio = crate / native\n"
    );
    println!(
        "| point | lines/s crate | lines/s native | ratio | peak RSS crate | peak RSS native |"
    );
    println!("|---|---|---|---|---|---|");
    for (p, point) in points.iter().enumerate() {
        let [ours, native] = &samples[p];
        if ours.is_empty() || native.is_empty() {
            println!("| {} | – | – | – | – | – |", point.name());
            continue;
        }
        let rate = |s: &[Sample]| median(s.iter().map(|s| s.lines_per_sec).collect());
        let rss = |s: &[Sample]| median(s.iter().map(|s| s.peak_rss as f64).collect()) / 1048576.0;
        let (a, b) = (rate(ours), rate(native));
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} MiB | {:.1} MiB |",
            point.name(),
            a,
            b,
            a / b,
            rss(ours),
            rss(native)
        );
    }
}

/// One round of one point against one server.
fn measure(binary: &Path, point: Point, warmup: Duration, window: Duration) -> io::Result<Sample> {
    let mut server = Server::start(binary, &[])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let received = Rc::new(Cell::new(0u64));
    let result = local.block_on(&runtime, async {
        let mut streams = Vec::with_capacity(point.members);
        for _ in 0..point.members {
            let stream = connect(server.address).await?;
            streams.push(stream);
        }
        // Joined: one line from the last member reaches the first.
        let (mut first_read, first_write) = streams.remove(0).into_split();
        let last = streams.last_mut().expect("two members at least");
        last.write_all(b"joined\n").await?;
        let mut joined = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(30), first_read.read_exact(&mut joined))
            .await
            .map_err(|_| io::Error::other("the members did not all join"))??;
        let mut silent = Vec::new();
        let mut halves = vec![(first_read, first_write)];
        halves.extend(streams.into_iter().map(|s| s.into_split()));
        for (i, (reader, writer)) in halves.into_iter().enumerate() {
            tokio::task::spawn_local(count_lines(reader, received.clone()));
            if point.all_talk {
                let every = Duration::from_secs_f64(point.members as f64 / ROOM_RATE);
                let phase = every.mul_f64(i as f64 / point.members as f64);
                tokio::task::spawn_local(talk_paced(writer, phase, every));
            } else if i == 0 {
                tokio::task::spawn_local(talk(writer));
            } else {
                silent.push(writer); // kept open for the round
            }
        }
        tokio::time::sleep(warmup).await;
        let (start, before) = (Instant::now(), received.get());
        tokio::time::sleep(window).await;
        let lines = received.get() - before;
        let elapsed = start.elapsed().as_secs_f64();
        let peak_rss = server.peak_rss()?;
        // Stop the server while the members still read (a graceful shutdown drains).
        server.stop().await;
        drop(silent);
        io::Result::Ok(Sample {
            lines_per_sec: lines as f64 / elapsed,
            peak_rss,
        })
    });
    drop(local);
    runtime.shutdown_background();
    result
}

/// Reads everything at full speed and counts the lines.
async fn count_lines(mut reader: tokio::net::tcp::OwnedReadHalf, received: Rc<Cell<u64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
        received.set(received.get() + memchr::memchr_iter(b'\n', &buf[..n]).count() as u64);
    }
}

/// Writes one 64-byte line every `every`, starting after `phase`.
async fn talk_paced(mut writer: tokio::net::tcp::OwnedWriteHalf, phase: Duration, every: Duration) {
    let mut line = [b'y'; LINE];
    line[LINE - 1] = b'\n';
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if writer.write_all(&line).await.is_err() {
            return;
        }
    }
}

/// Writes 64-byte lines as fast as the socket takes them, 16 at a time.
async fn talk(mut writer: tokio::net::tcp::OwnedWriteHalf) {
    let mut line = [b'x'; LINE];
    line[LINE - 1] = b'\n';
    let block: Vec<u8> = line.repeat(16);
    while writer.write_all(&block).await.is_ok() {}
}
