//! Shared test helpers: runtimes, bounded waits, the three socket families, and dispatchers
//! that record which callbacks ran (the trick of CPython's `BaseTestHandler`: a test sees every
//! callback, expected or not).

#![allow(dead_code)] // each test file uses part of it

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub mod log;
pub mod programs;

use asyncore::{Address, Channel, Dispatcher, Family};

/// The bound on every wait in a test.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Runs `future` on a current-thread runtime, failing the test if it takes longer than LIMIT.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bounded(future))
}

/// Runs `future` on the main thread of a multi-thread runtime (the map on `block_on`, native
/// tasks on the workers), bounded as `block_on`.
pub fn block_on_multi<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bounded(future))
}

pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("the test took longer than its bound")
}

/// The socket families every API test runs over (CPython runs its tests over the same three).
pub const FAMILIES: [Family; 3] = [Family::Inet, Family::Inet6, Family::Unix];

/// A fresh address to listen on: port 0 on loopback, or a new socket path.
///
/// The socket file that binding to the path creates is removed when the calling thread ends
/// (see [`keep_until_thread_ends`]): call this on the test's own thread, or on a thread that
/// outlives every use of the path.
pub fn any_address(family: Family) -> Address {
    match family {
        Family::Inet => Address::Inet("127.0.0.1:0".parse().unwrap()),
        Family::Inet6 => Address::Inet("[::1]:0".parse().unwrap()),
        Family::Unix => Address::Unix(keep_until_thread_ends(TempPath::new("socket"))),
    }
}

/// A path in the system's temporary directory that a test may create a file, FIFO, socket or
/// directory at, removed (whatever is there) when the guard is dropped: at the end of the test
/// when it passes, and during the unwinding when it fails.
///
/// Every name starts with `asyncore-test-PID-`, so what a test run left behind (after a crash
/// or a `kill -9`) is easy to find.
#[derive(Debug)]
pub struct TempPath(PathBuf);

impl TempPath {
    /// A fresh path, `asyncore-test-PID-N-name`, with nothing there yet (a leftover of an earlier
    /// process with the same id is removed).
    pub fn new(name: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("asyncore-test-{}-{n}-{name}", std::process::id()));
        remove(&path);
        TempPath(path)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

/// Removes whatever is at `path` (a directory with its contents); nothing there is fine.
fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

thread_local! {
    /// The paths this thread handed out through [`keep_until_thread_ends`].
    static THREAD_PATHS: RefCell<Vec<TempPath>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `path` alive until the calling thread ends, and returns it. The test harness runs each
/// test on a thread of its own and waits for that thread to end, so a path a test's thread
/// keeps here is removed once the test is over, passed or failed, even when the test passed
/// the path on by value (as `Address::Unix`) and cannot hold a guard itself.
pub fn keep_until_thread_ends(path: TempPath) -> PathBuf {
    let kept = path.0.clone();
    THREAD_PATHS.with(|paths| paths.borrow_mut().push(path));
    kept
}

/// A loopback TCP port that was free a moment ago: connecting to it is refused.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A listening channel on a fresh address, and the address clients connect to.
pub fn listener(family: Family) -> io::Result<(Channel, Address)> {
    let mut channel = Channel::create_socket(family)?;
    if family != Family::Unix {
        channel.set_reuse_addr()?;
    }
    channel.bind(any_address(family))?;
    channel.listen(128)?;
    let address = channel.local_addr()?;
    Ok((channel, address))
}

/// A channel connecting to `address`.
pub fn connector(address: &Address) -> io::Result<Channel> {
    let mut channel = Channel::create_socket(Family::of(address))?;
    channel.connect(address)?;
    Ok(channel)
}

/// A connected channel (one end of a Unix socket pair), and the other end as a blocking std
/// socket with LIMIT as its read timeout, to poke the channel from.
pub fn socket_pair() -> (Channel, std::os::unix::net::UnixStream) {
    let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    let theirs = theirs.into_std().unwrap();
    theirs.set_nonblocking(false).unwrap();
    theirs.set_read_timeout(Some(LIMIT)).unwrap();
    (Channel::from_unix(ours), theirs)
}

/// A shared, ordered list of what happened, written by the dispatchers under test.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.borrow_mut().push(entry.into());
    }
    pub fn entries(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
    pub fn count(&self, entry: &str) -> usize {
        self.0.borrow().iter().filter(|e| *e == entry).count()
    }
    pub fn contains(&self, entry: &str) -> bool {
        self.count(entry) > 0
    }
    /// Asserts that an entry starting with `first` was logged before one starting with `then`.
    pub fn assert_order(&self, first: &str, then: &str) {
        let entries = self.entries();
        let at = |prefix: &str| entries.iter().position(|e| e.starts_with(prefix));
        match (at(first), at(then)) {
            (Some(a), Some(b)) if a < b => {}
            _ => panic!("expected {first:?} before {then:?}: {entries:?}"),
        }
    }
}

/// A listener that adds every accepted connection with the dispatcher `make` builds.
pub struct Server<F> {
    pub make: F,
    pub log: Log,
}

impl<D: Dispatcher, F: FnMut() -> D + 'static> Dispatcher for Server<F> {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        connection: Channel,
        _: Address,
    ) -> io::Result<()> {
        self.log.push("server: accepted");
        channel.map().unwrap().add(connection, (self.make)())?;
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("server: close");
        channel.close();
        Ok(())
    }
}

/// Records every callback as "NAME: callback" and does nothing else, except what the flags ask.
pub struct Recorder {
    pub name: &'static str,
    pub log: Log,
    pub readable: bool,
    pub writable: bool,
    /// Close the channel in the first read or write callback.
    pub close_on_event: bool,
}

impl Recorder {
    pub fn new(name: &'static str, log: &Log) -> Recorder {
        Recorder {
            name,
            log: log.clone(),
            readable: true,
            writable: false,
            close_on_event: false,
        }
    }
    fn note(&self, what: &str) {
        self.log.push(format!("{}: {what}", self.name));
    }
}

impl Dispatcher for Recorder {
    fn readable(&self, _: &Channel) -> bool {
        self.readable
    }
    fn writable(&self, _: &Channel) -> bool {
        self.writable
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.note("read");
        let data = channel.recv(65536)?;
        self.note(&format!("data {}", data.len()));
        if self.close_on_event {
            channel.close();
        }
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.note("write");
        if self.close_on_event {
            channel.close();
        }
        Ok(())
    }
    fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.note(&format!("connect connected={}", channel.connected()));
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.note("close");
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.note(&format!("error {:?}", error.kind()));
        channel.close();
    }
}

/// Runs `map` until `peer` (a thread playing the other end) has finished, and returns what the
/// thread returned (a panic in it is the test's panic).
pub async fn run_until_done<T: Send + 'static>(
    map: &asyncore::Map,
    peer: std::thread::JoinHandle<T>,
) -> T {
    let (done, finished) = tokio::sync::oneshot::channel();
    let waiter = std::thread::spawn(move || {
        let outcome = peer.join();
        let _ = done.send(());
        outcome
    });
    map.run_until(async {
        let _ = finished.await;
    })
    .await
    .unwrap();
    match waiter.join().unwrap() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A remote end on its own thread that answers every byte with its complement (so that an
/// echo cannot pass for it), for `connections` connections.
pub fn complement_server(
    connections: usize,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = server.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut served = Vec::new();
        for _ in 0..connections {
            let (mut conn, _) = server.accept().unwrap();
            conn.set_read_timeout(Some(LIMIT)).unwrap();
            served.push(std::thread::spawn(move || {
                let mut buf = vec![0; 65536];
                loop {
                    let n = match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf[..n].iter_mut().for_each(|b| *b = !*b);
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }));
        }
        for connection in served {
            connection.join().unwrap();
        }
    });
    (address, thread)
}

/// Sends `data` to `address` while reading the answer (so that neither side's buffers fill and
/// stop the other), and returns the answer once it is as long as `data`.
pub fn exchange(address: std::net::SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let stream = std::net::TcpStream::connect_timeout(&address, LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let len = data.len();
    let writing = std::thread::spawn(move || writer.write_all(&data).unwrap());
    let mut answer = vec![0; len];
    (&stream)
        .read_exact(&mut answer)
        .expect("every byte came back within the bound");
    writing.join().unwrap();
    answer
}
