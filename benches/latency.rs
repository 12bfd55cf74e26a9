//! How long a normal client waits while others flood the server or hold it open slowly:
//! `chat_server`, `echo_server` and `kv_server` (this crate) and, where a plain Tokio server of
//! the same program exists, `native_chat_server` and `native_echo_server`, in one run. And the
//! chat room with every member flooding: lines relayed per second, the server's peak memory,
//! members dropped and lines that never arrived.
//!
//! ```text
//! cargo bench --bench latency                  # 2 rounds of everything, about 3 minutes
//! cargo bench --bench latency -- quick         # 1 round, fewer probes and connections
//! cargo bench --bench latency -- chat echo     # only these programs (chat, echo, kv)
//! LATENCY_ROUNDS=3 LATENCY_PROBES=300 LATENCY_MEMBERS=200 LATENCY_FLOODERS=32 \
//!     LATENCY_SLOWLORIS=2000 cargo bench --bench latency
//! ```
//!
//! Each server runs as a child process (current-thread runtime; `kv_server`'s store on two
//! worker threads) with its default options: no idle timeout for any of them, so the slowloris
//! connections stay for the whole measurement. Three conditions, each on a fresh server:
//!
//! - **quiet**: nothing but the normal client (in the chat room, `LATENCY_MEMBERS` other
//!   members are connected, reading and silent);
//! - **flood**: in the chat room every other member writes 64-byte lines as fast as its
//!   socket takes them and reads everything at full speed; for echo and kv,
//!   `LATENCY_FLOODERS` connections write as fast as their sockets take it (64 KiB blocks;
//!   64 `SET` commands at a time) and read every answer;
//! - **slowloris**: `LATENCY_SLOWLORIS` connections each send one byte of a command every
//!   2 s and never finish it (the chat room's members are there too, silent). In the chat
//!   room they are members like any other: every probe line goes to each of them, so this
//!   condition is also a room twenty times larger.
//!
//! The normal client runs on a thread and a runtime of its own, so that the load's clients in
//! this process do not delay it (they still share the machine's two cores with the server). It
//! makes `LATENCY_PROBES` probes, 10 ms apart: in the chat room one member sends a short line
//! every 10 ms and the time until it reaches another member, which reads everything at full
//! speed, is its latency (lines are sent without waiting for the previous one, as people in
//! a room do); for echo, a 64-byte message and its whole echo; for kv, a `GET` and its
//! answer. A probe unanswered after 5 s counts as unanswered (for echo and kv, with every
//! probe after it). Latencies are pooled over rounds: the median, the 99th percentile and
//! the maximum of all of them.
//!
//! The flood's load is counted while the probes run: lines received by the flooding members
//! together (chat), bytes echoed (echo), answers (kv). In the chat room each flood line carries
//! its sender and its number, and every member checks that each sender's lines come in order
//! and without a gap; at the end the members the server closed, the lines that skipped a
//! member and those that came out of order are counted. The server's peak resident memory
//! (`VmHWM`) is read at the end of each measurement. The file-descriptor limit is raised to
//! its hard limit (the servers inherit it).

mod support;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use support::{args, connect, env, example, median, raise_fd_limit, Server};

/// A chat line of the flood, newline included.
const LINE: usize = 64;
/// The time between two probes.
const PACE: Duration = Duration::from_millis(10);
/// A probe unanswered for this long counts as unanswered.
const PROBE_LIMIT: Duration = Duration::from_secs(5);
/// How often each slowloris connection sends its next byte.
const TRICKLE: Duration = Duration::from_secs(2);
/// How long the flood runs before the probes start.
const WARMUP: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Chat,
    Echo,
    Kv,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Chat => "chat",
            Protocol::Echo => "echo",
            Protocol::Kv => "kv",
        }
    }
}

/// The programs measured, the crate's first of each pair.
const SERVERS: [(&str, Protocol); 5] = [
    ("chat_server", Protocol::Chat),
    ("native_chat_server", Protocol::Chat),
    ("echo_server", Protocol::Echo),
    ("native_echo_server", Protocol::Echo),
    ("kv_server", Protocol::Kv),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    Quiet,
    Flood,
    Slowloris,
}

const CONDITIONS: [Condition; 3] = [Condition::Quiet, Condition::Flood, Condition::Slowloris];

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Condition::Quiet => "quiet",
            Condition::Flood => "flood",
            Condition::Slowloris => "slowloris",
        }
    }
}

#[derive(Clone, Copy)]
struct Settings {
    probes: usize,
    /// Members of the chat room besides the normal client's two.
    members: usize,
    /// Flooding connections for echo and kv.
    flooders: usize,
    slowloris: usize,
}

/// What the normal client saw.
#[derive(Default)]
struct Probed {
    latencies: Vec<Duration>,
    unanswered: usize,
}

/// One server under one condition, once.
struct Sample {
    probed: Probed,
    /// The flood's rate: lines a second (chat), MiB a second (echo), answers a second (kv).
    load: Option<f64>,
    peak_rss: u64,
    /// After the chat room's flood: what its members heard.
    room: Option<RoomCheck>,
}

/// What the members of a flooded chat room heard, all together.
#[derive(Clone, Copy, Default)]
struct RoomCheck {
    /// Members the server closed.
    dropped: usize,
    /// Flood lines that skipped a member.
    skipped: u64,
    /// Flood lines that came to a member again or out of order.
    disordered: u64,
}

impl Sample {
    /// One line for the progress log.
    fn summary(&self) -> String {
        let mut times = self.probed.latencies.clone();
        times.sort();
        let mut line = format!(
            "{} answered, {} unanswered, median {}, max {}",
            times.len(),
            self.probed.unanswered,
            times.get(times.len() / 2).map_or("-".into(), |t| time(*t)),
            times.last().map_or("-".into(), |t| time(*t)),
        );
        if let Some(load) = self.load {
            line += &format!(", load {load:.0}");
        }
        if let Some(room) = self.room {
            line += &format!(
                ", dropped {}, skipped {}, disordered {}",
                room.dropped, room.skipped, room.disordered
            );
        }
        line + &format!(", peak RSS {:.1} MiB", self.peak_rss as f64 / 1048576.0)
    }
}

fn main() {
    let args = args();
    let quick = args.iter().any(|a| a == "quick");
    let chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["chat", "echo", "kv"].contains(a))
        .collect();
    let rounds = env("LATENCY_ROUNDS", if quick { 1 } else { 2 }).max(1);
    let settings = Settings {
        probes: env("LATENCY_PROBES", if quick { 100 } else { 200 }).max(1),
        members: env("LATENCY_MEMBERS", if quick { 50 } else { 100 }).max(2),
        flooders: env("LATENCY_FLOODERS", 16).max(1),
        slowloris: env("LATENCY_SLOWLORIS", if quick { 500 } else { 2000 }),
    };
    if let Err(e) = raise_fd_limit() {
        eprintln!("latency: cannot raise the file-descriptor limit: {e}");
    }
    let servers: Vec<(&str, Protocol)> = SERVERS
        .into_iter()
        .filter(|(_, p)| chosen.is_empty() || chosen.contains(&p.name()))
        .collect();
    let binaries: Vec<PathBuf> = match servers.iter().map(|(s, _)| example(s)).collect() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("latency: {e}");
            std::process::exit(1);
        }
    };
    // samples[server][condition]
    let mut samples: Vec<Vec<Vec<Sample>>> = servers
        .iter()
        .map(|_| CONDITIONS.iter().map(|_| Vec::new()).collect())
        .collect();
    for round in 0..rounds {
        for (c, &condition) in CONDITIONS.iter().enumerate() {
            // Each program next to its native twin, the order alternating by round.
            let mut order: Vec<usize> = (0..servers.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for s in order {
                let (name, protocol) = servers[s];
                match measure(&binaries[s], protocol, condition, settings) {
                    Ok(sample) => {
                        eprintln!(
                            "round {round}: {name} {}: {}",
                            condition.name(),
                            sample.summary()
                        );
                        samples[s][c].push(sample);
                    }
                    Err(e) => eprintln!("round {round}: {name} {}: {e}", condition.name()),
                }
            }
        }
    }
    report(&servers, &samples, rounds, settings);
}

fn report(
    servers: &[(&str, Protocol)],
    samples: &[Vec<Vec<Sample>>],
    rounds: usize,
    settings: Settings,
) {
    println!(
        "latency: {rounds} round(s); {} probes per round, one every {PACE:?}; chat room of {} \
         members besides the normal client; {} flooding connections (echo, kv); {} slowloris \
         connections\n",
        settings.probes, settings.members, settings.flooders, settings.slowloris
    );
    println!("| server | condition | answered | median | p99 | max | unanswered | flood's load (median) | peak RSS (median) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (s, (name, protocol)) in servers.iter().enumerate() {
        for (c, condition) in CONDITIONS.iter().enumerate() {
            let runs = &samples[s][c];
            if runs.is_empty() {
                println!(
                    "| {name} | {} | – | – | – | – | – | – | – |",
                    condition.name()
                );
                continue;
            }
            let mut times: Vec<Duration> = runs
                .iter()
                .flat_map(|r| r.probed.latencies.iter().copied())
                .collect();
            times.sort();
            let unanswered: usize = runs.iter().map(|r| r.probed.unanswered).sum();
            let at = |q: f64| -> String {
                if times.is_empty() {
                    return "–".into();
                }
                let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
                time(times[i])
            };
            let loads: Vec<f64> = runs.iter().filter_map(|r| r.load).collect();
            let load = if loads.is_empty() {
                "–".to_string()
            } else {
                let unit = match protocol {
                    Protocol::Chat => "lines/s",
                    Protocol::Echo => "MiB/s",
                    Protocol::Kv => "answers/s",
                };
                format!("{:.0} {unit}", median(loads))
            };
            let rss = median(runs.iter().map(|r| r.peak_rss as f64).collect()) / 1048576.0;
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} | {load} | {rss:.1} MiB |",
                condition.name(),
                times.len(),
                at(0.5),
                at(0.99),
                at(1.0),
                unanswered,
            );
        }
    }
    let flood = CONDITIONS
        .iter()
        .position(|c| *c == Condition::Flood)
        .expect("a flood condition");
    let chats: Vec<usize> = (0..servers.len())
        .filter(|&s| servers[s].1 == Protocol::Chat && !samples[s][flood].is_empty())
        .collect();
    if chats.is_empty() {
        return;
    }
    println!(
        "\nThe chat room with all {} members flooding (medians over rounds; members dropped and \
         lines: summed over rounds)\n",
        settings.members
    );
    println!(
        "| server | lines relayed/s | peak RSS | members dropped | lines that skipped a member | \
         out of order |"
    );
    println!("|---|---|---|---|---|---|");
    for s in chats {
        let runs = &samples[s][flood];
        let rate = median(runs.iter().filter_map(|r| r.load).collect());
        let rss = median(runs.iter().map(|r| r.peak_rss as f64).collect()) / 1048576.0;
        let sum = runs
            .iter()
            .filter_map(|r| r.room)
            .fold(RoomCheck::default(), |sum, r| RoomCheck {
                dropped: sum.dropped + r.dropped,
                skipped: sum.skipped + r.skipped,
                disordered: sum.disordered + r.disordered,
            });
        let RoomCheck {
            dropped,
            skipped,
            disordered,
        } = sum;
        println!(
            "| {} | {rate:.0} | {rss:.1} MiB | {dropped} | {skipped} | {disordered} |",
            servers[s].0,
        );
    }
}

/// A latency as the table shows it.
fn time(t: Duration) -> String {
    let ms = t.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

/// One fresh server under one condition.
fn measure(
    binary: &std::path::Path,
    protocol: Protocol,
    condition: Condition,
    settings: Settings,
) -> io::Result<Sample> {
    let server = Server::start(binary, &[])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async {
        let mut client = NormalClient::spawn(protocol, server.address, settings.probes);
        client.ready().await?;
        let load = Load::start(protocol, condition, server.address, settings).await?;
        tokio::time::sleep(WARMUP).await;
        let (start, before) = (Instant::now(), load.received.get());
        let probed = client.run().await?;
        let rate = (load.received.get() - before) as f64 / start.elapsed().as_secs_f64();
        let room = load.finish().await;
        let load = (condition == Condition::Flood).then_some(match protocol {
            Protocol::Echo => rate / 1048576.0,
            Protocol::Chat | Protocol::Kv => rate,
        });
        io::Result::Ok(Sample {
            probed,
            load,
            peak_rss: server.peak_rss()?,
            room,
        })
    });
    drop(local); // the load's connections, before the server goes
    runtime.shutdown_background();
    result
}

// ---------------------------------------------------------------------------------------------
// The normal client, on a thread of its own

struct NormalClient {
    ready: Option<oneshot::Receiver<()>>,
    go: oneshot::Sender<()>,
    done: oneshot::Receiver<io::Result<Probed>>,
}

impl NormalClient {
    /// Starts the thread: it connects, then waits for [`NormalClient::run`].
    fn spawn(protocol: Protocol, address: SocketAddr, probes: usize) -> NormalClient {
        let (ready_tx, ready) = oneshot::channel();
        let (go, go_rx) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel();
        std::thread::spawn(move || {
            let result = (|| -> io::Result<Probed> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let local = tokio::task::LocalSet::new();
                let result = local.block_on(&runtime, async move {
                    let probe = Probe::connect(protocol, address).await?;
                    let _ = ready_tx.send(());
                    if go_rx.await.is_err() {
                        return Ok(Probed::default());
                    }
                    probe.run(probes).await
                });
                drop(local);
                runtime.shutdown_background();
                result
            })();
            let _ = done_tx.send(result);
        });
        NormalClient {
            ready: Some(ready),
            go,
            done,
        }
    }

    /// Waits until the client is connected (and, in the chat room, a member).
    async fn ready(&mut self) -> io::Result<()> {
        let ready = self.ready.take().expect("ready() once");
        if ready.await.is_ok() {
            return Ok(());
        }
        match (&mut self.done).await {
            Ok(Err(e)) => Err(e),
            _ => Err(io::Error::other("the normal client's thread ended")),
        }
    }

    /// Makes the probes; returns what the client saw.
    async fn run(self) -> io::Result<Probed> {
        let _ = self.go.send(());
        self.done
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the normal client's thread ended")))
    }
}

enum Probe {
    /// A member that talks and one that listens for its lines.
    Chat {
        talker: OwnedWriteHalf,
        arrivals: Rc<RefCell<Vec<Option<Instant>>>>,
    },
    Echo(TcpStream),
    Kv(BufReader<TcpStream>),
}

impl Probe {
    async fn connect(protocol: Protocol, address: SocketAddr) -> io::Result<Probe> {
        Ok(match protocol {
            Protocol::Chat => {
                // The listener is accepted first, so it is in the room when the talker's line
                // is read.
                let mut listener = connect(address).await?;
                let talker = connect(address).await?;
                // Lines 10 ms apart: without this, Nagle's algorithm holds one back until the
                // server's delayed acknowledgement of the one before (up to 40 ms).
                talker.set_nodelay(true)?;
                let (talker_read, mut talker) = talker.into_split();
                talker.write_all(b"hello\n").await?;
                let mut hello = [0u8; 6];
                bounded(listener.read_exact(&mut hello)).await?;
                if &hello != b"hello\n" {
                    return Err(io::Error::other(format!("the room said {hello:?}")));
                }
                let arrivals = Rc::new(RefCell::new(Vec::new()));
                tokio::task::spawn_local(listen_for_probes(listener, arrivals.clone()));
                tokio::task::spawn_local(count_lines(talker_read, Rc::default()));
                Probe::Chat { talker, arrivals }
            }
            Protocol::Echo => Probe::Echo(connect(address).await?),
            Protocol::Kv => {
                let mut stream = BufReader::new(connect(address).await?);
                stream.get_mut().write_all(b"SET probe 1\n").await?;
                let mut answer = String::new();
                bounded(stream.read_line(&mut answer)).await?;
                if answer != "OK\n" {
                    return Err(io::Error::other(format!("SET answered {answer:?}")));
                }
                Probe::Kv(stream)
            }
        })
    }

    async fn run(self, probes: usize) -> io::Result<Probed> {
        let mut probed = Probed::default();
        match self {
            Probe::Chat {
                mut talker,
                arrivals,
            } => {
                arrivals.borrow_mut().resize(probes, None);
                let mut sent = Vec::with_capacity(probes);
                for seq in 0..probes {
                    sent.push(Instant::now());
                    bounded(talker.write_all(format!("probe {seq}\n").as_bytes())).await?;
                    tokio::time::sleep(PACE).await;
                }
                let deadline = Instant::now() + PROBE_LIMIT;
                while arrivals.borrow().iter().any(Option::is_none) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                for (sent, arrived) in sent.iter().zip(arrivals.borrow().iter()) {
                    match arrived {
                        Some(at) => probed.latencies.push(at.duration_since(*sent)),
                        None => probed.unanswered += 1,
                    }
                }
            }
            Probe::Echo(mut stream) => {
                let mut message = [b'e'; 64];
                let mut echo = [0u8; 64];
                for seq in 0..probes {
                    message[..8].copy_from_slice(&(seq as u64).to_le_bytes());
                    let start = Instant::now();
                    let answered = tokio::time::timeout(PROBE_LIMIT, async {
                        stream.write_all(&message).await?;
                        stream.read_exact(&mut echo).await
                    })
                    .await;
                    match answered {
                        Ok(Ok(_)) if echo == message => probed.latencies.push(start.elapsed()),
                        Ok(Ok(_)) => return Err(io::Error::other("a wrong echo")),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            probed.unanswered = probes - seq;
                            break;
                        }
                    }
                    tokio::time::sleep(PACE).await;
                }
            }
            Probe::Kv(mut stream) => {
                let mut answer = String::new();
                for seq in 0..probes {
                    answer.clear();
                    let start = Instant::now();
                    let answered = tokio::time::timeout(PROBE_LIMIT, async {
                        stream.get_mut().write_all(b"GET probe\n").await?;
                        stream.read_line(&mut answer).await
                    })
                    .await;
                    match answered {
                        Ok(Ok(_)) if answer == "VALUE 1\n" => {
                            probed.latencies.push(start.elapsed())
                        }
                        Ok(Ok(_)) => return Err(io::Error::other(format!("GET: {answer:?}"))),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            probed.unanswered = probes - seq;
                            break;
                        }
                    }
                    tokio::time::sleep(PACE).await;
                }
            }
        }
        Ok(probed)
    }
}

/// `future`, or a timeout error after [`PROBE_LIMIT`].
async fn bounded<T>(future: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(PROBE_LIMIT, future)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("no answer in time")))
}

/// Reads everything at full speed and notes when each `probe N` line arrives.
async fn listen_for_probes(mut reader: TcpStream, arrivals: Rc<RefCell<Vec<Option<Instant>>>>) {
    let mut buf = vec![0u8; 64 * 1024];
    // The start of the line being read: enough of it to tell a probe and its number.
    let mut head: Vec<u8> = Vec::with_capacity(16);
    let keep = |head: &mut Vec<u8>, bytes: &[u8]| {
        let room = 16 - head.len();
        head.extend_from_slice(&bytes[..bytes.len().min(room)]);
    };
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
        let now = Instant::now();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buf[..n]) {
            keep(&mut head, &buf[start..end]);
            if let Some(seq) = head
                .strip_prefix(b"probe ")
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse::<usize>().ok())
            {
                if let Some(slot) = arrivals.borrow_mut().get_mut(seq) {
                    slot.get_or_insert(now);
                }
            }
            head.clear();
            start = end + 1;
        }
        keep(&mut head, &buf[start..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// The load: the chat room's other members, the flood, the slowloris connections

/// What one member of the chat room heard.
#[derive(Default)]
struct Heard {
    lines: Cell<u64>,
    /// Flood lines that never came: gaps in a sender's numbers.
    skipped: Cell<u64>,
    /// Flood lines that came again or out of order.
    disordered: Cell<u64>,
    /// The server closed the connection.
    ended: Cell<bool>,
}

struct Load {
    /// What the load's clients have received: lines (chat, kv) or bytes (echo).
    received: Rc<Cell<u64>>,
    stop: CancellationToken,
    members: Vec<Rc<Heard>>,
    /// Flooding writers; each ends with its write half, to be kept open (a chat member that
    /// has finished sending is sent nothing more).
    writers: Vec<JoinHandle<OwnedWriteHalf>>,
    /// Connections kept open: silent members' write halves, slowloris connections.
    held: Vec<OwnedWriteHalf>,
}

impl Load {
    async fn start(
        protocol: Protocol,
        condition: Condition,
        address: SocketAddr,
        settings: Settings,
    ) -> io::Result<Load> {
        let mut load = Load {
            received: Rc::default(),
            stop: CancellationToken::new(),
            members: Vec::new(),
            writers: Vec::new(),
            held: Vec::new(),
        };
        let flooding = condition == Condition::Flood;
        match protocol {
            Protocol::Chat => {
                let mut halves = Vec::with_capacity(settings.members);
                for _ in 0..settings.members {
                    let (reader, writer) = connect(address).await?.into_split();
                    let heard = Rc::new(Heard::default());
                    tokio::task::spawn_local(hear(
                        reader,
                        heard.clone(),
                        load.received.clone(),
                        settings.members,
                    ));
                    load.members.push(heard);
                    halves.push(writer);
                }
                // Everyone is in the room once the last member's line reaches the first
                // (accepted in order, each joins before the next is read).
                let last = halves.last_mut().expect("two members at least");
                let mut joined = [b'j'; LINE];
                joined[LINE - 1] = b'\n';
                last.write_all(&joined).await?;
                let first = load.members[0].clone();
                let deadline = Instant::now() + Duration::from_secs(30);
                while first.lines.get() == 0 {
                    if Instant::now() > deadline {
                        return Err(io::Error::other("the members did not all join"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                for (sender, writer) in halves.into_iter().enumerate() {
                    if flooding {
                        let stop = load.stop.clone();
                        // 16 lines a block.
                        let lines = move |block: &mut Vec<u8>, n: u64| {
                            (n * 16..n * 16 + 16).for_each(|seq| flood_line(block, sender, seq))
                        };
                        load.writers
                            .push(tokio::task::spawn_local(flood(writer, lines, stop)));
                    } else {
                        load.held.push(writer);
                    }
                }
            }
            Protocol::Echo | Protocol::Kv if flooding => {
                for i in 0..settings.flooders {
                    let (reader, writer) = connect(address).await?.into_split();
                    let received = load.received.clone();
                    let stop = load.stop.clone();
                    let flooder = if protocol == Protocol::Echo {
                        tokio::task::spawn_local(count_bytes(reader, received));
                        let block = |block: &mut Vec<u8>, _| block.resize(64 * 1024, b'f');
                        tokio::task::spawn_local(flood(writer, block, stop))
                    } else {
                        tokio::task::spawn_local(count_lines(reader, received));
                        let set = format!("SET flood{i} 0123456789abcdef\n").repeat(64);
                        let block =
                            move |block: &mut Vec<u8>, _| block.extend_from_slice(set.as_bytes());
                        tokio::task::spawn_local(flood(writer, block, stop))
                    };
                    load.writers.push(flooder);
                }
            }
            Protocol::Echo | Protocol::Kv => {}
        }
        if condition == Condition::Slowloris {
            let mut slow = Vec::with_capacity(settings.slowloris);
            for _ in 0..settings.slowloris {
                let (_, writer) = connect(address).await?.into_split();
                slow.push(writer);
            }
            tokio::task::spawn_local(trickle(slow, load.stop.clone()));
        }
        Ok(load)
    }

    /// Stops the load; after a chat room's flood, what its members heard.
    async fn finish(mut self) -> Option<RoomCheck> {
        self.stop.cancel();
        let flooded = !self.writers.is_empty() && !self.members.is_empty();
        for writer in std::mem::take(&mut self.writers) {
            if let Ok(writer) = writer.await {
                self.held.push(writer);
            }
        }
        if !flooded {
            return None;
        }
        Some(RoomCheck {
            dropped: self.members.iter().filter(|m| m.ended.get()).count(),
            skipped: self.members.iter().map(|m| m.skipped.get()).sum(),
            disordered: self.members.iter().map(|m| m.disordered.get()).sum(),
        })
    }
}

/// Flood line `seq` of member `sender`: 64 bytes, numbered so that its readers can tell a gap.
fn flood_line(block: &mut Vec<u8>, sender: usize, seq: u64) {
    use std::io::Write;
    let start = block.len();
    let _ = write!(block, "{sender:05} {seq:012} ");
    block.resize(start + LINE - 1, b'x');
    block.push(b'\n');
}

/// The numbers of a flood line (without its newline): sender and sequence.
fn flood_numbers(line: &[u8]) -> Option<(usize, u64)> {
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    if line.len() != LINE - 1 || line[5] != b' ' {
        return None;
    }
    Some((number(&line[..5])? as usize, number(&line[6..18])?))
}

/// A chat member's reader: reads everything at full speed, counts the lines, checks that each
/// sender's flood lines come in order without a gap, and notes when the server closes it.
async fn hear(mut reader: OwnedReadHalf, heard: Rc<Heard>, total: Rc<Cell<u64>>, members: usize) {
    let mut next = vec![0u64; members];
    let mut check = |line: &[u8]| {
        let Some((sender, seq)) = flood_numbers(line) else {
            return; // the join line, a probe
        };
        let Some(expected) = next.get_mut(sender) else {
            return;
        };
        if seq > *expected {
            heard.skipped.set(heard.skipped.get() + seq - *expected);
        } else if seq < *expected {
            heard.disordered.set(heard.disordered.get() + 1);
        }
        *expected = seq + 1;
    };
    let mut buf = vec![0u8; 64 * 1024];
    // The part of a line that the last read cut.
    let mut carry: Vec<u8> = Vec::with_capacity(LINE);
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut start = 0;
        let mut lines = 0;
        for end in memchr::memchr_iter(b'\n', &buf[..n]) {
            if carry.is_empty() {
                check(&buf[start..end]);
            } else {
                carry.extend_from_slice(&buf[start..end]);
                check(&carry);
                carry.clear();
            }
            start = end + 1;
            lines += 1;
        }
        carry.extend_from_slice(&buf[start..n]);
        heard.lines.set(heard.lines.get() + lines);
        total.set(total.get() + lines);
    }
    heard.ended.set(true);
}

/// Reads everything at full speed and counts the lines.
async fn count_lines(mut reader: OwnedReadHalf, total: Rc<Cell<u64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
        total.set(total.get() + memchr::memchr_iter(b'\n', &buf[..n]).count() as u64);
    }
}

/// Reads everything at full speed and counts the bytes.
async fn count_bytes(mut reader: OwnedReadHalf, total: Rc<Cell<u64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
        total.set(total.get() + n as u64);
    }
}

/// Writes as fast as the socket takes it until `stop`: block after block, block `n` made by
/// `make(block, n)`. Returns the write half (dropping it would end the connection's sending
/// side).
async fn flood(
    mut writer: OwnedWriteHalf,
    mut make: impl FnMut(&mut Vec<u8>, u64),
    stop: CancellationToken,
) -> OwnedWriteHalf {
    let (mut block, mut sent, mut made) = (Vec::new(), 0, 0u64);
    loop {
        if sent == block.len() {
            block.clear();
            make(&mut block, made);
            (sent, made) = (0, made + 1);
        }
        tokio::select! {
            n = writer.write(&block[sent..]) => match n {
                Ok(n) if n > 0 => sent += n,
                _ => return writer,
            },
            () = stop.cancelled() => return writer,
        }
    }
}

/// Sends one byte on each connection every [`TRICKLE`], spread evenly, never a newline.
async fn trickle(slow: Vec<OwnedWriteHalf>, stop: CancellationToken) {
    if slow.is_empty() {
        return;
    }
    let tick = Duration::from_millis(10);
    let per_tick = (slow.len() as f64 * tick.as_secs_f64() / TRICKLE.as_secs_f64()).ceil() as usize;
    let mut ticks = tokio::time::interval(tick);
    let mut next = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        for _ in 0..per_tick {
            let _ = slow[next].try_write(b"x");
            next = (next + 1) % slow.len();
        }
    }
}
