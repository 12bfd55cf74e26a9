//! File channels (asyncore's `file_wrapper`/`file_dispatcher`): pipes, a socket pair given as a
//! bare descriptor, regular files and `/dev/null` (always ready). CPython's `FileWrapperTest`,
//! end of file after a hang-up with unread data, `EPIPE`, and the duplicated descriptor.

mod util;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use asyncore::{Channel, Dispatcher, Event, Map};
use util::{block_on, Log, LIMIT};

const DATA: &[u8] = b"It's not dead, it's sleeping!";

/// A pipe: (read end, write end), both blocking and close-on-exec.
#[allow(unsafe_code)]
fn pipe() -> (OwnedFd, File) {
    let mut fds = [0; 2];
    // SAFETY: `pipe2` writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

#[allow(unsafe_code)]
fn is_nonblocking(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GETFL on an open descriptor touches no memory.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0);
    flags & libc::O_NONBLOCK != 0
}

/// A temporary file holding `DATA`, removed on drop.
struct TempFile(util::TempPath);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let path = util::TempPath::new(name);
        std::fs::write(&path, DATA).unwrap();
        TempFile(path)
    }
}

/// Reads `chunk` bytes per read event; logs what it got and every close.
struct Reader {
    chunk: usize,
    data: Vec<u8>,
    log: Log,
}

impl Reader {
    fn new(chunk: usize, log: &Log) -> Reader {
        Reader {
            chunk,
            data: Vec::new(),
            log: log.clone(),
        }
    }
}

impl Dispatcher for Reader {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(self.chunk)?;
        self.data.extend_from_slice(&data);
        if data.is_empty() {
            self.log.push(format!("eof after {}", self.data.len()));
        }
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push(format!("close after {}", self.data.len()));
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.log.push(format!("error {error}"));
        channel.close();
    }
}

/// FileWrapperTest.test_recv: the wrapper has its own descriptor; reads are sequential; a read
/// after close fails.
#[test]
fn wrapper_duplicates_and_reads_in_order() {
    block_on(async {
        let file = TempFile::new("recv");
        let original = File::open(&file.0).unwrap();
        let original_fd = original.as_raw_fd();
        let mut channel = Channel::from_fd(&original).unwrap();
        drop(original);
        assert_ne!(channel.fileno(), Some(original_fd));
        assert!(channel.fileno().is_some());
        assert!(channel.connected() && channel.is_file());
        assert_eq!(&channel.recv(13).unwrap()[..], b"It's not dead");
        let mut buf = [0; 6];
        assert_eq!(channel.recv_into(&mut buf).unwrap(), 6);
        assert_eq!(&buf, b", it's");
        channel.close();
        assert_eq!(channel.fileno(), None);
        let error = channel.recv(1).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
    });
}

/// FileWrapperTest.test_send: writes go to the file (opened for appending).
#[test]
fn wrapper_writes_append() {
    block_on(async {
        let file = TempFile::new("send");
        let original = OpenOptions::new().append(true).open(&file.0).unwrap();
        let mut channel = Channel::from_fd(&original).unwrap();
        drop(original);
        assert_eq!(channel.send(b"Come again?").unwrap(), 11);
        let parts = [
            io::IoSlice::new(b"I want to buy "),
            io::IoSlice::new(b"some cheese."),
        ];
        assert_eq!(channel.send_vectored(&parts).unwrap(), 26);
        channel.close();
        let written = std::fs::read(&file.0).unwrap();
        assert_eq!(
            written,
            [DATA, b"Come again?I want to buy some cheese."].concat()
        );
    });
}

/// FileWrapperTest.test_dispatcher: a dispatcher on a regular file reads it all in lock-step
/// passes: epoll refuses the file, so it is always ready, as under `select`; the pass after the
/// data reads end of file and closes, once.
#[test]
fn dispatcher_reads_a_regular_file() {
    block_on(async {
        let file = TempFile::new("dispatcher");
        let original = File::open(&file.0).unwrap();
        let channel = Channel::from_fd(&original).unwrap();
        drop(original);
        assert!(channel.always_ready());
        let log = Log::default();
        let map = Map::new();
        let id = map.add(channel, Reader::new(29, &log)).unwrap();
        let first = map.poll(Duration::from_millis(10)).await.unwrap();
        assert_eq!(first.events, vec![(id, Event::Read)]);
        let second = map.poll(Duration::from_millis(10)).await.unwrap();
        assert_eq!(
            second.events,
            vec![(id, Event::Read), (id, Event::ReadEof), (id, Event::Close)]
        );
        assert!(map.is_empty());
        assert_eq!(log.entries(), ["eof after 29", "close after 29"]);
    });
}

/// `/dev/null` is always ready too: reading it is end of file at once; writing takes
/// everything.
#[test]
fn dev_null_reads_eof_and_takes_writes() {
    block_on(async {
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let log = Log::default();
        let map = Map::new();
        let reader = Channel::from_fd(&null).unwrap();
        assert!(reader.always_ready());
        map.add(reader, Reader::new(100, &log)).unwrap();
        map.run().await.unwrap();
        assert_eq!(log.entries(), ["eof after 0", "close after 0"]);

        let mut writer = Channel::from_fd(&null).unwrap();
        assert_eq!(writer.send(&[7; 100_000]).unwrap(), 100_000);
    });
}

/// A pipe whose writer is gone while data is still in it: every byte is read (in small reads,
/// one per event), then end of file, then `handle_close` exactly once. asyncore's `poll`
/// backend closes at the hang-up and loses what was left.
#[test]
fn hang_up_with_unread_data_reads_everything_first() {
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    for lock_step in [false, true] {
        block_on(async {
            let (reader, mut writer) = pipe();
            writer.write_all(&data).unwrap();
            drop(writer);
            let log = Log::default();
            let map = Map::new();
            let mut handler = Reader::new(1000, &log);
            handler.data.reserve(data.len());
            let id = map
                .add(Channel::from_fd(&reader).unwrap(), handler)
                .unwrap();
            drop(reader);
            if lock_step {
                let mut reads = 0;
                for _ in 0..1000 {
                    let pass = map.poll(LIMIT).await.unwrap();
                    reads += pass.events.iter().filter(|e| e.1 == Event::Read).count();
                    if map.is_empty() {
                        break;
                    }
                }
                assert!(map.is_empty(), "still open after 1000 passes");
                assert_eq!(reads, 51, "50 reads of data, one of end of file");
            } else {
                map.run().await.unwrap();
            }
            assert_eq!(
                log.entries(),
                [
                    format!("eof after {}", data.len()),
                    format!("close after {}", data.len())
                ],
                "{id}"
            );
        });
    }
}

/// Data written while the channel waits arrives, whoever holds the other end, and the
/// caller's descriptor can be closed at once: the channel reads through its duplicate.
#[test]
fn original_descriptor_closed_after_wrapping() {
    block_on(async {
        let (reader, writer) = pipe();
        let channel = Channel::from_fd(&reader).unwrap();
        let fd = channel.fileno().unwrap();
        drop(reader);
        assert_ne!(fd, -1);
        let log = Log::default();
        let map = Map::new();
        map.add(channel, Reader::new(7, &log)).unwrap();
        let feeder = std::thread::spawn(move || {
            let mut writer = writer;
            for _ in 0..100 {
                writer.write_all(b"0123456789").unwrap();
            }
        });
        map.run().await.unwrap();
        feeder.join().unwrap();
        assert_eq!(log.entries(), ["eof after 1000", "close after 1000"]);
    });
}

/// O_NONBLOCK belongs to the open file description: the caller's descriptor shares it
/// (documented, as in asyncore).
#[test]
fn nonblocking_is_shared_with_the_original() {
    block_on(async {
        let (reader, _writer) = pipe();
        assert!(!is_nonblocking(&reader));
        let channel = Channel::from_fd(&reader).unwrap();
        assert!(is_nonblocking(&reader));
        assert!(!channel.always_ready());
    });
}

/// Writes to a pipe whose reader is gone: `EPIPE` is a disconnect, so `send` returns 0 and
/// `handle_close` runs once, never `handle_error`.
#[test]
fn epipe_when_the_reader_is_gone_closes() {
    struct Writer(Log);
    impl Dispatcher for Writer {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            let sent = channel.send(b"into the void")?;
            self.0.push(format!("sent {sent}"));
            Ok(())
        }
        fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0.push("close");
            channel.close();
            Ok(())
        }
        fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
            self.0.push(format!("error {error}"));
            channel.close();
        }
    }
    block_on(async {
        let (reader, writer) = pipe();
        drop(reader);
        let log = Log::default();
        let map = Map::new();
        map.add(Channel::from_fd(&writer).unwrap(), Writer(log.clone()))
            .unwrap();
        map.run().await.unwrap();
        assert_eq!(log.entries(), ["sent 0", "close"]);
    });
}

/// A socket given as a bare descriptor works as a file channel: read(2)/write(2) both ways,
/// end of file when the peer closes.
#[test]
fn socket_pair_through_from_fd() {
    struct Echo(Log);
    impl Dispatcher for Echo {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            let data = channel.recv(4096)?;
            // A socket pair's buffer takes these few bytes at once.
            assert_eq!(channel.send(&data)?, data.len());
            Ok(())
        }
        fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0.push("close");
            channel.close();
            Ok(())
        }
    }
    block_on(async {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let channel = Channel::from_fd(&ours).unwrap();
        drop(ours);
        let log = Log::default();
        let map = Map::new();
        map.add(channel, Echo(log.clone())).unwrap();
        let peer = std::thread::spawn(move || {
            let mut theirs = theirs;
            theirs.set_read_timeout(Some(LIMIT)).unwrap();
            let mut echoed = Vec::new();
            for word in ["one", "two", "three"] {
                theirs.write_all(word.as_bytes()).unwrap();
                let mut buf = vec![0; word.len()];
                theirs.read_exact(&mut buf).unwrap();
                echoed.extend_from_slice(&buf);
            }
            echoed
        });
        map.run().await.unwrap();
        assert_eq!(peer.join().unwrap(), b"onetwothree");
        assert_eq!(log.entries(), ["close"]);
    });
}

/// An always-ready channel that always wants to write (to `/dev/null`) does not starve the
/// thread: a native task on the same thread gets to run, and closes it. The map runs on a
/// thread of its own, so that a starved thread fails the test instead of hanging it.
#[test]
fn always_ready_channel_yields_to_the_thread() {
    struct Sink(std::rc::Rc<std::cell::Cell<u64>>);
    impl Dispatcher for Sink {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.send(b"x")?;
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let writes = block_on(async {
            let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
            let writes = std::rc::Rc::new(std::cell::Cell::new(0));
            let map = Map::new();
            let channel = Channel::from_fd(&null).unwrap();
            assert!(channel.always_ready());
            map.add(channel, Sink(writes.clone())).unwrap();
            let closer = {
                let map = map.clone();
                async move {
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                    map.close_all();
                }
            };
            let (served, ()) = tokio::join!(map.run(), closer);
            served.unwrap();
            writes.get()
        });
        let _ = done.send(writes);
    });
    let writes = finished
        .recv_timeout(LIMIT)
        .expect("the always-ready channel starved its thread");
    assert!(writes > 0);
}

/// A pseudo-terminal: (master, slave), the slave in its default canonical mode.
#[allow(unsafe_code)]
fn pty() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; `ptsname_r` writes a
    // NUL-terminated name into the buffer it is given, within its length.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "{}", io::Error::last_os_error());
        let master = File::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap();
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(name)
            .unwrap();
        (master, slave)
    }
}

/// A terminal in canonical mode returns one line per read, however many are waiting: a short
/// read proves nothing there, so every line arrives (the pipe rule, "a short read emptied it",
/// would strand the second line until more input came).
#[test]
fn terminal_lines_all_arrive() {
    struct Lines(Log);
    impl Dispatcher for Lines {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            let data = channel.recv(1024)?;
            self.0.push(String::from_utf8_lossy(&data).into_owned());
            if data.ends_with(b"last\n") {
                channel.close();
            }
            Ok(())
        }
    }
    block_on(async {
        let (mut master, slave) = pty();
        master.write_all(b"one\ntwo\nlast\n").unwrap();
        let log = Log::default();
        let map = Map::new();
        let channel = Channel::from_fd(&slave).unwrap();
        assert!(!channel.always_ready());
        map.add(channel, Lines(log.clone())).unwrap();
        map.run().await.unwrap();
        assert_eq!(log.entries(), ["one\n", "two\n", "last\n"]);
    });
}

/// A named pipe (FIFO) works like a pipe: data written in several pieces, then the writer's
/// close, then end of file, once.
#[test]
#[allow(unsafe_code)]
fn fifo_reads_to_end_of_file() {
    let path = util::TempPath::new("fifo");
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `mkfifo` reads the NUL-terminated path it is given.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    block_on(async {
        // Opening the read end without O_NONBLOCK would wait for a writer.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut writer = OpenOptions::new().write(true).open(&path).unwrap();
        let log = Log::default();
        let map = Map::new();
        map.add(Channel::from_fd(&reader).unwrap(), Reader::new(4096, &log))
            .unwrap();
        drop(reader);
        let feeder = std::thread::spawn(move || {
            for i in 0..64u8 {
                writer.write_all(&[i; 1000]).unwrap();
            }
        });
        map.run().await.unwrap();
        feeder.join().unwrap();
        assert_eq!(log.entries(), ["eof after 64000", "close after 64000"]);
    });
}
