//! Buffered output (`SendBuffer`, asyncore's `dispatcher_with_send`) over real sockets: CPython's
//! DispatcherWithSendTests, and a slow reader against water marks.

mod util;

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use asyncore::{Channel, Dispatcher, Family, Map, SendBuffer, SEND_CHUNK};
use bytes::Bytes;
use util::{any_address, block_on, FAMILIES, LIMIT};

/// CPython's `dispatcherwithsend_noread`: sends what it was given, reads nothing, and closes
/// once its buffer is empty.
struct NoRead {
    out: SendBuffer,
    sends: Rc<Cell<usize>>,
}

impl Dispatcher for NoRead {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, channel: &Channel) -> bool {
        self.out.writable(channel)
    }
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = self.out.initiate_send(channel)?;
        assert!(sent <= SEND_CHUNK, "one send takes at most 64 KiB");
        self.sends.set(self.sends.get() + 1);
        if self.out.is_empty() {
            channel.close();
        }
        Ok(())
    }
}

/// How a capture server reads: at once, or 512 bytes at a time through a 4 KiB receive buffer.
#[derive(Clone, Copy, PartialEq)]
enum Reader {
    Fast,
    Slow,
}

/// A listener on `family` that a thread drains to end of file; returns its address and the
/// thread, which yields every byte it read.
fn capture_server(
    family: Family,
    reader: Reader,
) -> (asyncore::Address, std::thread::JoinHandle<Vec<u8>>) {
    const SMALL_BUFFER: usize = 4096;
    fn drain(mut stream: impl Read, reader: Reader) -> Vec<u8> {
        let mut all = Vec::new();
        let mut piece = vec![
            0u8;
            if reader == Reader::Slow {
                512
            } else {
                64 * 1024
            }
        ];
        loop {
            let n = stream.read(&mut piece).unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&piece[..n]);
        }
    }
    match any_address(family) {
        asyncore::Address::Inet(addr) => {
            use asyncore::socket2::{Domain, Socket, Type};
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
            if reader == Reader::Slow {
                // Before listen, so that the window the connection starts with is small too.
                socket.set_recv_buffer_size(SMALL_BUFFER).unwrap();
            }
            socket.bind(&addr.into()).unwrap();
            socket.listen(1).unwrap();
            let listener: std::net::TcpListener = socket.into();
            let address = listener.local_addr().unwrap().into();
            (
                address,
                std::thread::spawn(move || {
                    let (stream, _) = listener.accept().unwrap();
                    stream.set_read_timeout(Some(LIMIT)).unwrap();
                    drain(stream, reader)
                }),
            )
        }
        asyncore::Address::Unix(path) => {
            let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            (
                path.into(),
                std::thread::spawn(move || {
                    let (stream, _) = listener.accept().unwrap();
                    if reader == Reader::Slow {
                        asyncore::socket2::SockRef::from(&stream)
                            .set_recv_buffer_size(SMALL_BUFFER)
                            .unwrap();
                    }
                    stream.set_read_timeout(Some(LIMIT)).unwrap();
                    drain(stream, reader)
                }),
            )
        }
        asyncore::Address::Unnamed => unreachable!(),
    }
}

/// DispatcherWithSendTests.test_send: data sent before the connect completes is queued
/// (writable() is true while connecting), flushed once connected, in order; the capture server
/// receives it all. Also with a payload several chunks long.
#[test]
fn dispatcher_with_send_delivers_everything_in_order() {
    for family in FAMILIES {
        for data in [
            Bytes::from_static(b"Suppose there isn't a 16-ton weight?"),
            Bytes::from(
                (0..300_000u32)
                    .map(|i| (i % 253) as u8)
                    .collect::<Vec<u8>>(),
            ),
        ] {
            let (address, server) = capture_server(family, Reader::Fast);
            let sends = Rc::new(Cell::new(0));
            block_on(async {
                let mut channel = Channel::create_socket(family).unwrap();
                channel.connect(&address).unwrap();
                let mut out = SendBuffer::new();
                assert!(out.writable(&channel), "writable while connecting");
                out.send(&mut channel, data.clone()).unwrap();
                out.send(&mut channel, data.clone()).unwrap();
                out.send(&mut channel, &b"\n"[..]).unwrap();
                assert_eq!(
                    out.len(),
                    2 * data.len() + 1,
                    "nothing sent before connected"
                );
                let map = Map::new();
                map.add(
                    channel,
                    NoRead {
                        out,
                        sends: sends.clone(),
                    },
                )
                .unwrap();
                map.run().await.unwrap();
            });
            let received = server.join().unwrap();
            let mut expected = data.to_vec();
            expected.extend_from_slice(&data);
            expected.push(b'\n');
            assert!(
                received == expected,
                "{family:?}: received {} of {} bytes, or out of order",
                received.len(),
                expected.len()
            );
            assert!(
                sends.get() >= expected.len().div_ceil(SEND_CHUNK),
                "{family:?}"
            );
        }
    }
}

/// A producer that respects the water marks: it pushes only while the buffer is not paused.
struct Producer {
    out: SendBuffer,
    produced: usize,
    total: usize,
    chunk: usize,
    max_queued: Rc<Cell<usize>>,
    pauses: Rc<Cell<usize>>,
    resumes: Rc<Cell<usize>>,
}

impl Producer {
    fn more(&self) -> bool {
        self.produced < self.total
    }

    fn track(&mut self, was_paused: bool) {
        match (was_paused, self.out.is_paused()) {
            (false, true) => self.pauses.set(self.pauses.get() + 1),
            (true, false) => self.resumes.set(self.resumes.get() + 1),
            _ => {}
        }
        self.max_queued
            .set(self.max_queued.get().max(self.out.len()));
    }
}

impl Dispatcher for Producer {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, channel: &Channel) -> bool {
        self.out.writable(channel) || (!self.out.is_paused() && self.more())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let was_paused = self.out.is_paused();
        self.out.initiate_send(channel)?;
        self.track(was_paused);
        while !self.out.is_paused() && self.more() {
            let len = self.chunk.min(self.total - self.produced);
            let data: Vec<u8> = (self.produced..self.produced + len).map(byte_at).collect();
            self.produced += len;
            let was_paused = self.out.is_paused();
            self.out.push(data);
            self.track(was_paused);
        }
        if !self.more() && self.out.is_empty() {
            channel.close();
        }
        Ok(())
    }
}

fn byte_at(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / 251) as u8
}

/// A slow reader (small reads, small socket buffers) against a producer that respects the
/// marks: the queue never holds more than the high mark plus one push, the buffer pauses and
/// resumes, and every byte arrives in order.
#[test]
fn slow_reader_keeps_the_buffer_bounded() {
    const HIGH: usize = 32 * 1024;
    const LOW: usize = 8 * 1024;
    const CHUNK: usize = 3000;
    const TOTAL: usize = 2 * 1024 * 1024;
    for family in [Family::Inet, Family::Unix] {
        let (address, server) = capture_server(family, Reader::Slow);
        let max_queued = Rc::new(Cell::new(0));
        let pauses = Rc::new(Cell::new(0));
        let resumes = Rc::new(Cell::new(0));
        block_on(async {
            let mut channel = Channel::create_socket(family).unwrap();
            channel
                .socket()
                .unwrap()
                .set_send_buffer_size(4096)
                .unwrap();
            channel.connect(&address).unwrap();
            let map = Map::new();
            map.add(
                channel,
                Producer {
                    out: SendBuffer::with_limits(HIGH, LOW).unwrap(),
                    produced: 0,
                    total: TOTAL,
                    chunk: CHUNK,
                    max_queued: max_queued.clone(),
                    pauses: pauses.clone(),
                    resumes: resumes.clone(),
                },
            )
            .unwrap();
            map.run().await.unwrap();
        });
        let received = server.join().unwrap();
        assert_eq!(received.len(), TOTAL, "{family:?}");
        assert!(
            received.iter().enumerate().all(|(i, b)| *b == byte_at(i)),
            "{family:?}: bytes out of order"
        );
        assert!(
            max_queued.get() <= HIGH + CHUNK,
            "{family:?}: {} bytes queued",
            max_queued.get()
        );
        assert!(pauses.get() >= 1 && resumes.get() >= 1, "{family:?}");
    }
}

/// A buffer on a connected pair whose peer does not read: pushes past the high mark pause it,
/// and it stays paused (nothing can drain); dropping the queue resumes it.
#[test]
fn paused_while_the_peer_does_not_read() {
    block_on(async {
        let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
        let mut channel = Channel::from_unix(ours);
        let mut out = SendBuffer::with_limits(1000, 100).unwrap();
        out.push(vec![1; 1000]);
        assert!(!out.is_paused());
        out.push(vec![2; 1]);
        assert!(out.is_paused());
        assert!(out.writable(&channel));
        // Fill the socket: with nobody reading, the queue cannot drain below the low mark.
        let mut filler = SendBuffer::with_limits(usize::MAX, 0).unwrap();
        filler.push(vec![0; 8 << 20]);
        for _ in 0..1000 {
            if filler.initiate_send(&mut channel).unwrap() == 0 {
                break;
            }
        }
        assert_eq!(out.initiate_send(&mut channel).unwrap(), 0);
        assert!(out.is_paused() && out.len() == 1001);
        out.clear();
        assert!(!out.is_paused() && !out.writable(&channel));
    });
}
