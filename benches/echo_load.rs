//! Load benchmark: the crate's `echo_server` against `native_echo_server` (plain Tokio, the same
//! current-thread set-up), side by side in one run, under the same load generator.
//!
//! ```text
//! cargo bench --bench echo_load                 # every point, 5 rounds (a few minutes)
//! cargo bench --bench echo_load -- quick        # 1 short round of each point (smoke run)
//! cargo bench --bench echo_load -- callgrind    # user-space instructions per message
//! cargo bench --bench echo_load -- c64 connect  # only the points whose names contain these
//! ```
//!
//! What runs where: the two servers are child processes (the release builds of the examples,
//! built first if missing); the generator is this process, one current-thread Tokio runtime.
//! Each point is measured in rounds, crate then native then crate..., and the table shows the
//! medians over rounds and the ratio crate/native of those medians.
//!
//! A round of an echo point opens C connections, each of which sends a message, reads the
//! whole echo back, checks every byte, and repeats (closed loop). After a warm-up the window
//! opens: messages completed inside it give msg/s and the latency percentiles; the server's
//! CPU time (`/proc/PID/task/*/schedstat`, read at both ends of the window) divided by those
//! messages gives CPU per message. The connect point runs a few workers that connect, echo
//! one 64 B message, half-close and wait for the server's close. C=1 points pin the server
//! and the generator to CPU 0 (`taskset`): unpinned, waking the other vCPU dominates.
//! The idle point opens 4000 connections (1000 in quick mode) to a fresh server, echoes once on
//! each, and reports the growth of the server's VmRSS per connection.
//!
//! The callgrind mode runs both servers under `valgrind --tool=callgrind`, zeroes the counters
//! (`callgrind_control -z`) when the window opens, dumps them (`-d`) when it closes, and divides
//! the instructions by the messages (or connections) of the window: a figure that does not
//! drift with whatever else the machine is doing.

use std::cell::Cell;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const SERVERS: [&str; 2] = ["echo_server", "native_echo_server"];
/// Every wait on a child process or a connection is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "quick") || std::env::var_os("ECHO_LOAD_QUICK").is_some();
    let callgrind = args.iter().any(|a| a == "callgrind");
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !matches!(*a, "quick" | "callgrind"))
        .collect();
    let result = if callgrind {
        instructions(quick, &filters)
    } else {
        load(quick, &filters)
    };
    if let Err(e) = result {
        eprintln!("echo_load: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The points

#[derive(Clone, Copy)]
enum Point {
    /// C connections in a closed loop of S-byte messages.
    Echo { conns: usize, size: usize },
    /// Workers that connect, echo one 64 B message and close, over and over.
    Connect { workers: usize },
}

impl Point {
    fn name(&self) -> String {
        match *self {
            Point::Echo { conns, size } => format!("c{conns} {}", size_name(size)),
            Point::Connect { workers } => format!("connect ({workers} workers)"),
        }
    }

    fn pinned(&self) -> bool {
        matches!(self, Point::Echo { conns: 1, .. })
    }
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn selected(point: &Point, filters: &[&str]) -> bool {
    let name = point.name().replace(' ', "");
    filters.is_empty() || filters.iter().any(|f| name.contains(f))
}

// ---------------------------------------------------------------------------------------------
// Wall-clock mode: throughput, latency, CPU per message, memory per idle connection

fn load(quick: bool, filters: &[&str]) -> io::Result<()> {
    let (rounds, warmup, window) = if quick {
        (1, Duration::from_millis(100), Duration::from_millis(300))
    } else {
        (5, Duration::from_millis(300), Duration::from_secs(1))
    };
    let mut points = Vec::new();
    for conns in [1, 64, 1000] {
        for size in [64, 4096, 64 * 1024] {
            points.push(Point::Echo { conns, size });
        }
    }
    points.push(Point::Connect { workers: 8 });
    let runtime = runtime()?;
    let servers: Vec<Server> = SERVERS
        .iter()
        .map(|name| Server::start(name, None))
        .collect::<io::Result<_>>()?;
    let mut table = Table::new(&format!(
        "echo_load: {rounds} round(s), {window:?} window after {warmup:?} warm-up, medians; \
         ratio = crate / native"
    ));
    for point in points.iter().filter(|p| selected(p, filters)) {
        if point.pinned() {
            pin(std::process::id(), "0")?;
            for server in &servers {
                pin(server.pid, "0")?;
            }
        }
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let sample = runtime.block_on(timed(server, *point, warmup, window))?;
                samples[i].push(sample);
            }
        }
        if point.pinned() {
            pin(std::process::id(), "0-1")?;
            for server in &servers {
                pin(server.pid, "0-1")?;
            }
        }
        table.point(point, &samples);
    }
    for server in servers {
        server.stop()?;
    }
    if filters.is_empty() || filters.contains(&"idle") {
        // RSS moves in pages and with the allocator's bins: many connections, fresh servers,
        // several rounds.
        let conns = if quick { 1000 } else { 4000 };
        let mut per_conn = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, name) in SERVERS.into_iter().enumerate() {
                let server = Server::start(name, None)?;
                let bytes = runtime.block_on(idle_memory(&server, conns))?;
                server.stop()?;
                per_conn[i].push(bytes);
            }
        }
        table.idle(conns, median(&per_conn[0]), median(&per_conn[1]));
    }
    print!("{}", table.text);
    Ok(())
}

/// What one round of one point measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Warmup,
    Measure,
    Done,
}

async fn timed(
    server: &Server,
    point: Point,
    warmup: Duration,
    window: Duration,
) -> io::Result<Sample> {
    let phase = Rc::new(Cell::new(Phase::Warmup));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut tasks = Vec::new();
            match point {
                Point::Echo { conns, size } => {
                    for stream in connect_all(server.address, conns).await? {
                        let phase = phase.clone();
                        let pattern = tasks.len() as u64;
                        tasks.push(tokio::task::spawn_local(async move {
                            echo_until_done(stream, size, pattern, &phase).await
                        }));
                    }
                }
                Point::Connect { workers } => {
                    for worker in 0..workers {
                        let phase = phase.clone();
                        let address = server.address;
                        tasks.push(tokio::task::spawn_local(async move {
                            connect_until_done(address, worker as u64, &phase).await
                        }));
                    }
                }
            }
            tokio::time::sleep(warmup).await;
            let cpu = server.cpu_ns()?;
            let start = Instant::now();
            phase.set(Phase::Measure);
            tokio::time::sleep(window).await;
            phase.set(Phase::Done);
            let elapsed = start.elapsed();
            let cpu = server.cpu_ns()? - cpu;
            let mut latencies = Vec::new();
            for task in tasks {
                let done = tokio::time::timeout(LIMIT, task)
                    .await
                    .map_err(|_| io::Error::other("a connection hung"))?;
                latencies.extend(done.map_err(io::Error::other)??);
            }
            if latencies.is_empty() {
                return Err(io::Error::other(format!(
                    "{}: no message in the window",
                    point.name()
                )));
            }
            latencies.sort_unstable();
            let n = latencies.len();
            let bytes_per = match point {
                Point::Echo { size, .. } if size >= 64 * 1024 => (1 << 20) as f64 / size as f64,
                _ => 1.0,
            };
            Ok(Sample {
                per_sec: n as f64 / elapsed.as_secs_f64() / bytes_per,
                p50_us: latencies[n / 2] as f64 / 1000.0,
                p99_us: latencies[n * 99 / 100] as f64 / 1000.0,
                cpu_us: cpu as f64 / 1000.0 / n as f64,
            })
        })
        .await
}

/// One connection's closed loop until the window closes; the latencies (ns) inside it.
async fn echo_until_done(
    mut stream: TcpStream,
    size: usize,
    pattern: u64,
    phase: &Cell<Phase>,
) -> io::Result<Vec<u32>> {
    let mut message = Message::new(size, pattern);
    let mut latencies = Vec::new();
    loop {
        let measured = match phase.get() {
            Phase::Done => return Ok(latencies),
            p => p == Phase::Measure,
        };
        let start = Instant::now();
        message.round(&mut stream).await?;
        if measured && phase.get() == Phase::Measure {
            latencies.push(start.elapsed().as_nanos() as u32);
        }
    }
}

/// One worker's connect / echo / close loop until the window closes.
async fn connect_until_done(
    address: SocketAddr,
    worker: u64,
    phase: &Cell<Phase>,
) -> io::Result<Vec<u32>> {
    let mut message = Message::new(64, worker);
    let mut latencies = Vec::new();
    loop {
        let measured = match phase.get() {
            Phase::Done => return Ok(latencies),
            p => p == Phase::Measure,
        };
        let start = Instant::now();
        one_connection(address, &mut message).await?;
        if measured && phase.get() == Phase::Measure {
            latencies.push(start.elapsed().as_nanos() as u32);
        }
    }
}

/// One round on `stream`, or one whole connection if there is none (the connect point).
async fn step(
    stream: Option<&mut TcpStream>,
    address: SocketAddr,
    message: &mut Message,
) -> io::Result<()> {
    match stream {
        Some(stream) => message.round(stream).await,
        None => one_connection(address, message).await,
    }
}

/// Connect, echo one message, half-close, wait for the server to close.
async fn one_connection(address: SocketAddr, message: &mut Message) -> io::Result<()> {
    let mut stream = TcpStream::connect(address).await?;
    message.round(&mut stream).await?;
    stream.shutdown().await?;
    let mut rest = [0u8; 1];
    if stream.read(&mut rest).await? != 0 {
        return Err(io::Error::other("the server sent more than the echo"));
    }
    Ok(())
}

/// A message and the buffer its echo is read into; each round changes the first 8 bytes.
struct Message {
    out: Vec<u8>,
    back: Vec<u8>,
    seq: u64,
}

impl Message {
    fn new(size: usize, pattern: u64) -> Message {
        let out: Vec<u8> = (0..size as u64)
            .map(|i| (i * 31 + pattern * 7) as u8)
            .collect();
        Message {
            back: vec![0; size],
            out,
            seq: pattern << 32,
        }
    }

    /// Sends the message, reads the echo, checks every byte.
    async fn round(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        self.seq += 1;
        let n = self.out.len().min(8);
        self.out[..n].copy_from_slice(&self.seq.to_le_bytes()[..n]);
        let (mut reader, mut writer) = stream.split();
        // Written and read at once: a 64 KiB message need not fit the socket buffers.
        let (written, read) = tokio::join!(
            writer.write_all(&self.out),
            reader.read_exact(&mut self.back)
        );
        written?;
        read?;
        if self.back != self.out {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the echo differs from the message",
            ));
        }
        Ok(())
    }
}

async fn connect_all(address: SocketAddr, conns: usize) -> io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let stream = tokio::time::timeout(LIMIT, TcpStream::connect(address))
            .await
            .map_err(|_| io::Error::other("connect timed out"))??;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// Opens `conns` connections, echoes once on each, and returns the server's RSS growth per
/// connection, in bytes.
async fn idle_memory(server: &Server, conns: usize) -> io::Result<f64> {
    let before = server.rss_bytes()?;
    let mut streams = connect_all(server.address, conns).await?;
    let mut message = Message::new(64, 1);
    for stream in &mut streams {
        message.round(stream).await?;
    }
    let after = server.rss_bytes()?;
    drop(streams);
    Ok(after.saturating_sub(before) as f64 / conns as f64)
}

// ---------------------------------------------------------------------------------------------
// Callgrind mode: user-space instructions per message

fn instructions(quick: bool, filters: &[&str]) -> io::Result<()> {
    let scale = if quick { 1 } else { 4 };
    // (point, warm-up rounds per connection, measured rounds per connection)
    let points = [
        (
            Point::Echo {
                conns: 64,
                size: 64,
            },
            20,
            50 * scale,
        ),
        (
            Point::Echo {
                conns: 1000,
                size: 64,
            },
            3,
            5 * scale,
        ),
        (Point::Echo { conns: 1, size: 64 }, 200, 1000 * scale),
        (
            Point::Echo {
                conns: 1,
                size: 64 * 1024,
            },
            20,
            100 * scale,
        ),
        (Point::Connect { workers: 8 }, 20, 50 * scale),
    ];
    let rounds = if quick { 1 } else { 2 };
    let runtime = runtime()?;
    let out = std::env::temp_dir().join(format!("echo_load_callgrind.{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let servers: Vec<Server> = SERVERS
        .iter()
        .map(|name| Server::start(name, Some(&out)))
        .collect::<io::Result<_>>()?;
    let mut text = format!(
        "echo_load callgrind: user-space instructions of the server per message (connect: per \
         connection), {rounds} round(s); ratio = crate / native\n\n\
         | point | messages | echo_server | native_echo_server | ratio |\n|---|---|---|---|---|\n"
    );
    for (point, warmup, measured) in points.iter().filter(|(p, ..)| selected(p, filters)) {
        let mut per_message = [Vec::new(), Vec::new()];
        let mut messages = 0;
        for _ in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let (n, instructions) =
                    runtime.block_on(counted(server, *point, *warmup, *measured))?;
                messages = n;
                per_message[i].push(instructions as f64 / n as f64);
            }
        }
        let [ours, native] = per_message.map(|v| median(&v));
        let _ = writeln!(
            text,
            "| {} | {messages} | {ours:.0} | {native:.0} | {:.2} |",
            point.name(),
            ours / native
        );
    }
    for server in servers {
        server.stop()?;
    }
    // ECHO_LOAD_KEEP=1 keeps the dumps for `callgrind_annotate`.
    if std::env::var_os("ECHO_LOAD_KEEP").is_some() {
        let _ = writeln!(text, "\ncallgrind dumps kept in {}", out.display());
    } else {
        let _ = std::fs::remove_dir_all(&out);
    }
    print!("{text}");
    Ok(())
}

/// One counted window: every connection (or worker) does `warmup` rounds, the counters are
/// zeroed, every connection does `measured` rounds, the counters are dumped. Returns the
/// messages (connections) of the window and the instructions the server spent on them.
async fn counted(
    server: &Server,
    point: Point,
    warmup: usize,
    measured: usize,
) -> io::Result<(usize, u64)> {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let (conns, size, streams) = match point {
                Point::Echo { conns, size } => {
                    (conns, size, connect_all(server.address, conns).await?)
                }
                Point::Connect { workers } => (workers, 64, Vec::new()),
            };
            let barrier = Rc::new(Barrier::new(conns + 1));
            let mut tasks = Vec::new();
            let mut streams = streams.into_iter();
            for id in 0..conns {
                let barrier = barrier.clone();
                let stream = streams.next();
                let address = server.address;
                tasks.push(tokio::task::spawn_local(async move {
                    let mut message = Message::new(size, id as u64);
                    let mut stream = stream;
                    for _ in 0..warmup {
                        step(stream.as_mut(), address, &mut message).await?;
                    }
                    barrier.wait().await; // ready
                    barrier.wait().await; // counters zeroed
                    for _ in 0..measured {
                        step(stream.as_mut(), address, &mut message).await?;
                    }
                    barrier.wait().await; // done
                    io::Result::Ok(())
                }));
            }
            let wait = |what: &'static str| {
                let barrier = barrier.clone();
                async move {
                    tokio::time::timeout(LIMIT * 5, barrier.wait())
                        .await
                        .map_err(|_| io::Error::other(format!("connections hung before {what}")))
                }
            };
            wait("zeroing").await?;
            server.callgrind("-z")?;
            wait("measuring").await?;
            wait("dumping").await?;
            let instructions = server.callgrind_dump()?;
            for task in tasks {
                task.await.map_err(io::Error::other)??;
            }
            Ok((conns * measured, instructions))
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// The servers

struct Server {
    name: &'static str,
    child: Child,
    pid: u32,
    address: SocketAddr,
    /// Where callgrind writes its dumps, when the server runs under it.
    callgrind_out: Option<PathBuf>,
}

impl Server {
    fn start(name: &'static str, callgrind: Option<&Path>) -> io::Result<Server> {
        let binary = example(name)?;
        let (mut command, callgrind_out) = match callgrind {
            None => (Command::new(&binary), None),
            Some(dir) => {
                let file = dir.join(format!("{name}.out"));
                let mut command = Command::new("valgrind");
                command.args([
                    "--tool=callgrind",
                    "--quiet",
                    &format!("--callgrind-out-file={}", file.display()),
                ]);
                command.arg(&binary);
                (command, Some(file))
            }
        };
        let mut child = command
            .arg("127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", binary.display()))
            })?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(LIMIT)
            .map_err(|_| io::Error::other(format!("{name} did not say where it listens")))?;
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{name}: unexpected first line {line:?}")))?;
        Ok(Server {
            name,
            pid: child.id(),
            child,
            address,
            callgrind_out,
        })
    }

    /// CPU time of all the server's threads so far, in ns.
    fn cpu_ns(&self) -> io::Result<u64> {
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid))? {
            let schedstat = std::fs::read_to_string(task?.path().join("schedstat"))?;
            total += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .ok_or_else(|| io::Error::other("unreadable schedstat"))?;
        }
        Ok(total)
    }

    fn rss_bytes(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other("no VmRSS"))
    }

    fn callgrind(&self, what: &str) -> io::Result<()> {
        run(Command::new("callgrind_control")
            .arg(what)
            .arg(self.pid.to_string())
            .stdout(Stdio::null()))
    }

    /// Dumps the counters and returns the instructions since the last zeroing.
    fn callgrind_dump(&self) -> io::Result<u64> {
        let file = self.callgrind_out.as_ref().expect("under callgrind");
        let dir = file.parent().expect("a directory");
        let prefix = file
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let dumps = |dir: &Path| -> io::Result<Vec<PathBuf>> {
            Ok(std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .collect())
        };
        let old = dumps(dir)?;
        self.callgrind("-d")?;
        let new: Vec<PathBuf> = dumps(dir)?
            .into_iter()
            .filter(|p| !old.contains(p))
            .collect();
        let [dump] = new.as_slice() else {
            return Err(io::Error::other(format!(
                "{}: expected one new callgrind dump, found {new:?}",
                self.name
            )));
        };
        let text = std::fs::read_to_string(dump)?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|n| n.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no totals in {}", dump.display())))
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    fn stop(mut self) -> io::Result<()> {
        run(Command::new("kill").args(["-TERM", &self.pid.to_string()]))?;
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!(
                        "{} exited with {status}",
                        self.name
                    )))
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(io::Error::other(format!(
                    "{} did not exit on SIGTERM",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release build of example `name`, brought up to date first (`cargo bench` builds the
/// bench, not the examples; a stale server would measure old code).
fn example(name: &str) -> io::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "--quiet", "--release", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR")))?;
    Ok(target.join("release/examples").join(name))
}

/// Pins every thread of process `pid` to `cpus` (a `taskset` list).
fn pin(pid: u32, cpus: &str) -> io::Result<()> {
    run(Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null()))
}

fn run(command: &mut Command) -> io::Result<()> {
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{command:?} failed: {status}")))
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

// ---------------------------------------------------------------------------------------------
// The table

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

struct Table {
    text: String,
}

impl Table {
    fn new(title: &str) -> Table {
        Table {
            text: format!(
                "{title}\n\n| point | rate crate | rate native | ratio | p50 µs crate / native | \
                 p99 µs crate / native | CPU µs/msg crate | CPU µs/msg native | ratio |\n\
                 |---|---|---|---|---|---|---|---|---|\n"
            ),
        }
    }

    fn point(&mut self, point: &Point, samples: &[Vec<Sample>; 2]) {
        let field =
            |i: usize, f: fn(&Sample) -> f64| median(&samples[i].iter().map(f).collect::<Vec<_>>());
        let unit = match point {
            Point::Echo { size, .. } if *size >= 64 * 1024 => "MiB/s",
            Point::Echo { .. } => "msg/s",
            Point::Connect { .. } => "conn/s",
        };
        let rate = [field(0, |s| s.per_sec), field(1, |s| s.per_sec)];
        let cpu = [field(0, |s| s.cpu_us), field(1, |s| s.cpu_us)];
        let _ = writeln!(
            self.text,
            "| {}{} | {} {unit} | {} {unit} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} | {:.2} | {:.2} |",
            point.name(),
            if point.pinned() { " (1 CPU)" } else { "" },
            human(rate[0]),
            human(rate[1]),
            rate[0] / rate[1],
            field(0, |s| s.p50_us),
            field(1, |s| s.p50_us),
            field(0, |s| s.p99_us),
            field(1, |s| s.p99_us),
            cpu[0],
            cpu[1],
            cpu[0] / cpu[1],
        );
    }

    fn idle(&mut self, conns: usize, ours: f64, native: f64) {
        let _ = writeln!(
            self.text,
            "\nRSS per idle connection ({conns} open, one echo each): crate {ours:.0} B, native \
             {native:.0} B, ratio {:.2}",
            ours / native
        );
    }
}

fn human(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1}k", value / 1000.0)
    } else {
        format!("{value:.0}")
    }
}
