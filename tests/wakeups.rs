//! Lost wake-ups under load: data (or room to write) that arrives while a channel is reading
//! (or writing) must wake the channel, also when Tokio's I/O driver runs on another thread
//! (a map on `block_on` of a multi-thread runtime) and records the event between the read and
//! the moment the channel concludes that the socket is drained. A lost event leaves a channel
//! asleep with data in its socket: the peer waits for an answer that never comes, so every wait
//! here is bounded and a missing answer fails with a message saying which one.
//!
//! Each test runs many rounds over several connections; every byte is checked.

mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use asyncore::{Address, Channel, Dispatcher, Family, Map};
use util::programs::{example, Program};
use util::{block_on, block_on_multi, Log, LIMIT};

/// How long a peer waits for a missing answer before it calls the answer lost. Half of LIMIT, so
/// that a lost wake-up is reported as such before the map's own bound (LIMIT) runs out.
const STALL: Duration = Duration::from_secs(LIMIT.as_secs() / 2);

// ---------------------------------------------------------------------------------------------
// examples/kv_server as a black box

/// Commands per burst, each sent in one write with the others.
const KV_PIPELINED: usize = 32;
const KV_CONNECTIONS: usize = 4;
const KV_ROUNDS: usize = 40;

/// 32 pipelined `SET` lines of about 8 KB each, in one write, get 32 `OK` lines, round after
/// round, on several connections at once.
#[test]
fn kv_server_answers_every_pipelined_set() {
    let mut command = Command::new(example("kv_server"));
    command.arg("127.0.0.1:0");
    let server = Program::start(command);
    let address = server.address;
    let clients: Vec<_> = (0..KV_CONNECTIONS)
        .map(|c| std::thread::spawn(move || kv_client(address, c)))
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .filter_map(|client| client.join().unwrap().err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{status:?} {stderr}");
}

/// One connection's rounds; `Err` names the first answer that did not come.
fn kv_client(address: SocketAddr, c: usize) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&address, LIMIT).unwrap();
    stream.set_read_timeout(Some(STALL)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for round in 0..KV_ROUNDS {
        let mut burst = Vec::new();
        for i in 0..KV_PIPELINED {
            let value_len = 8000 + (c * 131 + round * 17 + i * 37) % 400;
            write!(burst, "SET c{c}.k{i} ").unwrap();
            burst.extend((0..value_len).map(|n| b'a' + ((n + i + round) % 26) as u8));
            burst.push(b'\n');
        }
        writer.write_all(&burst).unwrap();
        for n in 0..KV_PIPELINED {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(_) if line == "OK\n" => {}
                Ok(_) => {
                    return Err(format!(
                        "connection {c}, round {round}: answer {n} of {KV_PIPELINED} is {line:?}, not \"OK\""
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "connection {c}, round {round}: answer {n} of {KV_PIPELINED} missing \
                         after {STALL:?} ({e}): the server was not woken for the rest of the burst"
                    ))
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A map serving a few connections, on its own thread

/// Which runtime hosts the map.
#[derive(Clone, Copy, Debug)]
enum Runtime {
    /// `block_on` of a multi-thread runtime: the I/O driver runs on the worker threads.
    MultiThread,
    /// A current-thread runtime: the map's thread polls the I/O driver itself.
    CurrentThread,
}

/// The send buffer of the served connections: small, so that their sends often come back short
/// while the peer is reading.
const SEND_BUFFER: usize = 64 * 1024;

/// Accepts `left` connections, each with a dispatcher from `make` and a send buffer of
/// `SEND_BUFFER`, then closes, so that the map empties once those connections have closed.
struct Acceptor<F> {
    left: usize,
    make: F,
    errors: Log,
}

impl<D: Dispatcher, F: FnMut() -> D + 'static> Dispatcher for Acceptor<F> {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        connection: Channel,
        _: Address,
    ) -> io::Result<()> {
        connection.socket()?.set_send_buffer_size(SEND_BUFFER)?;
        channel.map().unwrap().add(connection, (self.make)())?;
        self.left -= 1;
        if self.left == 0 {
            channel.close();
        }
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.errors.push(format!("acceptor: {error}"));
        channel.close();
    }
}

/// A map on its own thread, in `runtime`, that serves `connections` connections with
/// dispatchers from `make`.
struct Served {
    address: Address,
    /// The errors the dispatchers reported, once the map is empty.
    thread: JoinHandle<Vec<String>>,
}

fn serve<D, F>(family: Family, runtime: Runtime, connections: usize, make: F) -> Served
where
    D: Dispatcher,
    F: FnMut(Log) -> D + Send + 'static,
{
    let (found, address) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut make = make;
        let run = async move {
            let map = Map::new();
            let errors = Log::default();
            let (listener, address) = util::listener(family).unwrap();
            let log = errors.clone();
            let acceptor = Acceptor {
                left: connections,
                make: move || make(log.clone()),
                errors: errors.clone(),
            };
            map.add(listener, acceptor).unwrap();
            found.send(address).unwrap();
            map.run().await.unwrap();
            errors.entries()
        };
        match runtime {
            Runtime::MultiThread => block_on_multi(run),
            Runtime::CurrentThread => block_on(run),
        }
    });
    let address = address.recv_timeout(LIMIT).expect("the map thread started");
    Served { address, thread }
}

impl Served {
    /// Runs `peer` on `connections` connections at once, each on a thread of its own; then
    /// waits for the map to empty (the peers have closed their ends, so their channels close)
    /// and removes a Unix socket's file. Fails the test with what went wrong, the peers'
    /// reports first (a lost wake-up shows there), then the map's.
    fn run_peers<P>(self, connections: usize, peer: P)
    where
        P: Fn(&Address, usize) -> Result<(), String> + Send + Sync + 'static,
    {
        let peer = Arc::new(peer);
        let peers: Vec<_> = (0..connections)
            .map(|c| {
                let (address, peer) = (self.address.clone(), Arc::clone(&peer));
                std::thread::spawn(move || peer(&address, c))
            })
            .collect();
        let mut failures: Vec<String> = peers
            .into_iter()
            .filter_map(|peer| peer.join().expect("a peer thread").err())
            .collect();
        match self.thread.join() {
            Ok(errors) => failures.extend(errors),
            Err(_) => failures.push("the map thread panicked (see above)".into()),
        }
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// A blocking peer socket, TCP or Unix, with bounded reads and writes.
trait Peer: Read + Write + Send + 'static {
    /// Another handle on the same socket, for a second thread.
    fn half(&self) -> Box<dyn Peer>;
    /// Shuts both directions down, so that the other thread's wait ends at once.
    fn hang_up(&self);
}

impl Peer for TcpStream {
    fn half(&self) -> Box<dyn Peer> {
        Box::new(self.try_clone().unwrap())
    }
    fn hang_up(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Peer for UnixStream {
    fn half(&self) -> Box<dyn Peer> {
        Box::new(self.try_clone().unwrap())
    }
    fn hang_up(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

fn connect(address: &Address) -> Box<dyn Peer> {
    match address {
        Address::Inet(address) => {
            let stream = TcpStream::connect_timeout(address, LIMIT).unwrap();
            stream.set_read_timeout(Some(STALL)).unwrap();
            stream.set_write_timeout(Some(LIMIT)).unwrap();
            Box::new(stream)
        }
        Address::Unix(path) => {
            let stream = UnixStream::connect(path).unwrap();
            stream.set_read_timeout(Some(STALL)).unwrap();
            stream.set_write_timeout(Some(LIMIT)).unwrap();
            Box::new(stream)
        }
        Address::Unnamed => unreachable!("listeners have names"),
    }
}

/// The data of stream `seed` repeats with this period, a prime, so that it never lines up with
/// buffer, burst or chunk boundaries: a lost, repeated or reordered piece shows.
const PERIOD: usize = 1_000_003;
/// The longest piece of a stream compared or sent at once.
const MAX_PIECE: usize = 1024 * 1024;

/// One period of the data of stream `seed`, and `MAX_PIECE` more, so that any piece of at
/// most `MAX_PIECE` bytes is one slice (`Stream::at`).
struct Stream(Vec<u8>);

impl Stream {
    fn new(seed: usize) -> Stream {
        let byte = |i: usize| {
            let x = (i as u64).wrapping_add(seed as u64 * 0x9e37_79b9);
            (x ^ (x >> 7) ^ (x >> 13)).wrapping_mul(31) as u8
        };
        Stream((0..PERIOD + MAX_PIECE).map(|i| byte(i % PERIOD)).collect())
    }

    /// The `len` bytes of the stream from `offset` on.
    fn at(&self, offset: usize, len: usize) -> &[u8] {
        assert!(len <= MAX_PIECE);
        &self.0[offset % PERIOD..][..len]
    }

    /// Checks `got` against the stream from `offset` on; `Err` names the first wrong byte.
    fn check(&self, offset: usize, got: &[u8]) -> Result<(), String> {
        let want = self.at(offset, got.len());
        if got == want {
            return Ok(());
        }
        let at = (0..got.len()).find(|&i| got[i] != want[i]).unwrap();
        Err(format!("the data differs at byte {}", offset + at))
    }
}

/// Reads exactly `buf.len()` bytes; `Err` says how far it got and why it stopped.
fn read_fully(peer: &mut dyn Peer, buf: &mut [u8]) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        match peer.read(&mut buf[got..]) {
            Ok(0) => return Err(format!("end of file after {got} of {} bytes", buf.len())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "{} of {} bytes missing after waiting {STALL:?} ({e})",
                    buf.len() - got,
                    buf.len()
                ))
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Echo: bursts both ways

const ECHO_CONNECTIONS: usize = 3;
const ECHO_ROUNDS: usize = 150;
/// What the echo dispatcher asks for per read: its reads come back short whenever less is
/// waiting, and each short read clears the read readiness.
const ECHO_READ: usize = 64 * 1024;
/// The echo stops reading while this much is waiting to go back.
const ECHO_BACKLOG: usize = 1024 * 1024;

/// Echoes everything, with `Channel::send` (not `writev`), keeping what the socket did not
/// take.
struct Echo {
    pending: Vec<u8>,
    sent: usize,
    errors: Log,
}

impl Echo {
    fn new(errors: Log) -> Echo {
        Echo {
            pending: Vec::new(),
            sent: 0,
            errors,
        }
    }
    fn flush(&mut self, channel: &mut Channel) -> io::Result<()> {
        let n = channel.send(&self.pending[self.sent..])?;
        self.sent += n;
        if self.sent == self.pending.len() {
            self.pending.clear();
            self.sent = 0;
        }
        Ok(())
    }
}

impl Dispatcher for Echo {
    fn readable(&self, _: &Channel) -> bool {
        self.pending.len() - self.sent < ECHO_BACKLOG
    }
    fn writable(&self, _: &Channel) -> bool {
        self.sent < self.pending.len()
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(ECHO_READ)?;
        self.pending.extend_from_slice(&data);
        if self.writable(channel) {
            self.flush(channel)?;
        }
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.flush(channel)
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.errors.push(format!("echo: {error}"));
        channel.close();
    }
}

/// The sizes of the writes that make burst `round` of connection `c`: 1 to 4 writes of 1 byte
/// to 320 KiB, so that the writer often waits for room while the echo reads.
fn burst_pieces(c: usize, round: usize) -> Vec<usize> {
    let writes = 1 + (c * 7 + round * 5) % 4;
    (0..writes)
        .map(|w| 1 + (c * 977 + round * 7919 + w * 104_729) % (320 * 1024))
        .collect()
}

/// One peer connection: a writer thread sends each round's burst as several writes while this
/// thread reads the echo; the next burst starts once the whole echo of this one is back.
fn echo_peer(address: &Address, c: usize) -> Result<(), String> {
    let stream = Arc::new(Stream::new(c));
    let mut reader = connect(address);
    let mut writer = reader.half();
    let (echoed, next) = mpsc::channel::<()>();
    let data = Arc::clone(&stream);
    let sender = std::thread::spawn(move || {
        let mut offset = 0;
        for round in 0..ECHO_ROUNDS {
            for piece in burst_pieces(c, round) {
                if writer.write_all(data.at(offset, piece)).is_err() {
                    return;
                }
                offset += piece;
            }
            // The reader says when the echo is complete (or hangs up when it gave up).
            if next.recv().is_err() {
                return;
            }
        }
    });
    let mut offset = 0;
    let mut result = Ok(());
    for round in 0..ECHO_ROUNDS {
        let len: usize = burst_pieces(c, round).iter().sum();
        let mut got = vec![0; len];
        let echo = read_fully(&mut *reader, &mut got).and_then(|()| stream.check(offset, &got));
        if let Err(e) = echo {
            result = Err(format!("connection {c}, round {round}: echo: {e}"));
            // The writer may be waiting for room that the stalled echo never makes.
            reader.hang_up();
            break;
        }
        offset += len;
        let _ = echoed.send(());
    }
    drop(echoed);
    sender.join().unwrap();
    result
}

fn echo_bursts(family: Family, runtime: Runtime) {
    serve(family, runtime, ECHO_CONNECTIONS, Echo::new).run_peers(
        ECHO_CONNECTIONS,
        move |address, c| {
            echo_peer(address, c).map_err(|e| format!("{runtime:?}, {family:?}, {e}"))
        },
    );
}

#[test]
fn echo_bursts_tcp_multi_thread() {
    echo_bursts(Family::Inet, Runtime::MultiThread);
}

#[test]
fn echo_bursts_unix_multi_thread() {
    echo_bursts(Family::Unix, Runtime::MultiThread);
}

#[test]
fn echo_bursts_tcp_current_thread() {
    echo_bursts(Family::Inet, Runtime::CurrentThread);
}

#[test]
fn echo_bursts_unix_current_thread() {
    echo_bursts(Family::Unix, Runtime::CurrentThread);
}

// ---------------------------------------------------------------------------------------------
// A writer: the dispatcher fills the socket, the peer drains it in bursts

const WRITER_CONNECTIONS: usize = 2;
/// What each writer sends.
const WRITER_TOTAL: usize = 24 * 1024 * 1024;
/// What a writer offers per `send`: more than a socket buffer holds, so that sends come back
/// short.
const WRITER_CHUNK: usize = 512 * 1024;
/// The peer reads this much, then pauses so that the writer fills the socket again.
const READER_BURST: usize = 256 * 1024;

/// Sends `WRITER_TOTAL` bytes of its stream with `Channel::send`, then closes.
struct Writer {
    streams: Arc<Vec<Stream>>,
    seed: usize,
    offset: usize,
    errors: Log,
}

impl Dispatcher for Writer {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, _: &Channel) -> bool {
        true
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let len = WRITER_CHUNK.min(WRITER_TOTAL - self.offset);
        let data = self.streams[self.seed].at(self.offset, len);
        self.offset += channel.send(data)?;
        if self.offset == WRITER_TOTAL {
            channel.close();
        }
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.errors.push(format!(
            "writer: closed by the peer at byte {}",
            self.offset
        ));
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.errors.push(format!("writer: {error}"));
        channel.close();
    }
}

/// Reads the whole stream of the writer it is connected to in bursts of `READER_BURST`, with
/// a short pause after each so that the writer fills the socket again, checking every byte;
/// the stream must end right after `WRITER_TOTAL` bytes. Writers get their streams in accept
/// order, so the reader tells which one it has from the first burst.
fn burst_reader(address: &Address, streams: &[Stream], c: usize) -> Result<(), String> {
    let mut peer = connect(address);
    let mut burst = vec![0; READER_BURST];
    let mut stream = None;
    let mut offset = 0;
    while offset < WRITER_TOTAL {
        let len = READER_BURST.min(WRITER_TOTAL - offset);
        let got = &mut burst[..len];
        read_fully(&mut *peer, got)
            .map_err(|e| format!("connection {c}, at byte {offset}: {e}"))?;
        let stream = *stream.get_or_insert_with(|| {
            streams
                .iter()
                .find(|s| s.at(0, len) == &got[..])
                .unwrap_or(&streams[0])
        });
        stream
            .check(offset, got)
            .map_err(|e| format!("connection {c}: {e}"))?;
        offset += len;
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut rest = [0; 1];
    match peer.read(&mut rest) {
        Ok(0) => Ok(()),
        Ok(_) => Err(format!("connection {c}: more than {WRITER_TOTAL} bytes")),
        Err(e) => Err(format!(
            "connection {c}: no end of file after the stream ({e})"
        )),
    }
}

fn writer_to_burst_reader(family: Family, runtime: Runtime) {
    let streams: Arc<Vec<Stream>> = Arc::new((0..WRITER_CONNECTIONS).map(Stream::new).collect());
    let writer_streams = Arc::clone(&streams);
    let mut next_seed = 0;
    let served = serve(family, runtime, WRITER_CONNECTIONS, move |errors| {
        next_seed += 1;
        Writer {
            streams: Arc::clone(&writer_streams),
            seed: next_seed - 1,
            offset: 0,
            errors,
        }
    });
    served.run_peers(WRITER_CONNECTIONS, move |address, c| {
        burst_reader(address, &streams, c).map_err(|e| format!("{runtime:?}, {family:?}, {e}"))
    });
}

#[test]
fn writer_to_burst_reader_tcp_multi_thread() {
    writer_to_burst_reader(Family::Inet, Runtime::MultiThread);
}

#[test]
fn writer_to_burst_reader_unix_multi_thread() {
    writer_to_burst_reader(Family::Unix, Runtime::MultiThread);
}

#[test]
fn writer_to_burst_reader_tcp_current_thread() {
    writer_to_burst_reader(Family::Inet, Runtime::CurrentThread);
}

#[test]
fn writer_to_burst_reader_unix_current_thread() {
    writer_to_burst_reader(Family::Unix, Runtime::CurrentThread);
}
