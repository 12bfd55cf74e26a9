//! The load generator: closed-loop connections that check every echoed byte, in timed windows
//! (wall-clock mode) or counted ones (callgrind mode).

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use crate::server::Server;
use crate::{Point, LIMIT};

/// What one round of one point measured.
#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) cpu_us: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Warmup,
    Measure,
    Done,
}

pub(crate) async fn timed(
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
    until_done(phase, async || message.round(&mut stream).await).await
}

/// One worker's connect / echo / close loop until the window closes.
async fn connect_until_done(
    address: SocketAddr,
    worker: u64,
    phase: &Cell<Phase>,
) -> io::Result<Vec<u32>> {
    let mut message = Message::new(64, worker);
    until_done(phase, async || one_connection(address, &mut message).await).await
}

/// Repeats `round` until the window closes; the latencies (ns) of the rounds that ran entirely
/// inside the measured part.
async fn until_done(
    phase: &Cell<Phase>,
    mut round: impl AsyncFnMut() -> io::Result<()>,
) -> io::Result<Vec<u32>> {
    let mut latencies = Vec::new();
    loop {
        let measured = match phase.get() {
            Phase::Done => return Ok(latencies),
            p => p == Phase::Measure,
        };
        let start = Instant::now();
        round().await?;
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
pub(crate) async fn idle_memory(server: &Server, conns: usize) -> io::Result<f64> {
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

/// The instructions per second `server` spends while no connection sends anything: callgrind
/// counters zeroed, `window` of silence, counters dumped.
pub(crate) fn background(server: &Server, window: Duration) -> io::Result<f64> {
    server.callgrind("-z")?;
    let start = Instant::now();
    std::thread::sleep(window);
    let instructions = server.callgrind_dump()?;
    Ok(instructions as f64 / start.elapsed().as_secs_f64())
}

/// One counted window: every connection (or worker) does `warmup` rounds, the counters are
/// zeroed, every connection does `measured` rounds (each followed by `pause`, if any), the
/// counters are dumped. Returns the messages (connections) of the window, the instructions
/// the server spent on them, and how long the window lasted.
pub(crate) async fn counted(
    server: &Server,
    point: Point,
    warmup: usize,
    measured: usize,
    pause: Option<Duration>,
) -> io::Result<(usize, u64, Duration)> {
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
                        if let Some(pause) = pause {
                            tokio::time::sleep(pause).await;
                        }
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
            let start = Instant::now();
            wait("measuring").await?;
            wait("dumping").await?;
            let instructions = server.callgrind_dump()?;
            let window = start.elapsed();
            for task in tasks {
                task.await.map_err(io::Error::other)??;
            }
            Ok((conns * measured, instructions, window))
        })
        .await
}
