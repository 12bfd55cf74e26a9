//! The idle-channel points (`idle10k`): what a server pays per message for connections that
//! do nothing.
//!
//! One active connection (C=1, 64 B messages; server and generator pinned to CPU 0, and in
//! callgrind mode the generator's pause after each echo, as for the main table's C=1 points)
//! is measured twice on each server: alone, then while the server also holds N silent
//! connections (10,000; 1000 with `quick`; or `ECHO_LOAD_IDLE`), accepted and never written to.
//! The servers:
//!
//! - `echo_server`: its dispatchers declare `InterestScope::Own`, so the map asks a channel's
//!   `readable()` and `writable()` only after that channel's own callbacks;
//! - `echo_server --interest-scope shared`: asyncore's rule and the crate's default; after
//!   every batch of callbacks the map asks every `Shared` channel again, O(N) per message here;
//! - `native_echo_server`;
//! - Python's asyncore echo server (`asyncore_echo_server.py`, `loop(use_poll=True)`), which
//!   asks every channel and registers every descriptor before every `poll`: in the wall-clock
//!   mode whenever a Python with asyncore is found, in callgrind mode only with `python`.
//!
//! Each server starts once and keeps its idle connections through all rounds; the rounds are
//! interleaved across servers as in the main tables. A child process holds each server's idle
//! connections (`idle_holder`); the bench raises its open-file limit to N + 1024 if need be,
//! for the servers, which inherit it. In
//! callgrind mode the servers run uninstrumented (several times faster) while they accept the
//! idle connections: accepting N connections costs a `Shared` map or Python O(N²) in all.
//!
//! Work a server does by the clock rather than per message (the crate's once-a-second audit
//! of its `Own` channels, O(N)) lands in a callgrind window in proportion to its length, and
//! valgrind's slowdown makes the window some 50 times longer than the same messages take
//! natively. So the callgrind table also gives each server's background rate (instructions
//! per second while all N connections are silent, over a 30 s window) and the per-message
//! figure less that rate times the window. The audit comes in ticks, one a second, so the
//! window of `echo_server` with N idle is made long (16,000 messages) to hold many of them.

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use crate::generator::{background, counted, timed, Sample};
use crate::idle_holder::IdleConnections;
use crate::server::{
    python, raise_open_files, Callgrind, Server, Spec, ECHO, ECHO_SHARED, NATIVE, PYTHON,
};
use crate::table::median;
use crate::{pin_all, rounds, runtime, Point, C1_CALLGRIND_ROUNDS, PAUSE};

/// The active connection.
const POINT: Point = Point::Echo { conns: 1, size: 64 };

/// The silent connections per server: `ECHO_LOAD_IDLE`, else 10,000 (1000 with `quick`).
fn idle_count(quick: bool) -> usize {
    std::env::var("ECHO_LOAD_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1000 } else { 10_000 })
}

/// Starts `specs`, with an open-file limit that lets each accept `idle` connections.
fn start(specs: &[Spec], idle: usize, callgrind: Option<Callgrind>) -> io::Result<Vec<Server>> {
    raise_open_files(idle as u64 + 1024)?;
    specs
        .iter()
        .map(|spec| crate::server::start(spec, callgrind))
        .collect()
}

/// Wall-clock mode: msg/s and server CPU per message (schedstat), alone and with N idle.
pub(crate) fn wall_clock(quick: bool) -> io::Result<()> {
    let idle = idle_count(quick);
    let (rounds, warmup, window) = if quick {
        (1, Duration::from_millis(100), Duration::from_millis(300))
    } else {
        (
            rounds(5),
            Duration::from_millis(300),
            Duration::from_secs(1),
        )
    };
    let mut specs = vec![ECHO, ECHO_SHARED, NATIVE];
    if python().is_some() {
        specs.push(PYTHON);
    } else {
        eprintln!("echo_load: no Python with asyncore (ECHO_LOAD_PYTHON): its row is left out");
    }
    let runtime = runtime()?;
    let servers = start(&specs, idle, None)?;
    let mut samples: Vec<[Vec<Sample>; 2]> = specs.iter().map(|_| Default::default()).collect();
    let mut held = Vec::new();
    for crowded in [false, true] {
        let phase = usize::from(crowded);
        if crowded {
            for server in &servers {
                held.push(IdleConnections::open(server, idle)?);
            }
        }
        pin_all(&POINT, &servers, "0")?;
        for _ in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let sample = runtime.block_on(timed(server, POINT, warmup, window))?;
                samples[i][phase].push(sample);
            }
        }
        pin_all(&POINT, &servers, "0-1")?;
    }
    drop(held);
    for server in servers {
        server.stop()?;
    }
    let field = |s: &[Sample], f: fn(&Sample) -> f64| median(&s.iter().map(f).collect::<Vec<_>>());
    let mut text = format!(
        "\necho_load idle channels: C=1 64 B (1 CPU) alone and with {idle} idle connections \
         held open, {rounds} round(s), {window:?} window after {warmup:?} warm-up, medians; \
         ratio = with idle / alone\n\n\
         | server | msg/s alone | msg/s {idle} idle | CPU µs/msg alone | CPU µs/msg {idle} idle \
         | CPU ratio |\n|---|---|---|---|---|---|\n"
    );
    let mut cpu_idle = Vec::new();
    for (spec, [alone, crowded]) in specs.iter().zip(&samples) {
        let cpu = [field(alone, |s| s.cpu_us), field(crowded, |s| s.cpu_us)];
        cpu_idle.push(cpu[1]);
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |",
            spec.label,
            field(alone, |s| s.per_sec),
            field(crowded, |s| s.per_sec),
            cpu[0],
            cpu[1],
            cpu[1] / cpu[0],
        );
    }
    if specs.len() == 4 {
        let _ = writeln!(
            text,
            "\nWith {idle} idle: CPU per message, Python / echo_server --interest-scope shared \
             {:.1}, Python / echo_server {:.1}",
            cpu_idle[3] / cpu_idle[1],
            cpu_idle[3] / cpu_idle[0],
        );
    }
    print!("{text}");
    Ok(())
}

/// Callgrind mode: instructions per message, alone and with N idle.
pub(crate) fn instructions(quick: bool, paced: bool, with_python: bool) -> io::Result<()> {
    let idle = idle_count(quick);
    let (warm_up, measured) = C1_CALLGRIND_ROUNDS;
    let measured = measured * if quick { 1 } else { 4 };
    let rounds = if quick { 1 } else { 2 };
    let mut specs = vec![ECHO, ECHO_SHARED, NATIVE];
    if with_python {
        specs.push(PYTHON);
    }
    // With N idle: fewer messages where each costs O(N) (the figure is a mean over identical
    // messages), more where the background is a large share, so that the window holds many
    // audit ticks and the error of one tick more or less is small.
    let scale = |spec: &Spec, crowded: bool| -> f64 {
        match (spec.slug, crowded) {
            (_, false) => 1.0,
            ("echo_server_shared", true) => 0.25,
            ("python_asyncore", true) => 0.01,
            _ => 4.0,
        }
    };
    let runtime = runtime()?;
    let out = std::env::temp_dir().join(format!("echo_load_idle.{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let callgrind = Callgrind {
        dir: &out,
        counting: false,
    };
    let servers = start(&specs, idle, Some(callgrind))?;
    for server in &servers {
        server.instrument(true)?;
    }
    let pause = paced.then_some(PAUSE);
    let mut per_message: Vec<[Vec<f64>; 2]> = specs.iter().map(|_| Default::default()).collect();
    let mut messages: Vec<[usize; 2]> = vec![[0; 2]; specs.len()];
    // With N idle: instructions per second of silence, and the per-message figure less it.
    let mut background_rate = vec![0.0; specs.len()];
    let mut net: Vec<Vec<f64>> = specs.iter().map(|_| Vec::new()).collect();
    let mut held = Vec::new();
    for crowded in [false, true] {
        let phase = usize::from(crowded);
        if crowded {
            for server in &servers {
                server.instrument(false)?;
                held.push(IdleConnections::open(server, idle)?);
                server.instrument(true)?;
            }
            let window = Duration::from_secs(if quick { 3 } else { 30 });
            for (i, server) in servers.iter().enumerate() {
                background_rate[i] = background(server, window)?;
            }
        }
        pin_all(&POINT, &servers, "0")?;
        for _ in 0..rounds {
            for (i, (server, spec)) in servers.iter().zip(&specs).enumerate() {
                let factor = scale(spec, crowded);
                let warm_up = ((warm_up as f64 * factor.min(1.0)) as usize).max(2);
                let measured = ((measured as f64 * factor) as usize).max(2);
                let (n, instructions, window) =
                    runtime.block_on(counted(server, POINT, warm_up, measured, pause))?;
                messages[i][phase] = n;
                per_message[i][phase].push(instructions as f64 / n as f64);
                if crowded {
                    let clock = background_rate[i] * window.as_secs_f64();
                    net[i].push((instructions as f64 - clock) / n as f64);
                }
            }
        }
        pin_all(&POINT, &servers, "0-1")?;
    }
    drop(held);
    for server in servers {
        server.stop()?;
    }
    let pace = if paced {
        format!("a {PAUSE:?} pause after each echo")
    } else {
        "no pause".to_string()
    };
    let mut text = format!(
        "\necho_load callgrind, idle channels: user-space instructions of the server per message \
         of one connection (C=1 64 B, 1 CPU, {pace}), alone and with {idle} idle connections \
         held open, {rounds} round(s), medians; ratio = with idle / alone; background = \
         instructions per second with all {idle} silent; net = per message less background × \
         window\n\n\
         | server | messages | alone | messages | {idle} idle | ratio | background /s | net \
         | net ratio |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for (i, spec) in specs.iter().enumerate() {
        let [alone, crowded] = &per_message[i];
        let [n_alone, n_crowded] = messages[i];
        let (alone, crowded, net) = (median(alone), median(crowded), median(&net[i]));
        let _ = writeln!(
            text,
            "| {} | {n_alone} | {alone:.0} | {n_crowded} | {crowded:.0} | {:.2} | {:.0} | \
             {net:.0} | {:.2} |",
            spec.label,
            crowded / alone,
            background_rate[i],
            net / alone,
        );
    }
    if std::env::var_os("ECHO_LOAD_KEEP").is_some() {
        let _ = writeln!(text, "\ncallgrind dumps kept in {}", out.display());
    } else {
        let _ = std::fs::remove_dir_all(&out);
    }
    print!("{text}");
    Ok(())
}
