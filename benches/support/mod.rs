//! What the benches share: their arguments and environment, building an example, starting it
//! as a server and reading its address, its peak memory, a bounded graceful stop, the limit on
//! open files, loopback connections that leave no `TIME_WAIT` behind, medians.

#![allow(dead_code)] // each bench uses part of it

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Builds example `name` in release mode (a no-op when it is up to date) and returns its path,
/// so that a bench never measures a stale binary.
pub fn example(name: &str) -> io::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("cannot build example {name}")));
    }
    Ok(target.join("release/examples").join(name))
}

/// The bench's arguments after `--` (without the `--bench` that cargo adds).
pub fn args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}

/// Environment variable `name` as a number, or `default` when it is unset or not one.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `values` (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// An example server as a child process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub address: SocketAddr,
}

impl Server {
    /// Starts `binary` on `127.0.0.1:0` with `args` and reads its `listening on` line.
    pub fn start(binary: &Path, args: &[&str]) -> io::Result<Server> {
        let mut child = Command::new(binary)
            .arg("127.0.0.1:0")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected first line {line:?}")))?;
        Ok(Server { child, address })
    }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other("no VmHWM"))
    }

    /// SIGTERM, then waits (at most 30 s, then kills) while the caller's runtime keeps its
    /// clients reading, so that a graceful shutdown can drain.
    pub async fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `address` (retrying for a while: a full accept queue drops SYNs). The
/// connection is closed with a reset: thousands of connections a round would otherwise leave
/// as many ports in `TIME_WAIT`, and a few rounds use up the ephemeral range.
pub async fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    for _ in 0..50 {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                asyncore::socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
                return Ok(stream);
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Err(io::Error::other(format!("cannot connect to {address}")))
}

/// Raises this process's `RLIMIT_NOFILE` to its hard limit (the servers it starts inherit it).
pub fn raise_fd_limit() -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
