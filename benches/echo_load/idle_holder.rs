//! Silent connections held open by a child process: this bench binary run again as
//! `hold-idle PID ADDR N`. Each server of the idle-channel points gets N of them, all servers
//! at once, and the hard limit on open files (20,000 on the build VM, which no process here
//! may raise) would not let one process hold them all.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{open_fds, raise_open_files, Server};
use crate::LIMIT;

/// The first argument that makes this binary a holder.
pub(crate) const COMMAND: &str = "hold-idle";

/// N connections to one server, accepted by it and never written to; closed on drop.
pub(crate) struct IdleConnections {
    child: Child,
}

impl IdleConnections {
    /// Opens `conns` connections to `server` and returns once the server has accepted them
    /// all.
    pub(crate) fn open(server: &Server, conns: usize) -> io::Result<IdleConnections> {
        // The running binary itself, even if a build has replaced the file since.
        let mut child = Command::new("/proc/self/exe")
            .args([
                COMMAND,
                &server.pid.to_string(),
                &server.address.to_string(),
                &conns.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        // The holder bounds each of its waits; if it fails, it says why on stderr and exits.
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line)?;
        if line.trim() != "held" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "{}: the holder of {conns} idle connections failed",
                server.name
            )));
        }
        Ok(IdleConnections { child })
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // end of file: the holder closes its connections
        let _ = self.child.wait();
    }
}

/// The holder's life: `PID ADDR N` as arguments; connect, say `held`, wait for the end of
/// stdin.
pub(crate) fn main(args: &[String]) -> io::Result<()> {
    let usage = || io::Error::other(format!("usage: {COMMAND} PID ADDR N"));
    let [pid, address, conns] = args else {
        return Err(usage());
    };
    let pid: u32 = pid.parse().map_err(|_| usage())?;
    let address: SocketAddr = address.parse().map_err(|_| usage())?;
    let conns: usize = conns.parse().map_err(|_| usage())?;
    raise_open_files(conns as u64 + 64)?;
    let streams = hold(pid, address, conns)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "held")?;
    stdout.flush()?;
    io::stdin().read_to_end(&mut Vec::new())?;
    drop(streams);
    Ok(())
}

/// Connects `conns` times to `address` (blocking sockets, which nothing polls) and returns
/// once process `pid` has accepted them all: its open descriptors grew by as many. Connects in
/// batches well under the backlog and waits for each batch to be accepted, so that no SYN is
/// dropped (a dropped SYN comes back a second later).
fn hold(pid: u32, address: SocketAddr, conns: usize) -> io::Result<Vec<TcpStream>> {
    const BATCH: usize = 256;
    let base = settled_fds(pid)?;
    let mut streams = Vec::with_capacity(conns);
    while streams.len() < conns {
        for _ in 0..BATCH.min(conns - streams.len()) {
            streams.push(TcpStream::connect_timeout(&address, LIMIT)?);
        }
        // A slow server (Python under valgrind) takes minutes for a batch: what is bounded is
        // the time without progress.
        let mut deadline = Instant::now() + LIMIT;
        let mut accepted = 0;
        // Listing 10,000 descriptors takes a few ms: look again soon, then less often.
        let mut pause = Duration::from_millis(2);
        loop {
            let now = open_fds(pid)?.saturating_sub(base);
            if now >= streams.len() {
                break;
            }
            if now > accepted {
                accepted = now;
                deadline = Instant::now() + LIMIT;
            } else if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "the server at {address} accepted {now} of {} idle connections",
                    streams.len()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
    Ok(streams)
}

/// Process `pid`'s open descriptors once the count stays the same for 200 ms (connections of
/// an earlier point may still be closing).
fn settled_fds(pid: u32) -> io::Result<usize> {
    let deadline = Instant::now() + LIMIT;
    let mut last = open_fds(pid)?;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = open_fds(pid)?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}
