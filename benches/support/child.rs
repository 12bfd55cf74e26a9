//! A server under test as a child process, for the benches that start one: started (under
//! callgrind if asked), its `listening on IP:PORT` line read, its CPU time and memory read from
//! `/proc`, callgrind's counters zeroed, switched and dumped, its threads pinned, and a clean
//! stop.

#![allow(dead_code)] // each bench uses part of it

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to say where it listens, and to exit on SIGTERM.
const LIMIT: Duration = Duration::from_secs(60);

/// Running a server under `valgrind --tool=callgrind`.
#[derive(Clone, Copy)]
pub(crate) struct Callgrind<'a> {
    /// Where the dumps go.
    pub(crate) dir: &'a Path,
    /// Whether callgrind counts from the start; if not, it runs uninstrumented (several times
    /// faster) until [`Server::instrument`] turns counting on.
    pub(crate) counting: bool,
}

pub(crate) struct Server {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) address: SocketAddr,
    /// Where callgrind writes its dumps, when the server runs under it.
    callgrind_out: Option<PathBuf>,
}

impl Server {
    /// Starts `program` with `args` (under callgrind with `callgrind`, its dumps named after
    /// `slug`) and reads its `listening on IP:PORT` line; `name` is how errors name it.
    pub(crate) fn start(
        name: &str,
        slug: &str,
        program: &Path,
        args: &[&OsStr],
        callgrind: Option<Callgrind<'_>>,
    ) -> io::Result<Server> {
        let (mut command, callgrind_out) = match callgrind {
            None => (Command::new(program), None),
            Some(Callgrind { dir, counting }) => {
                let file = dir.join(format!("{slug}.out"));
                let mut command = Command::new("valgrind");
                command.args([
                    "--tool=callgrind",
                    "--quiet",
                    &format!("--instr-atstart={}", if counting { "yes" } else { "no" }),
                    &format!("--callgrind-out-file={}", file.display()),
                ]);
                command.arg(program);
                (command, Some(file))
            }
        };
        let mut child = command
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display()))
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
            name: name.to_string(),
            pid: child.id(),
            child,
            address,
            callgrind_out,
        })
    }

    /// CPU time of all the server's threads so far, in ns.
    pub(crate) fn cpu_ns(&self) -> io::Result<u64> {
        cpu_ns(self.pid)
    }

    pub(crate) fn rss_bytes(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other("no VmRSS"))
    }

    pub(crate) fn callgrind(&self, what: &str) -> io::Result<()> {
        run_quietly(
            Command::new("callgrind_control")
                .arg(what)
                .arg(self.pid.to_string()),
        )
    }

    /// Turns callgrind's counting on or off (a server started with `counting: false`).
    pub(crate) fn instrument(&self, on: bool) -> io::Result<()> {
        run_quietly(
            Command::new("callgrind_control")
                .args(["-i", if on { "on" } else { "off" }])
                .arg(self.pid.to_string()),
        )
    }

    /// Dumps the counters and returns the instructions since the last zeroing.
    pub(crate) fn callgrind_dump(&self) -> io::Result<u64> {
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
    pub(crate) fn stop(mut self) -> io::Result<()> {
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
pub(crate) fn example(name: &str) -> io::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "--quiet", "--release", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR")))?;
    Ok(target.join("release/examples").join(name))
}

/// CPU time (user and system) of all the threads of process `pid` so far, in ns.
pub(crate) fn cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("unreadable schedstat"))?;
    }
    Ok(total)
}

/// Pins every thread of process `pid` to `cpus` (a `taskset` list). `taskset -a` lists the
/// threads, then sets each: a thread that ends in between (a server's stdout reader, a Tokio
/// blocking thread) fails it, so it is tried again.
pub(crate) fn pin(pid: u32, cpus: &str) -> io::Result<()> {
    let mut attempts = 0;
    loop {
        let result =
            run_quietly(Command::new("taskset").args(["-a", "-p", "-c", cpus, &pid.to_string()]));
        attempts += 1;
        if result.is_ok() || attempts == 5 {
            return result;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`run`], its output ("sending command ... to pid ...") shown only if it fails.
pub(crate) fn run_quietly(command: &mut Command) -> io::Result<()> {
    let output = command.output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{command:?} failed: {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

pub(crate) fn run(command: &mut Command) -> io::Result<()> {
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{command:?} failed: {status}")))
    }
}
