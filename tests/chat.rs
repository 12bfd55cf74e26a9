//! asynchat (`asyncore::chat`) over real sockets: CPython's test_asynchat scenarios, plus the
//! record limit, hand-over to native code, and pushes from native code.
//!
//! The CPython tests echo through a server thread that answers in 1-, 2- or 3-byte chunks;
//! here the chat's own `ac_in_buffer_size` of 1, 2 or 3 forces the same splits on the reading
//! side, deterministically. They drive the loop in lock-step passes (`asyncore.loop(count=300)`);
//! here each of their scenarios runs both in lock-step passes (`Map::run_count`) and
//! free-running (`Map::run`).

mod util;

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use asyncore::chat::{AsyncChat, Chat, ChatHandler, ChatStream, SimpleProducer, Terminator};
use asyncore::{Address, Channel, Dispatcher, Family, Map};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use util::{any_address, block_on, block_on_multi, connector, socket_pair, FAMILIES};

/// What a test client saw.
#[derive(Clone, Default)]
struct Seen {
    records: Rc<RefCell<Vec<Vec<u8>>>>,
    collected: Rc<Cell<usize>>,
    /// The record still collected when the channel closed.
    left: Rc<RefCell<Option<Vec<u8>>>>,
    errors: Rc<RefCell<Vec<io::Error>>>,
    most_incoming: Rc<Cell<usize>>,
}

impl Seen {
    fn records(&self) -> Vec<String> {
        let records = self.records.borrow();
        records
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }
}

/// CPython's `echo_client`: collects records; closes when `done` says so.
struct Client {
    seen: Seen,
    done: Box<dyn Fn(&Seen) -> bool>,
}

impl Client {
    fn check(&self, channel: &mut Channel) {
        if (self.done)(&self.seen) {
            channel.close();
        }
    }
}

impl ChatHandler for Client {
    fn collect_incoming_data(&mut self, chat: &mut Chat, data: Bytes) -> io::Result<()> {
        assert!(!data.is_empty(), "collect_incoming_data got an empty chunk");
        self.seen
            .collected
            .set(self.seen.collected.get() + data.len());
        let result = chat.collect_incoming_data(data);
        let most = self.seen.most_incoming.get().max(chat.incoming_len());
        self.seen.most_incoming.set(most);
        if (self.done)(&self.seen) {
            chat.close_when_done(); // no channel here: close once the output is sent
        }
        result
    }

    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        self.seen
            .records
            .borrow_mut()
            .push(chat.take_data().to_vec());
        self.check(channel);
        Ok(())
    }

    fn handle_close(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        *self.seen.left.borrow_mut() = Some(chat.take_data().to_vec());
        channel.close();
        Ok(())
    }

    fn handle_error(&mut self, _: &mut Chat, channel: &mut Channel, error: io::Error) {
        self.seen.errors.borrow_mut().push(error);
        channel.close();
    }
}

/// A native peer on `family`: accepts one connection and runs `serve` on it; returns the
/// address and the task, which yields what `serve` returns.
async fn peer<F, Fut>(family: Family, serve: F) -> (Address, tokio::task::JoinHandle<Vec<u8>>)
where
    F: FnOnce(Box<dyn Stream>) -> Fut + 'static,
    Fut: std::future::Future<Output = Vec<u8>> + 'static,
{
    match any_address(family) {
        Address::Inet(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let address = listener.local_addr().unwrap().into();
            let task = tokio::task::spawn_local(async move {
                let (stream, _) = listener.accept().await.unwrap();
                serve(Box::new(stream)).await
            });
            (address, task)
        }
        Address::Unix(path) => {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let task = tokio::task::spawn_local(async move {
                let (stream, _) = listener.accept().await.unwrap();
                serve(Box::new(stream)).await
            });
            (Address::Unix(path), task)
        }
        other => panic!("no peer for {other:?}"),
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}

/// Echoes every byte until end of file; yields what it received.
async fn echo(mut stream: Box<dyn Stream>) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if stream.write_all(&buf[..n]).await.is_err() {
                    return all;
                }
            }
        }
    }
}

/// How the map runs: free-running (`Map::run`), or in lock-step passes (`Map::run_count`, as
/// CPython's tests run `asyncore.loop(count=...)`).
#[derive(Debug, Clone, Copy)]
enum Mode {
    Free,
    LockStep,
}

const MODES: [Mode; 2] = [Mode::Free, Mode::LockStep];

/// Runs a chat client against an echo peer on `family`: `setup` configures the chat and
/// pushes before the connect completes. Returns what the client saw and what the peer got.
fn echo_round(
    mode: Mode,
    family: Family,
    terminator: impl Into<Terminator>,
    setup: impl FnOnce(&mut Chat),
    done: impl Fn(&Seen) -> bool + 'static,
) -> (Seen, Vec<u8>) {
    chat_round(mode, family, terminator, setup, done, true)
}

/// Reads until end of file; yields what it received.
async fn drain(mut stream: Box<dyn Stream>) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all).await;
    all
}

/// `echo_round`, with an echoing or a draining peer.
fn chat_round(
    mode: Mode,
    family: Family,
    terminator: impl Into<Terminator>,
    setup: impl FnOnce(&mut Chat),
    done: impl Fn(&Seen) -> bool + 'static,
    echoing: bool,
) -> (Seen, Vec<u8>) {
    let terminator = terminator.into();
    block_on(async move {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let (address, peer) = if echoing {
                    peer(family, echo).await
                } else {
                    peer(family, drain).await
                };
                let seen = Seen::default();
                let mut chat = Chat::new(terminator);
                setup(&mut chat);
                let client = Client {
                    seen: seen.clone(),
                    done: Box::new(done),
                };
                let map = Map::new();
                map.add(
                    connector(&address).unwrap(),
                    AsyncChat::with_chat(client, chat),
                )
                .unwrap();
                match mode {
                    Mode::Free => map.run().await.unwrap(),
                    // CPython's tests run `asyncore.loop(count=300)`: lock-step passes, each
                    // bounded; the map empties when the client closes.
                    Mode::LockStep => {
                        map.run_count(util::LIMIT, 100_000).await.unwrap();
                        assert!(map.is_empty(), "the client never closed");
                    }
                }
                let received = peer.await.unwrap();
                (seen, received)
            })
            .await
    })
}

const HELLO: &[u8] = b"hello world";
const NOT_DEAD: &[u8] = b"I'm not dead yet!";

fn records(n: usize) -> impl Fn(&Seen) -> bool {
    move |seen| seen.records.borrow().len() >= n
}

fn collected(n: usize) -> impl Fn(&Seen) -> bool {
    move |seen| seen.collected.get() >= n
}

/// test_line_terminator1/2/3 (B76, B79, B80, B81): terminators of 1, 2 and 3 bytes, read 1,
/// 2, 3 or 64 Ki bytes at a time, over every family.
#[test]
fn line_terminators_of_any_length_split_anywhere() {
    for mode in MODES {
        for family in FAMILIES {
            for terminator in [&b"\n"[..], b"\r\n", b"qqq"] {
                for in_size in [1, 2, 3, 65536] {
                    let data = [HELLO, terminator, NOT_DEAD, terminator].concat();
                    let (seen, _) = echo_round(
                        mode,
                        family,
                        terminator.to_vec(),
                        |chat| {
                            chat.set_ac_in_buffer_size(in_size);
                            chat.push(data);
                        },
                        records(2),
                    );
                    assert_eq!(
                        seen.records(),
                        ["hello world", "I'm not dead yet!"],
                        "{family:?} {terminator:?} reads of {in_size}"
                    );
                }
            }
        }
    }
}

/// test_numeric_terminator1/2 (B78, B71): a count gives one record of exactly that many
/// bytes; the count is 0 inside found_terminator and then frames nothing (asynchat's decay).
#[test]
fn numeric_terminator_then_unframed() {
    for mode in MODES {
        let data = b"hello world, I'm not dead yet!\n";
        for n in [1usize, 6] {
            for in_size in [1, 4, 65536] {
                let (seen, _) = echo_round(
                    mode,
                    Family::Inet,
                    n,
                    |chat| {
                        chat.set_ac_in_buffer_size(in_size);
                        chat.push(&data[..]);
                    },
                    collected(data.len()),
                );
                assert_eq!(
                    seen.records(),
                    [String::from_utf8_lossy(&data[..n])],
                    "n={n}"
                );
                let left = seen.left.borrow().clone();
                assert_eq!(
                    left.as_deref(),
                    Some(&data[n..]),
                    "the rest is collected, unframed"
                );
            }
        }
    }
}

/// test_none_terminator (B77): no terminator, an empty one and a count of 0 all collect
/// everything and never end a record.
#[test]
fn none_terminators_collect_everything() {
    for mode in MODES {
        for terminator in [
            Terminator::None,
            Terminator::from(b""),
            Terminator::Count(0),
        ] {
            let data = [HELLO, b"\n", NOT_DEAD].concat();
            let len = data.len();
            let (seen, _) = echo_round(
                mode,
                Family::Unix,
                terminator.clone(),
                |chat| chat.push(data),
                collected(len),
            );
            assert!(seen.records().is_empty(), "{terminator:?}");
            assert_eq!(seen.collected.get(), len);
        }
    }
}

/// test_simple_producer and test_string_producer (B85, B87, B92): producers give the same
/// records as a push; buffers and producers keep their order.
#[test]
fn producers_give_the_same_records() {
    for mode in MODES {
        let data = [HELLO, b"\n", NOT_DEAD, b"\n"].concat();
        let (seen, _) = echo_round(
            mode,
            Family::Inet,
            b"\n",
            |chat| chat.push_with_producer(SimpleProducer::new(data.clone(), 8)),
            records(2),
        );
        assert_eq!(seen.records(), ["hello world", "I'm not dead yet!"]);
        let (seen, _) = echo_round(
            mode,
            Family::Inet,
            b"\n",
            |chat| chat.push_with_producer(Bytes::from(data.clone())),
            records(2),
        );
        assert_eq!(seen.records(), ["hello world", "I'm not dead yet!"]);
        let (seen, received) = echo_round(
            mode,
            Family::Unix,
            b"\n",
            |chat| {
                chat.push("a");
                chat.push_with_producer(SimpleProducer::new("bcd", 1));
                chat.push("e");
                let mut parts =
                    vec![Bytes::from_static(b"fg"), Bytes::from_static(b"\n")].into_iter();
                chat.push_with_producer(move || parts.next().unwrap_or_default());
            },
            records(1),
        );
        assert_eq!(seen.records(), ["abcdefg"]);
        assert_eq!(received, b"abcdefg\n");
    }
}

/// test_empty_line (B79): consecutive terminators give an empty record.
#[test]
fn empty_line_is_an_empty_record() {
    for mode in MODES {
        let (seen, _) = echo_round(
            mode,
            Family::Inet6,
            b"\n",
            |chat| chat.push(&b"hello world\n\nI'm not dead yet!\n"[..]),
            records(3),
        );
        assert_eq!(seen.records(), ["hello world", "", "I'm not dead yet!"]);
    }
}

/// test_close_when_done (B90): everything pushed before close_when_done is sent, then the
/// channel closes (through handle_close); output pushed after it is never sent. (CPython's
/// peer echoes and checks that nothing came back; an echo to a closed socket resets the
/// connection and loses data, so this peer only reads, and checks every byte.)
#[test]
fn close_when_done_sends_everything_then_closes() {
    for mode in MODES {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let (seen, received) = chat_round(
            mode,
            Family::Inet,
            b"\n",
            |chat| {
                chat.push(data);
                chat.close_when_done();
                chat.push("never sent");
            },
            |_| false,
            false,
        );
        assert!(
            received == expected,
            "peer got {} of {} bytes",
            received.len(),
            expected.len()
        );
        assert!(seen.records().is_empty());
        assert!(seen.left.borrow().is_some(), "handle_close ran");
    }
}

/// A handler that answers handle_close with a goodbye larger than the socket holds and
/// `close_when_done` gets it all to a peer that starts reading late, then the channel closes by
/// itself (without a second handle_close), well before the grace period would have closed it.
/// Twice: when the graceful shutdown is what asks for handle_close, and when the peer's end of
/// file did, so that the shutdown finds the goodbye already on its way and must let it finish.
#[test]
fn goodbye_from_handle_close_reaches_a_slow_reader() {
    struct Farewell(Rc<Cell<usize>>);
    impl ChatHandler for Farewell {
        fn found_terminator(&mut self, _: &mut Chat, _: &mut Channel) -> io::Result<()> {
            Ok(())
        }
        fn handle_read_eof(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
            channel.request_close();
            Ok(())
        }
        fn handle_close(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
            self.0.set(self.0.get() + 1);
            chat.push(goodbye());
            chat.close_when_done();
            Ok(())
        }
    }
    fn goodbye() -> Vec<u8> {
        (0..1_000_000u32).map(|i| (i % 251) as u8).collect()
    }
    for peer_closes_first in [false, true] {
        let closes = Rc::new(Cell::new(0));
        let received = block_on(async {
            let map = Map::new();
            let (ours, mut peer) = socket_pair();
            map.add(ours, AsyncChat::new(Farewell(closes.clone()), b"\n"))
                .unwrap();
            if peer_closes_first {
                peer.shutdown(std::net::Shutdown::Write).unwrap();
                let closes = closes.clone();
                map.run_until(async move {
                    while closes.get() == 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                })
                .await
                .unwrap();
            }
            // The peer starts reading only once the shutdown has begun.
            let (go, ready) = std::sync::mpsc::channel::<()>();
            let reader = std::thread::spawn(move || {
                ready.recv().unwrap();
                let mut all = Vec::new();
                io::Read::read_to_end(&mut peer, &mut all).map(|_| all)
            });
            go.send(()).unwrap();
            // A grace period beyond the test's bound: only the channel closing itself ends this.
            map.shutdown(util::LIMIT * 2).await.unwrap();
            tokio::task::spawn_blocking(move || reader.join().unwrap())
                .await
                .unwrap()
                .unwrap()
        });
        assert_eq!(closes.get(), 1, "peer_closes_first: {peer_closes_first}");
        assert!(
            received == goodbye(),
            "peer_closes_first: {peer_closes_first}: peer got {} bytes of a 1000000-byte goodbye",
            received.len()
        );
    }
}

/// test_push (B84): a buffer larger than ac_out_buffer_size is sent in pieces, in order; a
/// huge record arrives whole with a raised record limit.
#[test]
fn push_with_short_and_huge_buffers() {
    for mode in MODES {
        let (seen, received) = echo_round(
            mode,
            Family::Inet,
            b"\n",
            |chat| {
                chat.set_ac_out_buffer_size(4);
                chat.push(&b"abcdefghij\n"[..]);
                assert_eq!(chat.queued_bytes(), 11);
            },
            records(1),
        );
        assert_eq!(seen.records(), ["abcdefghij"]);
        assert_eq!(received, b"abcdefghij\n");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let expected = big.clone();
        let (seen, _) = echo_round(
            mode,
            Family::Unix,
            b"\n",
            move |chat| {
                chat.set_max_frame_len(4 << 20);
                chat.push(big);
                chat.push("\n");
            },
            records(1),
        );
        assert!(
            seen.records.borrow()[0] == expected,
            "the huge record arrived intact"
        );
    }
}

/// B82: an unterminated last record is not a record; the default handle_read_eof closes
/// after the output is sent, leaving it collected.
#[test]
fn partial_last_record_is_not_a_record() {
    block_on(async {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let seen = Seen::default();
        let client = Client {
            seen: seen.clone(),
            done: Box::new(|_| false),
        };
        let map = Map::new();
        map.add(Channel::from_unix(ours), AsyncChat::new(client, b"\n"))
            .unwrap();
        let peer = async move {
            theirs.write_all(b"abc\nde").await.unwrap();
            theirs.shutdown().await.unwrap();
            let mut rest = Vec::new();
            theirs.read_to_end(&mut rest).await.unwrap();
            rest
        };
        let (served, rest) = tokio::join!(map.run(), peer);
        served.unwrap();
        assert!(rest.is_empty());
        assert_eq!(seen.records(), ["abc"]);
        assert_eq!(seen.left.borrow().as_deref(), Some(&b"de"[..]));
    });
}

/// A handler that changes the terminator inside found_terminator: "LEN n" then n bytes of
/// body, then lines again (B76: the change applies to bytes already read).
struct Switcher {
    records: Rc<RefCell<Vec<String>>>,
}

impl ChatHandler for Switcher {
    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let record = String::from_utf8_lossy(&chat.take_data()).into_owned();
        match chat.get_terminator() {
            Terminator::Count(0) => chat.set_terminator(b"\r\n"),
            _ => {
                if let Some(n) = record.strip_prefix("LEN ") {
                    let n: usize = n.parse().map_err(|_| io::ErrorKind::InvalidData)?;
                    chat.set_terminator(n);
                }
            }
        }
        if record == "QUIT" {
            channel.close();
        }
        self.records.borrow_mut().push(record);
        Ok(())
    }
}

#[test]
fn terminator_changed_mid_buffer_applies_to_buffered_input() {
    for in_size in [1, 2, 3, 7, 65536] {
        let records = block_on(async {
            let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
            let records = Rc::new(RefCell::new(Vec::new()));
            let mut chat = Chat::new(b"\r\n");
            chat.set_ac_in_buffer_size(in_size);
            let handler = Switcher {
                records: records.clone(),
            };
            let map = Map::new();
            map.add(
                Channel::from_unix(ours),
                AsyncChat::with_chat(handler, chat),
            )
            .unwrap();
            // One write: with large reads, everything is buffered before the first record.
            theirs
                .write_all(b"LEN 5\r\nab\r\ndTAIL\r\nLEN 0\r\nLEN 2\r\nxyQUIT\r\n")
                .await
                .unwrap();
            drop(theirs); // end of file ends the unframed rest
            map.run().await.unwrap();
            records.take()
        });
        // "LEN 0" sets a count of 0: no framing, so the rest is collected, unframed, until
        // the peer closes. Here QUIT never ends a record after it.
        assert_eq!(
            records,
            ["LEN 5", "ab\r\nd", "TAIL", "LEN 0"],
            "reads of {in_size}"
        );
    }
}

/// A record limit over a socket: a peer streaming 10 MiB without a terminator gets an
/// InvalidData error to handle_error and its connection closed; the chat never holds more
/// than the limit.
#[test]
fn endless_record_hits_the_limit() {
    for limit in [64 * 1024, 1000] {
        let (seen, _) = block_on(async move {
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async move {
                    let (address, peer) = peer(Family::Inet, move |mut stream| async move {
                        let block = vec![b'x'; 64 * 1024];
                        let mut sent = 0;
                        while sent < 10 << 20 {
                            if stream.write_all(&block).await.is_err() {
                                break;
                            }
                            sent += block.len();
                        }
                        sent.to_le_bytes().to_vec()
                    })
                    .await;
                    let seen = Seen::default();
                    let mut chat = Chat::new(b"\r\n");
                    chat.set_max_frame_len(limit);
                    let client = Client {
                        seen: seen.clone(),
                        done: Box::new(|_| false),
                    };
                    let map = Map::new();
                    map.add(
                        connector(&address).unwrap(),
                        AsyncChat::with_chat(client, chat),
                    )
                    .unwrap();
                    map.run().await.unwrap();
                    (seen, peer.await.unwrap())
                })
                .await
        });
        let errors = seen.errors.borrow();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind(), io::ErrorKind::InvalidData);
        let message = errors[0].to_string();
        assert!(
            message.contains(&format!("longer than {limit} bytes")),
            "{message}"
        );
        assert!(
            message.contains("\\r\\n"),
            "names the terminator: {message}"
        );
        assert!(seen.most_incoming.get() <= limit);
        assert!(seen.collected.get() < 10 << 20);
    }
}

/// The default handle_error logs and closes on a record that is too long.
#[test]
fn default_handle_error_closes_on_a_long_record() {
    struct Lines;
    impl ChatHandler for Lines {
        fn found_terminator(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
            chat.take_data();
            Ok(())
        }
    }
    block_on(async {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let mut chat = Chat::new(b"\n");
        chat.set_max_frame_len(10);
        let map = Map::new();
        map.add(Channel::from_unix(ours), AsyncChat::with_chat(Lines, chat))
            .unwrap();
        theirs.write_all(b"short\n0123456789A").await.unwrap();
        let peer = async move {
            let mut rest = Vec::new();
            let _ = theirs.read_to_end(&mut rest).await;
            rest
        };
        let (served, rest) = tokio::join!(map.run(), peer);
        served.unwrap();
        assert!(rest.is_empty());
    });
}

/// A handler that hands its connection over after an "UPGRADE" line, having pushed a reply.
struct Upgrader {
    taken: Rc<RefCell<Option<ChatStream>>>,
}

impl ChatHandler for Upgrader {
    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        if chat.take_data() == "UPGRADE" {
            chat.push("OK, ");
            chat.push_with_producer(SimpleProducer::new("go ahead\n", 3));
            *self.taken.borrow_mut() = Some(chat.take_stream(channel)?);
        }
        Ok(())
    }
}

/// Hand-over inside found_terminator: the rest of the read and the unsent reply come along,
/// byte for byte, into a tokio-util `Framed`.
#[test]
fn hand_over_inside_a_hook_keeps_every_byte() {
    use futures::{SinkExt, StreamExt};
    use tokio_util::codec::LinesCodec;
    for in_size in [1, 5, 65536] {
        block_on(async move {
            let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
            let taken = Rc::new(RefCell::new(None));
            let mut chat = Chat::new(b"\n");
            chat.set_ac_in_buffer_size(in_size);
            let map = Map::new();
            let handler = Upgrader {
                taken: taken.clone(),
            };
            map.add(
                Channel::from_unix(ours),
                AsyncChat::with_chat(handler, chat),
            )
            .unwrap();
            theirs.write_all(b"UPGRADE\nhello\nwor").await.unwrap();
            map.run().await.unwrap(); // ends when the hand-over closes the channel
            let stream = taken.take().expect("handed over");
            let mut framed = stream.into_framed(LinesCodec::new());
            SinkExt::<String>::flush(&mut framed).await.unwrap();
            let mut reply = [0; 12];
            theirs.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"OK, go ahead");
            theirs.write_all(b"ld\n").await.unwrap();
            assert_eq!(framed.next().await.unwrap().unwrap(), "hello");
            assert_eq!(framed.next().await.unwrap().unwrap(), "world");
        });
    }
}

/// A handler that signals when `n` bytes are collected.
struct Notifier {
    n: usize,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ChatHandler for Notifier {
    fn collect_incoming_data(&mut self, chat: &mut Chat, data: Bytes) -> io::Result<()> {
        chat.collect_incoming_data(data)?;
        if chat.incoming_len() >= self.n {
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(());
            }
        }
        Ok(())
    }
    fn found_terminator(&mut self, _: &mut Chat, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
}

/// Hand-over from native code through Map::with: the partial record comes along; output
/// pushed from outside and not sent yet too.
#[test]
fn hand_over_from_native_code_keeps_the_partial_record() {
    block_on(async {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let (ready, collected) = tokio::sync::oneshot::channel();
        let map = Map::new();
        let handler = Notifier {
            n: 7,
            ready: Some(ready),
        };
        let id = map
            .add(Channel::from_unix(ours), AsyncChat::new(handler, b"\r\n"))
            .unwrap();
        theirs.write_all(b"partial").await.unwrap();
        let native = async {
            collected.await.unwrap();
            map.with::<AsyncChat<Notifier>, _>(id, |chat, channel| {
                chat.push("unsent");
                chat.chat_mut().take_stream(channel)
            })
            .unwrap()
            .unwrap()
        };
        let (served, stream) = tokio::join!(map.run(), native);
        served.unwrap();
        assert_eq!(&stream.unparsed[..], b"partial");
        assert_eq!(&stream.unsent[..], b"unsent");
        assert!(map.is_empty());
    });
}

/// Native code on another thread pushes to a chat through a ChannelHandle; the reactor asks
/// writable() again and sends it.
#[test]
fn push_from_another_thread() {
    struct Quiet;
    impl ChatHandler for Quiet {
        fn found_terminator(&mut self, _: &mut Chat, _: &mut Channel) -> io::Result<()> {
            Ok(())
        }
    }
    block_on_multi(async {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let map = Map::new();
                let id = map
                    .add(Channel::from_unix(ours), AsyncChat::new(Quiet, b"\n"))
                    .unwrap();
                let handle = map.handle().channel(id);
                let pusher = tokio::spawn(async move {
                    handle
                        .call::<AsyncChat<Quiet>, _, _>(|chat, _| chat.push("from afar\n"))
                        .await
                        .unwrap();
                    let mut got = [0; 10];
                    theirs.read_exact(&mut got).await.unwrap();
                    got
                });
                let (served, got) = tokio::join!(
                    map.run_until(async { std::future::pending().await }),
                    pusher
                );
                let _ = served;
                assert_eq!(&got.unwrap(), b"from afar\n");
            })
            .await
    });
}

/// B74: writable while output is queued or a connect is pending; readable by default.
/// discard_buffers (B91) empties everything.
#[test]
fn writable_and_readable_rules() {
    struct Quiet;
    impl ChatHandler for Quiet {
        fn found_terminator(&mut self, _: &mut Chat, _: &mut Channel) -> io::Result<()> {
            Ok(())
        }
    }
    block_on(async {
        let (channel, _theirs) = socket_pair();
        let mut chat = AsyncChat::new(Quiet, b"\n");
        assert!(!chat.writable(&channel));
        assert!(chat.readable(&channel));
        chat.push("x");
        assert!(chat.writable(&channel));
        chat.chat_mut().discard_buffers();
        assert!(!chat.writable(&channel));
        assert_eq!(chat.chat().queued_bytes(), 0);
        chat.chat_mut().close_when_done();
        assert!(chat.writable(&channel), "the close marker is output");
        let (listener, address) = util::listener(Family::Inet).unwrap();
        let connecting = connector(&address).unwrap();
        let idle = AsyncChat::new(Quiet, b"\n");
        assert!(connecting.connecting() && idle.writable(&connecting));
        drop(listener);
    });
}

/// test_blockingioerror (B75): a read with nothing there is WouldBlock, which the reactor
/// drops; the handler's handle_error is not called.
#[test]
fn read_with_nothing_there_is_not_an_error() {
    let seen = Seen::default();
    block_on(async {
        let (mut channel, _theirs) = socket_pair();
        let mut chat = AsyncChat::new(
            Client {
                seen: seen.clone(),
                done: Box::new(|_| false),
            },
            b"\n",
        );
        let error = chat.handle_read(&mut channel).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    });
    assert!(seen.errors.borrow().is_empty());
}

/// Back-pressure: queued bytes are counted and the water marks pause and resume.
#[test]
fn queued_output_has_water_marks() {
    let mut chat = Chat::new(b"\n");
    chat.set_write_buffer_limits(10, 4).unwrap();
    chat.push(vec![0; 10]);
    assert!(!chat.is_paused());
    chat.push(vec![0; 1]);
    assert!(chat.is_paused());
    assert_eq!(chat.queued_bytes(), 11);
    assert_eq!(
        chat.set_write_buffer_limits(1, 2).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    chat.discard_buffers();
    assert!(!chat.is_paused());
}
