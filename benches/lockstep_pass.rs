//! One lock-step pass (`Map::poll(Duration::ZERO)`, asyncore's `poll(0)`) over a map of
//! 10,000 idle channels: every channel is asked `readable()`/`writable()`, every socket's
//! readiness is looked at, none fires. Target: ≤ 5 ms per pass.
//!
//! ```text
//! cargo bench --bench lockstep_pass            # 10,000 channels, 200 passes
//! cargo bench --bench lockstep_pass -- quick   # 1,000 channels, 20 passes
//! ```
//!
//! The channels are Unix stream connections that their listeners never accept: a connection
//! queued in a listener's backlog is connected and idle, and costs this process one
//! descriptor, not two, which matters under `ulimit -n` = 20000 (a socket pair per channel
//! would need 20,000). Each listener's backlog holds `somaxconn` (4096 here) connections, so a
//! few listeners carry them all.

use std::io;
use std::time::{Duration, Instant};

use asyncore::{Channel, Dispatcher, Map};

/// An idle connection: it would read, has nothing to write.
struct Idle;

impl Dispatcher for Idle {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
}

/// Connections per listener: below the usual `somaxconn` of 4096.
const PER_LISTENER: usize = 4000;

fn main() -> io::Result<()> {
    let quick = std::env::args().any(|a| a == "quick");
    let (channels, passes) = if quick { (1_000, 20) } else { (10_000, 200) };
    let dir = std::env::temp_dir().join(format!("lockstep_pass.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let map = Map::new();
        let mut listeners = Vec::new();
        for i in 0..channels {
            if i % PER_LISTENER == 0 {
                let path = dir.join(format!("listener{}", listeners.len()));
                let socket =
                    socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
                socket.bind(&socket2::SockAddr::unix(&path)?)?;
                socket.listen(PER_LISTENER as i32 + 16)?;
                listeners.push(socket);
            }
            let path = dir.join(format!("listener{}", listeners.len() - 1));
            let stream = std::os::unix::net::UnixStream::connect(&path)?;
            stream.set_nonblocking(true)?;
            map.add(
                Channel::from_unix(tokio::net::UnixStream::from_std(stream)?),
                Idle,
            )?;
        }
        // A first pass registers every socket with Tokio; then time the steady state.
        let first = map.poll(Duration::ZERO).await?;
        assert_eq!(first.wanted.len(), channels, "every channel asks to read");
        let mut times = Vec::with_capacity(passes);
        for _ in 0..passes {
            let start = Instant::now();
            let pass = map.poll(Duration::ZERO).await?;
            times.push(start.elapsed());
            if !pass.events.is_empty() {
                return Err(io::Error::other("an idle channel had an event"));
            }
        }
        times.sort();
        Ok(times)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let times = result?;
    let at = |q: usize| times[(times.len() - 1) * q / 100];
    println!(
        "lockstep_pass: {channels} idle channels, {passes} passes of Map::poll(Duration::ZERO): \
         min {:?}, median {:?}, p90 {:?}, max {:?} per pass (target ≤ 5 ms at 10,000)",
        at(0),
        at(50),
        at(90),
        at(100)
    );
    Ok(())
}
