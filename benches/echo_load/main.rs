//! Load benchmark: the crate's `echo_server` against `native_echo_server` (plain Tokio, the same
//! current-thread set-up), side by side in one run, under the same load generator.
//!
//! ```text
//! cargo bench --bench echo_load                 # every point, 5 rounds (a few minutes)
//! cargo bench --bench echo_load -- quick        # 1 short round of each point (smoke run)
//! cargo bench --bench echo_load -- callgrind    # user-space instructions per message
//! cargo bench --bench echo_load -- c64 connect  # only the points whose names contain these
//! cargo bench --bench echo_load -- callgrind unpaced  # C=1 without the pause (see below)
//! cargo bench --bench echo_load -- callgrind idle10k  # only the idle-channel points
//! cargo bench --bench echo_load -- callgrind idle10k python  # ... with Python under callgrind
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
//! each, and reports the growth of the server's VmRSS per connection, for `echo_server` with
//! `InterestScope::Own` (its default) and `Shared` (`--interest-scope shared`) and the native
//! server.
//!
//! The idle-channel points (`idle10k`, module `idle_channels`) measure what a server pays per
//! message for channels that do nothing: C=1 64 B alone, then with 10,000 silent connections
//! held open, on `echo_server` (`Own`), `echo_server --interest-scope shared`, the native
//! server and (wall clock; callgrind with `python`) Python's asyncore echo server.
//!
//! The callgrind mode runs both servers under `valgrind --tool=callgrind`, zeroes the counters
//! (`callgrind_control -z`) when the window opens, dumps them (`-d`) when it closes, and divides
//! the instructions by the messages (or connections) of the window: a figure that does not
//! drift with whatever else the machine is doing.
//!
//! At C=1 the callgrind generator pauses 1 ms after each echo, so that the server has finished
//! with one message and waits in `epoll_wait` before the next arrives: one wake-up per
//! message, as in the wall-clock mode, where server and generator share CPU 0 and take turns.
//! Without the pause (`unpaced`) valgrind's 50-fold slowdown lets the generator, running at
//! full speed, queue the next message while the server is still busy with the last; whether a
//! server then skips its wait depends on the size of its reads, and the native figure for
//! 64 KiB moves between about 1000 and 1800 instructions from run to run.

#[path = "../support/child.rs"]
mod child;
mod generator;
mod idle_channels;
mod idle_holder;
mod server;
mod table;

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use generator::{counted, idle_memory, timed, Sample};
use server::{pin, Callgrind, Server, Spec, ECHO, ECHO_SHARED, NATIVE};
use table::{median, Table};

/// The servers of the main tables: the crate's, then the native baseline.
const SERVERS: [Spec; 2] = [ECHO, NATIVE];
/// Every wait on a child process or a connection is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some(idle_holder::COMMAND) {
        if let Err(e) = idle_holder::main(&args[1..]) {
            eprintln!("echo_load {}: {e}", idle_holder::COMMAND);
            std::process::exit(1);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "quick") || std::env::var_os("ECHO_LOAD_QUICK").is_some();
    let callgrind = args.iter().any(|a| a == "callgrind");
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !matches!(*a, "quick" | "callgrind" | "unpaced" | "python"))
        .collect();
    let result = if callgrind {
        let paced = !args.iter().any(|a| a == "unpaced");
        let python = args.iter().any(|a| a == "python");
        instructions(quick, paced, &filters).and_then(|()| {
            if wanted("idle10k", &filters) {
                idle_channels::instructions(quick, paced, python)
            } else {
                Ok(())
            }
        })
    } else {
        load(quick, &filters).and_then(|()| {
            if wanted("idle10k", &filters) {
                idle_channels::wall_clock(quick)
            } else {
                Ok(())
            }
        })
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

/// Whether a section that is not a point of the main table (`idle`, `idle10k`) runs: with no
/// filter, or when named exactly.
fn wanted(section: &str, filters: &[&str]) -> bool {
    filters.is_empty() || filters.contains(&section)
}

// ---------------------------------------------------------------------------------------------
// Wall-clock mode: throughput, latency, CPU per message, memory per idle connection

fn load(quick: bool, filters: &[&str]) -> io::Result<()> {
    let (rounds, warmup, window) = if quick {
        (1, Duration::from_millis(100), Duration::from_millis(300))
    } else {
        (
            rounds(5),
            Duration::from_millis(300),
            Duration::from_secs(1),
        )
    };
    let mut points = Vec::new();
    for conns in [1, 64, 1000] {
        for size in [64, 4096, 64 * 1024] {
            points.push(Point::Echo { conns, size });
        }
    }
    points.push(Point::Connect { workers: 8 });
    points.retain(|p| selected(p, filters));
    if points.is_empty() && !wanted("idle", filters) {
        return Ok(()); // only other sections were asked for
    }
    let runtime = runtime()?;
    let servers: Vec<Server> = SERVERS
        .iter()
        .map(|spec| server::start(spec, None))
        .collect::<io::Result<_>>()?;
    let mut table = Table::new(&format!(
        "echo_load: {rounds} round(s), {window:?} window after {warmup:?} warm-up, medians; \
         ratio = crate / native"
    ));
    for point in &points {
        pin_all(point, &servers, "0")?;
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let sample = runtime.block_on(timed(server, *point, warmup, window))?;
                samples[i].push(sample);
            }
        }
        pin_all(point, &servers, "0-1")?;
        table.point(point, &samples);
    }
    for server in servers {
        server.stop()?;
    }
    if wanted("idle", filters) {
        // RSS moves in pages and with the allocator's bins: many connections, fresh servers,
        // several rounds.
        let conns = if quick { 1000 } else { 4000 };
        let specs = [ECHO, ECHO_SHARED, NATIVE];
        let mut per_conn = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, spec) in specs.iter().enumerate() {
                let server = server::start(spec, None)?;
                let bytes = runtime.block_on(idle_memory(&server, conns))?;
                server.stop()?;
                per_conn[i].push(bytes);
            }
        }
        table.idle(conns, per_conn.map(|v| median(&v)));
    }
    print!("{}", table.text);
    Ok(())
}

/// `ECHO_LOAD_ROUNDS`, or `default`: more rounds give steadier medians on a noisy machine.
fn rounds(default: usize) -> usize {
    std::env::var("ECHO_LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Callgrind mode: user-space instructions per message

/// The callgrind generator's pause after each echo at C=1 (see the module docs).
const PAUSE: Duration = Duration::from_millis(1);

fn instructions(quick: bool, paced: bool, filters: &[&str]) -> io::Result<()> {
    let scale = if quick { 1 } else { 4 };
    // (point, warm-up rounds per connection, measured rounds per connection): every echo point
    // of the wall-clock table, with fewer rounds for 64 KiB messages (valgrind is slow).
    let mut points = Vec::new();
    let (c1_warm_up, c1_measured) = C1_CALLGRIND_ROUNDS;
    for (conns, warm_up, measured) in [(1, c1_warm_up, c1_measured), (64, 20, 50), (1000, 3, 5)] {
        for size in [64, 4096, 64 * 1024] {
            let cut = if size == 64 * 1024 { 10 } else { 1 };
            points.push((
                Point::Echo { conns, size },
                (warm_up / cut).max(2),
                (measured * scale / cut).max(2),
            ));
        }
    }
    points.push((Point::Connect { workers: 8 }, 20, 50 * scale));
    points.retain(|(p, ..)| selected(p, filters));
    if points.is_empty() {
        return Ok(()); // only other sections were asked for
    }
    let rounds = if quick { 1 } else { 2 };
    let runtime = runtime()?;
    let out = std::env::temp_dir().join(format!("echo_load_callgrind.{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let servers: Vec<Server> = SERVERS
        .iter()
        .map(|spec| {
            let callgrind = Callgrind {
                dir: &out,
                counting: true,
            };
            server::start(spec, Some(callgrind))
        })
        .collect::<io::Result<_>>()?;
    let pace = if paced {
        format!("a {PAUSE:?} pause after each echo")
    } else {
        "no pause".to_string()
    };
    let mut text = format!(
        "echo_load callgrind: user-space instructions of the server per message (connect: per \
         connection), {rounds} round(s), C=1 with {pace}; ratio = crate / native\n\n\
         | point | messages | echo_server | native_echo_server | ratio |\n|---|---|---|---|---|\n"
    );
    for (point, warmup, measured) in &points {
        pin_all(point, &servers, "0")?;
        let pause = (paced && point.pinned()).then_some(PAUSE);
        let mut per_message = [Vec::new(), Vec::new()];
        let mut messages = 0;
        for _ in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let (n, instructions, _) =
                    runtime.block_on(counted(server, *point, *warmup, *measured, pause))?;
                messages = n;
                per_message[i].push(instructions as f64 / n as f64);
            }
        }
        pin_all(point, &servers, "0-1")?;
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

/// The callgrind mode's C=1 64 B point: warm-up and measured rounds of its one connection.
const C1_CALLGRIND_ROUNDS: (usize, usize) = (200, 1000);

/// Pins this process and the servers to `cpus` for a point that runs on one CPU (C = 1);
/// nothing for the others.
fn pin_all(point: &Point, servers: &[Server], cpus: &str) -> io::Result<()> {
    if point.pinned() {
        pin(std::process::id(), cpus)?;
        for server in servers {
            pin(server.pid, cpus)?;
        }
    }
    Ok(())
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
