//! The servers under test: child processes (perhaps under callgrind), their CPU time and memory
//! from `/proc`, and the commands around them.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use crate::LIMIT;

// ---------------------------------------------------------------------------------------------
// What runs

/// A server under test: its program, its arguments, and how the tables name it.
#[derive(Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) label: &'static str,
    /// `label` as a file name (callgrind dumps).
    pub(crate) slug: &'static str,
    pub(crate) program: Program,
    /// Arguments before the address.
    pub(crate) args: &'static [&'static str],
}

#[derive(Clone, Copy)]
pub(crate) enum Program {
    /// The release build of an example of this crate.
    Example(&'static str),
    /// A script next to this file, run by the Python of [`python`].
    Python(&'static str),
}

/// The crate's `echo_server`: its dispatchers declare `InterestScope::Own`.
pub(crate) const ECHO: Spec = Spec {
    label: "echo_server",
    slug: "echo_server",
    program: Program::Example("echo_server"),
    args: &[],
};

/// The same server with asyncore's rule (`InterestScope::Shared`, the crate's default).
pub(crate) const ECHO_SHARED: Spec = Spec {
    label: "echo_server --interest-scope shared",
    slug: "echo_server_shared",
    program: Program::Example("echo_server"),
    args: &["--interest-scope", "shared"],
};

pub(crate) const NATIVE: Spec = Spec {
    label: "native_echo_server",
    slug: "native_echo_server",
    program: Program::Example("native_echo_server"),
    args: &[],
};

/// The echo server of Python's asyncore documentation, on `poll(2)`.
pub(crate) const PYTHON: Spec = Spec {
    label: "Python asyncore (use_poll=True)",
    slug: "python_asyncore",
    program: Program::Python("asyncore_echo_server.py"),
    args: &[],
};

/// A Python that still ships asyncore (3.11 or older): `ECHO_LOAD_PYTHON`, else `python3.11`,
/// resolved to its executable (no launcher script between the bench and the process it
/// measures). `None` without one.
pub(crate) fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let python = std::env::var("ECHO_LOAD_PYTHON").unwrap_or_else(|_| "python3.11".into());
            let output = Command::new(python)
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import sys, asyncore; print(sys.executable)",
                ])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())?;
            let path = String::from_utf8(output.stdout).ok()?;
            Some(PathBuf::from(path.trim()))
        })
        .as_deref()
}

/// How a server runs under valgrind.
#[derive(Clone, Copy)]
pub(crate) struct Callgrind<'a> {
    /// Where the dumps go.
    pub(crate) dir: &'a Path,
    /// Whether callgrind counts from the start; if not, it runs uninstrumented (several times
    /// faster) until [`Server::instrument`] turns counting on.
    pub(crate) counting: bool,
}

// ---------------------------------------------------------------------------------------------
// The servers

pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) address: SocketAddr,
    /// Where callgrind writes its dumps, when the server runs under it.
    pub(crate) callgrind_out: Option<PathBuf>,
}

impl Server {
    pub(crate) fn start(spec: &Spec, callgrind: Option<Callgrind>) -> io::Result<Server> {
        let name = spec.label;
        let (binary, script) = match spec.program {
            Program::Example(example_name) => (example(example_name)?, None),
            Program::Python(script) => {
                let python = python().ok_or_else(|| {
                    io::Error::other("no Python with asyncore (set ECHO_LOAD_PYTHON)")
                })?;
                let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("benches/echo_load")
                    .join(script);
                (python.to_path_buf(), Some(script))
            }
        };
        let (mut command, callgrind_out) = match callgrind {
            None => (Command::new(&binary), None),
            Some(Callgrind { dir, counting }) => {
                let file = dir.join(format!("{}.out", spec.slug));
                let mut command = Command::new("valgrind");
                command.args([
                    "--tool=callgrind",
                    "--quiet",
                    &format!("--instr-atstart={}", if counting { "yes" } else { "no" }),
                    &format!("--callgrind-out-file={}", file.display()),
                ]);
                command.arg(&binary);
                (command, Some(file))
            }
        };
        let mut child = command
            .args(script)
            .args(spec.args)
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
    pub(crate) fn cpu_ns(&self) -> io::Result<u64> {
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

/// How many file descriptors process `pid` has open.
pub(crate) fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Raises this process's limit on open files to at least `needed` (children inherit it): the
/// soft limit up to the hard one, and the hard one too if need be (which takes root or
/// `CAP_SYS_RESOURCE`; otherwise the error says what to raise).
pub(crate) fn raise_open_files(needed: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    let wanted = libc::rlimit {
        rlim_cur: needed,
        rlim_max: limit.rlim_max.max(needed),
    };
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::other(format!(
            "cannot raise the open-file limit from {} (hard {}) to {needed}: {e}; run \
             `ulimit -n {needed}` as root first",
            limit.rlim_cur, limit.rlim_max
        )));
    }
    Ok(())
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
fn run_quietly(command: &mut Command) -> io::Result<()> {
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

fn run(command: &mut Command) -> io::Result<()> {
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{command:?} failed: {status}")))
    }
}
