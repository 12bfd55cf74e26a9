//! asyncore's interest rule across dispatchers: `readable()` and `writable()` are asked before
//! every wait, so a dispatcher whose interest depends on state another dispatcher changes is
//! never left waiting for the wrong thing. Also the explicit wake for dispatchers that say
//! their interest is their own, the audit that names a stale one, and the warning for a map
//! that nothing runs.

mod util;

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use asyncore::{Address, Channel, Dispatcher, Family, InterestScope, Map};
use bytes::{Buf, BytesMut};
use util::log::Captured;
use util::{block_on, block_on_multi, listener, LIMIT};

// ---------------------------------------------------------------------------------------------
// The port forwarder of `examples/port_forwarder`, ported line for line from the classic asyncore
// recipe: a receiver (the client's connection) and a sender (the connection to the remote end)
// share two buffers; each one's `writable()` reads the buffer the other one's `handle_read`
// fills. No wake calls.

#[path = "../examples/port_forwarder/forwarder.rs"]
mod forwarder;
use forwarder::Forwarder;

async fn forward_one_mebibyte() {
    let (remote, remote_thread) = util::complement_server(1);
    let remote = Address::Inet(remote);
    let (server, address) = listener(Family::Inet).unwrap();
    let map = Map::new();
    map.add(server, Forwarder { remote }).unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    let expected: Vec<u8> = data.iter().map(|b| !b).collect();
    let forwarder = address.as_inet().unwrap();
    let client = std::thread::spawn(move || util::exchange(forwarder, data));
    let answer = util::run_until_done(&map, client).await;
    assert_eq!(answer.len(), expected.len());
    assert!(answer == expected, "the forwarded bytes differ");
    map.close_all();
    remote_thread.join().unwrap();
}

/// The forwarder, unchanged from asyncore, passes 1 MiB both ways on a current-thread runtime.
#[test]
fn a_faithful_forwarder_port_passes_data_both_ways() {
    for _ in 0..3 {
        block_on(forward_one_mebibyte());
    }
}

/// The same with the map on the main thread of a multi-thread runtime, whose I/O driver runs
/// on the worker threads.
#[test]
fn a_faithful_forwarder_port_passes_data_both_ways_in_a_multi_thread_runtime() {
    for _ in 0..3 {
        block_on_multi(forward_one_mebibyte());
    }
}

// ---------------------------------------------------------------------------------------------
// Scopes, wakes, and the audit

/// Writes what native code puts in a shared buffer; its interest is declared its own or not.
struct Writer {
    pending: Rc<RefCell<BytesMut>>,
    scope: InterestScope,
    asked: Rc<std::cell::Cell<usize>>,
}

impl Dispatcher for Writer {
    fn interest_scope(&self) -> InterestScope {
        self.scope
    }
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, _: &Channel) -> bool {
        self.asked.set(self.asked.get() + 1);
        !self.pending.borrow().is_empty()
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let mut pending = self.pending.borrow_mut();
        let sent = channel.send(&pending)?;
        pending.advance(sent);
        Ok(())
    }
}

/// A member task fills the writer's buffer after the writer has started waiting; `wake`
/// says whether it then calls `Map::wake`. Returns what the peer read and the warnings logged.
fn fill_from_a_member_task(scope: InterestScope, wake: bool) -> (Vec<u8>, String) {
    let (answer, warnings) = fill_from_a_member_task_on(scope, wake, false);
    let (on_multi, more) = fill_from_a_member_task_on(scope, wake, true);
    assert_eq!(answer, on_multi, "the multi-thread runtime");
    (answer, warnings + &more)
}

/// The same on the current-thread runtime or (`multi`) on the main thread of a multi-thread one.
fn fill_from_a_member_task_on(scope: InterestScope, wake: bool, multi: bool) -> (Vec<u8>, String) {
    let run = |test: std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>>>>| {
        if multi {
            block_on_multi(test)
        } else {
            block_on(test)
        }
    };
    let captured = Captured::default();
    let answer =
        tracing::dispatcher::with_default(&captured.dispatch(tracing::Level::WARN), || {
            run(Box::pin(async {
                let (channel, mut peer) = util::socket_pair();
                let map = Map::new();
                let pending = Rc::new(RefCell::new(BytesMut::new()));
                let asked = Rc::new(std::cell::Cell::new(0));
                let id = map
                    .add(
                        channel,
                        Writer {
                            pending: pending.clone(),
                            scope,
                            asked: asked.clone(),
                        },
                    )
                    .unwrap();
                let member_map = map.clone();
                map.spawn(async move {
                    // Let the writer ask for its interest (nothing to write) and start waiting.
                    while asked.get() == 0 {
                        tokio::task::yield_now().await;
                    }
                    tokio::task::yield_now().await;
                    pending
                        .borrow_mut()
                        .extend_from_slice(b"filled by native code");
                    if wake {
                        assert!(member_map.wake(id));
                    }
                });
                let reader = std::thread::spawn(move || {
                    let mut answer = vec![0; b"filled by native code".len()];
                    peer.read_exact(&mut answer).map(|()| answer)
                });
                let answer = util::run_until_done(&map, reader).await;
                map.close_all();
                answer.expect("the peer got the bytes")
            }))
        });
    (answer, captured.text())
}

/// A `Shared` dispatcher (the default) hears of state a member task changed, with no wake.
#[test]
fn shared_scope_channels_see_what_native_tasks_change() {
    let (answer, warnings) = fill_from_a_member_task(InterestScope::Shared, false);
    assert_eq!(answer, b"filled by native code");
    assert!(!warnings.contains("stale interest"), "{warnings}");
}

/// An `Own` dispatcher is asked again on `Map::wake`, without the audit's help.
#[test]
fn map_wake_asks_an_own_scope_channel_again() {
    let (answer, warnings) = fill_from_a_member_task(InterestScope::Own, true);
    assert_eq!(answer, b"filled by native code");
    assert!(!warnings.contains("stale interest"), "{warnings}");
}

/// An `Own` dispatcher whose state changed with no wake is found by the audit, woken, and
/// named in a warning that says what to do.
#[test]
fn a_stale_own_scope_channel_is_named_and_woken() {
    let (answer, warnings) = fill_from_a_member_task(InterestScope::Own, false);
    assert_eq!(answer, b"filled by native code");
    assert!(warnings.contains("stale interest"), "{warnings:?}");
    assert!(warnings.contains("Map::wake"), "{warnings}");
}

/// Echoes, with its interest declared its own.
struct Echo;

impl Dispatcher for Echo {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own
    }
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(4096)?;
        channel.send(&data)?;
        Ok(())
    }
}

/// Idle channels of both scopes beside an echo connection: the `Shared` one is asked after
/// each of the echo's callbacks, the `Own` one is not.
#[test]
fn own_scope_channels_are_not_asked_on_others_behalf() {
    const ROUNDS: usize = 200;
    block_on(async {
        let map = Map::new();
        let mut idle_peers = Vec::new();
        let mut counts = Vec::new();
        for scope in [InterestScope::Shared, InterestScope::Own] {
            let (channel, peer) = util::socket_pair();
            let asked = Rc::new(std::cell::Cell::new(0));
            let pending = Rc::new(RefCell::new(BytesMut::new()));
            map.add(
                channel,
                Writer {
                    pending,
                    scope,
                    asked: asked.clone(),
                },
            )
            .unwrap();
            idle_peers.push(peer);
            counts.push(asked);
        }
        let (channel, mut peer) = util::socket_pair();
        map.add(channel, Echo).unwrap();
        let talker = std::thread::spawn(move || {
            for round in 0..ROUNDS {
                let message = format!("{round:>8}");
                peer.write_all(message.as_bytes()).unwrap();
                let mut echo = [0; 8];
                peer.read_exact(&mut echo).unwrap();
                assert_eq!(&echo, message.as_bytes());
            }
        });
        util::run_until_done(&map, talker).await;
        let (shared, own) = (counts[0].get(), counts[1].get());
        assert!(
            shared >= ROUNDS,
            "the Shared channel was asked {shared} times"
        );
        assert!(own < ROUNDS / 10, "the Own channel was asked {own} times");
        map.close_all();
    });
}

/// `asyncore::add` in a task spawned on a multi-thread runtime puts the channel in a worker
/// thread's default map, which nothing can run: a warning names the channel and the fix.
#[test]
fn adding_to_a_worker_threads_default_map_is_loud() {
    let captured = Captured::default();
    let dispatch = captured.dispatch(tracing::Level::WARN);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // Leaked on purpose: the subscriber stays the worker thread's default until it ends.
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        })
        .build()
        .unwrap();
    let id = runtime.block_on(async {
        tokio::spawn(async {
            let (channel, _) = listener(Family::Inet).unwrap();
            asyncore::add(channel, Echo).unwrap()
        })
        .await
        .unwrap()
    });
    let deadline = std::time::Instant::now() + LIMIT;
    while !captured.text().contains("nothing has run that map") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning within the bound"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let warning = captured.text();
    assert!(warning.contains(&id.to_string()), "{warning}");
    assert!(warning.contains("worker thread"), "{warning}");
    runtime.shutdown_timeout(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// Work already buffered

/// Answers each record with the record and a `|`.
struct Records;

impl asyncore::chat::ChatHandler for Records {
    fn found_terminator(
        &mut self,
        chat: &mut asyncore::chat::Chat,
        _: &mut Channel,
    ) -> io::Result<()> {
        let mut record = chat.take_data().to_vec();
        record.push(b'|');
        chat.push(record);
        Ok(())
    }
}

/// Input held back by the framer (a possible start of the terminator) is framed as soon as
/// native code changes the terminator, without waiting for the peer to send more.
async fn terminator_change_frames_buffered_input() {
    use asyncore::chat::AsyncChat;
    type Chat = AsyncChat<Records>;
    let (channel, mut peer) = util::socket_pair();
    let map = Map::new();
    let id = map.add(channel, Chat::new(Records, b"END")).unwrap();
    peer.write_all(b"abcEN").unwrap();
    let member = map.clone();
    map.spawn(async move {
        // Wait until the chat has read everything: "abc" collected, "EN" held back.
        loop {
            let held = member.with(id, |chat: &mut Chat, _| chat.chat().framer().buffered());
            if held.unwrap() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        member
            .with(id, |chat: &mut Chat, _| {
                chat.chat_mut().set_terminator(b"N")
            })
            .unwrap();
    });
    let reader = std::thread::spawn(move || {
        let mut answer = [0; 5];
        peer.read_exact(&mut answer).map(|()| answer)
    });
    let answer = util::run_until_done(&map, reader)
        .await
        .expect("the answer came without more input");
    assert_eq!(&answer, b"abcE|");
    map.close_all();
}

#[test]
fn buffered_chat_input_is_framed_without_new_bytes() {
    for _ in 0..5 {
        block_on(terminator_change_frames_buffered_input());
        block_on_multi(terminator_change_frames_buffered_input());
    }
}

// ---------------------------------------------------------------------------------------------
// Every way state reaches a channel: a deadline, finished async work, a handle's call. Each
// fills a buffer that another channel's `writable()` reads; that channel (default scope) must
// send it, round after round, on both runtimes.

/// Holds the shared buffer; its own socket stays silent.
struct Producer {
    pending: Rc<RefCell<BytesMut>>,
    round: usize,
}

impl Producer {
    fn produce(&mut self) {
        self.round += 1;
        let line = format!("{:>8}\n", self.round);
        self.pending.borrow_mut().extend_from_slice(line.as_bytes());
    }
}

impl Dispatcher for Producer {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(64)?;
        Ok(())
    }
    fn handle_timeout(&mut self, _: &mut Channel) -> io::Result<()> {
        self.produce();
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Path {
    Deadline,
    Work,
    HandleCall,
}

async fn rounds_through(path: Path, rounds: usize) {
    let map = Map::new();
    let pending = Rc::new(RefCell::new(BytesMut::new()));
    let (writer, mut writer_peer) = util::socket_pair();
    map.add(
        writer,
        Writer {
            pending: pending.clone(),
            scope: InterestScope::Shared,
            asked: Rc::default(),
        },
    )
    .unwrap();
    let (producer, producer_peer) = util::socket_pair();
    let producer_id = map.add(producer, Producer { pending, round: 0 }).unwrap();
    let handle = map.handle().channel(producer_id);
    // The peer asks for each round over a std channel once it has read the previous one.
    let (ask, asked) = tokio::sync::mpsc::unbounded_channel::<()>();
    let reader = std::thread::spawn(move || {
        for round in 1..=rounds {
            ask.send(()).unwrap();
            let mut line = [0; 9];
            writer_peer.read_exact(&mut line)?;
            assert_eq!(line, *format!("{round:>8}\n").as_bytes(), "round {round}");
        }
        drop(producer_peer);
        io::Result::Ok(())
    });
    let member = map.clone();
    let driver = async move {
        let mut asked = asked;
        while asked.recv().await.is_some() {
            match path {
                Path::Deadline => member
                    .with(producer_id, |_: &mut Producer, channel| {
                        channel.set_timeout(Duration::from_micros(200))
                    })
                    .unwrap(),
                Path::Work => member
                    .with(producer_id, |_: &mut Producer, channel| {
                        channel
                            .spawn(tokio::task::yield_now(), |p: &mut Producer, _, ()| {
                                p.produce();
                                Ok(())
                            })
                            .map(drop)
                    })
                    .unwrap()
                    .unwrap(),
                Path::HandleCall => {
                    let handle = handle.clone();
                    // From another thread, as native code would.
                    tokio::spawn(async move {
                        handle
                            .call(|p: &mut Producer, _| p.produce())
                            .await
                            .unwrap();
                    })
                    .await
                    .unwrap();
                }
            }
        }
    };
    map.spawn(driver);
    util::run_until_done(&map, reader)
        .await
        .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    map.close_all();
}

#[test]
fn a_deadline_reaches_other_channels_interest() {
    block_on(rounds_through(Path::Deadline, 200));
    block_on_multi(rounds_through(Path::Deadline, 200));
}

#[test]
fn finished_work_reaches_other_channels_interest() {
    block_on(rounds_through(Path::Work, 500));
    block_on_multi(rounds_through(Path::Work, 500));
}

#[test]
fn a_handle_call_reaches_other_channels_interest() {
    block_on_multi(rounds_through(Path::HandleCall, 500));
}

/// A handle's request to a map that is not running waits for its next run, and says so if
/// that takes long; then it is answered as usual.
#[test]
fn a_request_to_a_map_nobody_runs_is_loud() {
    let captured = Captured::default();
    let (handles, handle) = std::sync::mpsc::channel();
    let (go, start) = std::sync::mpsc::channel::<()>();
    let (answered, stop) = tokio::sync::oneshot::channel::<()>();
    let map_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let map = Map::new();
            handles.send(map.handle()).unwrap();
            start.recv_timeout(LIMIT).expect("told to run");
            map.serve(async {
                let _ = stop.await;
            })
            .await
        })
    });
    let handle: asyncore::MapHandle = handle.recv().unwrap();
    let dispatch = captured.dispatch(tracing::Level::WARN);
    let asker = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            block_on(async {
                let len = handle.query(|map| map.len()).await.unwrap();
                let _ = answered.send(());
                len
            })
        })
    });
    let deadline = std::time::Instant::now() + LIMIT;
    while !captured
        .text()
        .contains("nothing has run that map since it was sent")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning within the bound: {:?}",
            captured.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    go.send(()).unwrap();
    assert_eq!(asker.join().unwrap(), 0);
    map_thread.join().unwrap().unwrap();
}

/// With the audit turned off, a stale `Own` channel is left alone (no wake, no warning) until
/// `Map::wake`; turned on again with a short interval, the audit finds the next one.
#[test]
fn the_audit_can_be_turned_off_and_on() {
    audit_off_and_on(false);
}

/// The same with the map on the main thread of a multi-thread runtime, whose I/O driver and
/// timers run on the workers.
#[test]
fn the_audit_can_be_turned_off_and_on_multi_thread() {
    audit_off_and_on(true);
}

fn audit_off_and_on(multi_thread: bool) {
    let captured = Captured::default();
    tracing::dispatcher::with_default(&captured.dispatch(tracing::Level::WARN), || {
        let test = async {
            let (channel, peer) = util::socket_pair();
            peer.set_nonblocking(true).unwrap();
            let map = Map::new();
            map.set_interest_audit(None);
            let pending = Rc::new(RefCell::new(BytesMut::new()));
            let writer = Writer {
                pending: pending.clone(),
                scope: InterestScope::Own,
                asked: Rc::default(),
            };
            let id = map.add(channel, writer).unwrap();
            // Let the writer wait with nothing to write, then change its state behind its back.
            let settle = map.run_until(tokio::time::sleep(Duration::from_millis(50)));
            settle.await.unwrap();
            pending.borrow_mut().extend_from_slice(b"one");
            // Longer than the default audit interval: nothing rescues it.
            let quiet = map.run_until(tokio::time::sleep(Duration::from_millis(1500)));
            quiet.await.unwrap();
            let mut byte = [0; 8];
            let read = (&peer).read(&mut byte);
            assert!(read.is_err(), "the stale channel wrote: {read:?}");
            assert!(!captured.text().contains("stale interest"));
            // An audit every 20 ms finds it.
            map.set_interest_audit(Some(Duration::from_millis(20)));
            let mut got = Vec::new();
            while got.len() < 3 {
                let step = map.run_until(tokio::time::sleep(Duration::from_millis(10)));
                step.await.unwrap();
                match (&peer).read(&mut byte) {
                    Ok(n) => got.extend_from_slice(&byte[..n]),
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
                }
            }
            assert_eq!(got, b"one");
            assert!(
                captured.text().contains("stale interest"),
                "{}",
                captured.text()
            );
            assert!(map.wake(id));
            map.close_all();
        };
        if multi_thread {
            block_on_multi(test)
        } else {
            block_on(test)
        }
    });
}
