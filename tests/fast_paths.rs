//! What the reactor's fast paths must not change: `Bytes` kept from the thread's shared receive
//! buffer stay intact; a short read (which forgets the socket's cached read readiness) never
//! loses data that arrives after it, free-running or in lock-step passes; a `writev` cut short by
//! the system's limit on buffers leaves the channel writable.

mod util;

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use asyncore::{Channel, Dispatcher, Map};
use bytes::Bytes;
use util::{block_on, socket_pair, LIMIT};

/// Keeps every `Bytes` that `recv` returns, without copying it.
struct Keeper {
    kept: Rc<RefCell<Vec<Bytes>>>,
}

impl Dispatcher for Keeper {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(7)?;
        if !data.is_empty() {
            self.kept.borrow_mut().push(data);
        }
        Ok(())
    }
}

/// Three channels read in small pieces from the one shared buffer and keep every piece; each
/// channel's pieces still spell exactly what its peer sent.
#[test]
fn kept_bytes_survive_later_reads_on_any_channel() {
    block_on(async {
        let map = Map::new();
        let mut expected = Vec::new();
        let mut kept = Vec::new();
        for n in 0..3u32 {
            let (channel, mut peer) = socket_pair();
            let data: Vec<u8> = (0..5000u32).map(|i| (i * (n + 3) % 253) as u8).collect();
            peer.write_all(&data).unwrap();
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            let pieces = Rc::new(RefCell::new(Vec::new()));
            map.add(
                channel,
                Keeper {
                    kept: pieces.clone(),
                },
            )
            .unwrap();
            expected.push(data);
            kept.push((pieces, peer));
        }
        map.run().await.unwrap();
        for (n, ((pieces, _peer), data)) in kept.iter().zip(&expected).enumerate() {
            let got: Vec<u8> = pieces.borrow().iter().flatten().copied().collect();
            assert!(
                got == *data,
                "channel {n}: {} of {} bytes, or altered",
                got.len(),
                data.len()
            );
            assert!(pieces.borrow().len() > 1, "channel {n} read in one piece");
        }
    });
}

/// Reads with room to spare (a short read), and only then makes its peer send the rest: the
/// rest must still be read.
struct ShortReader<P: Write> {
    peer: P,
    got: Rc<RefCell<Vec<u8>>>,
    sent_rest: bool,
}

impl<P: Write + 'static> Dispatcher for ShortReader<P> {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(1024)?;
        self.got.borrow_mut().extend_from_slice(&data);
        if !self.sent_rest {
            self.sent_rest = true;
            self.peer.write_all(b" and the rest")?;
        } else if self.got.borrow().ends_with(b"rest") {
            channel.close();
        }
        Ok(())
    }
}

/// Runs a `ShortReader` over the pair `make` returns (made inside the runtime, which the
/// channel's registration needs), free-running or in lock-step passes.
fn short_read_then_more<P: Write + 'static>(make: impl Fn() -> (Channel, P)) {
    for lock_step in [false, true] {
        block_on(async {
            let (channel, mut peer) = make();
            peer.write_all(b"first").unwrap();
            let map = Map::new();
            let got = Rc::new(RefCell::new(Vec::new()));
            map.add(
                channel,
                ShortReader {
                    peer,
                    got: got.clone(),
                    sent_rest: false,
                },
            )
            .unwrap();
            if lock_step {
                // A lost wake-up shows as a map still open after its passes (each bounded).
                map.run_count(Duration::from_secs(2), 10).await.unwrap();
            } else {
                map.run().await.unwrap();
            }
            assert!(
                map.is_empty(),
                "the rest was never read: {:?}",
                got.borrow()
            );
            assert_eq!(&*got.borrow(), b"first and the rest");
        });
    }
}

#[test]
fn data_after_a_short_read_is_read_unix() {
    short_read_then_more(socket_pair);
}

#[test]
fn data_after_a_short_read_is_read_tcp() {
    short_read_then_more(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        peer.set_write_timeout(Some(LIMIT)).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (
            Channel::from_tcp(tokio::net::TcpStream::from_std(ours).unwrap()),
            peer,
        )
    });
}

/// Reads whatever is there with a `max` of `usize::MAX`.
struct Greedy {
    got: Rc<RefCell<Vec<u8>>>,
}

impl Dispatcher for Greedy {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(usize::MAX)?;
        self.got.borrow_mut().extend_from_slice(&data);
        Ok(())
    }
}

/// A `max` beyond any buffer is a bound, not an allocation: no panic, every byte arrives.
#[test]
fn recv_with_a_huge_max_reads_everything() {
    block_on(async {
        let (channel, mut peer) = socket_pair();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
        let map = Map::new();
        let got = Rc::new(RefCell::new(Vec::new()));
        map.add(channel, Greedy { got: got.clone() }).unwrap();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                peer.write_all(&data).unwrap();
                peer.shutdown(std::net::Shutdown::Write).unwrap();
                peer
            })
        };
        map.run().await.unwrap();
        let _peer = writer.join().unwrap();
        assert!(
            *got.borrow() == data,
            "{} of {} bytes",
            got.borrow().len(),
            data.len()
        );
    });
}

/// The shared buffer is per thread: two maps on two threads read at once without mixing data.
#[test]
fn maps_on_two_threads_do_not_share_a_buffer() {
    let threads: Vec<_> = (0..2u8)
        .map(|n| {
            std::thread::spawn(move || {
                block_on(async move {
                    let (channel, mut peer) = socket_pair();
                    let data = vec![b'a' + n; 20_000];
                    peer.write_all(&data).unwrap();
                    peer.shutdown(std::net::Shutdown::Write).unwrap();
                    let map = Map::new();
                    let kept = Rc::new(RefCell::new(Vec::new()));
                    map.add(channel, Keeper { kept: kept.clone() }).unwrap();
                    tokio::time::timeout(Duration::from_secs(10), map.run())
                        .await
                        .unwrap()
                        .unwrap();
                    let got: Vec<u8> = kept.borrow().iter().flatten().copied().collect();
                    assert!(got == data, "thread {n} got other bytes");
                })
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// Sends its output as thousands of tiny slices, more than one `writev` takes.
struct ManySlices {
    pieces: Vec<Vec<u8>>,
    next: usize,
    offset: usize,
}

impl Dispatcher for ManySlices {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, _: &Channel) -> bool {
        self.next < self.pieces.len()
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let mut slices = vec![IoSlice::new(&self.pieces[self.next][self.offset..])];
        slices.extend(self.pieces[self.next + 1..].iter().map(|p| IoSlice::new(p)));
        let mut sent = channel.send_vectored(&slices)?;
        while sent > 0 {
            let left = self.pieces[self.next].len() - self.offset;
            if sent >= left {
                sent -= left;
                self.next += 1;
                self.offset = 0;
            } else {
                self.offset += sent;
                sent = 0;
            }
        }
        if self.next == self.pieces.len() {
            channel.close();
        }
        Ok(())
    }
}

/// 3000 slices of 7 bytes fit the socket buffer but not one `writev` (`IOV_MAX` is 1024): the
/// channel must stay writable after the short write and send the rest.
#[test]
fn a_writev_cut_short_by_iov_max_goes_on() {
    block_on(async {
        let (channel, mut peer) = socket_pair();
        let pieces: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![(i % 256) as u8; 7]).collect();
        let expected: Vec<u8> = pieces.concat();
        let map = Map::new();
        map.add(
            channel,
            ManySlices {
                pieces,
                next: 0,
                offset: 0,
            },
        )
        .unwrap();
        map.run().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert!(got == expected, "{} of {} bytes", got.len(), expected.len());
    });
}
