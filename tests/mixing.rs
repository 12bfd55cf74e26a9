//! Living beside native async code: deadlines, async work from callbacks (and its
//! cancellation), member tasks, close notifications and graceful shutdown.

mod util;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncore::{Channel, Dispatcher, Map};
use bytes::{Buf, BytesMut};
use tokio::net::UnixStream;
use util::{block_on, block_on_multi, socket_pair, Log};

/// Closes a client that stays silent for `IDLE`; every read re-arms the deadline.
struct IdleTimeout {
    log: Log,
}

const IDLE: Duration = Duration::from_millis(150);

impl Dispatcher for IdleTimeout {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        if !channel.recv(100)?.is_empty() {
            self.log.push("read");
            channel.set_timeout(IDLE);
        }
        Ok(())
    }
    fn handle_timeout(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push("timeout");
        channel.close();
        Ok(())
    }
}

/// The idle timeout closes the silent client, not the chatty one, and fires once.
#[test]
fn idle_timeout_closes_a_silent_client() {
    block_on(async {
        let map = Map::new();
        let silent_log = Log::default();
        let chatty_log = Log::default();
        let (mut silent, silent_peer) = socket_pair();
        let (mut chatty, mut chatty_peer) = socket_pair();
        silent.set_timeout(IDLE);
        chatty.set_timeout(IDLE);
        let silent = map
            .add(
                silent,
                IdleTimeout {
                    log: silent_log.clone(),
                },
            )
            .unwrap();
        let chatty = map
            .add(
                chatty,
                IdleTimeout {
                    log: chatty_log.clone(),
                },
            )
            .unwrap();
        let started = Instant::now();
        let talk = async {
            for _ in 0..6 {
                tokio::time::sleep(IDLE / 3).await;
                chatty_peer.write_all(b"hi").unwrap();
            }
        };
        map.run_until(talk).await.unwrap();
        assert!(!map.contains(silent) && map.contains(chatty));
        assert_eq!(silent_log.entries(), ["timeout"]);
        assert!(started.elapsed() >= IDLE);
        assert_eq!(chatty_log.count("timeout"), 0);
        // Now the chatty client falls silent too.
        map.run().await.unwrap();
        assert_eq!(chatty_log.count("timeout"), 1);
        let mut buf = [0u8; 1];
        assert_eq!(
            (&silent_peer).read(&mut buf).unwrap(),
            0,
            "the silent client was really closed"
        );
    });
}

/// A callback starts async work; its result comes back as a callback on the channel, while
/// another channel keeps being served.
#[test]
fn async_work_result_comes_back_as_a_callback() {
    struct Asker {
        log: Log,
    }
    impl Dispatcher for Asker {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            let question = channel.recv(100)?;
            if question.is_empty() {
                return Ok(());
            }
            self.log.push("asked");
            let slow = async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                question.to_ascii_uppercase()
            };
            channel.spawn(
                slow,
                |me: &mut Asker, channel: &mut Channel, answer: Vec<u8>| {
                    me.log.push("answered");
                    channel.send(&answer)?;
                    Ok(())
                },
            )?;
            Ok(())
        }
    }
    struct Echo(Log);
    impl Dispatcher for Echo {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            let data = channel.recv(100)?;
            if data.is_empty() {
                return Ok(());
            }
            self.0.push("echoed");
            channel.send(&data)?;
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (asker, asker_peer) = socket_pair();
        let (echo, echo_peer) = socket_pair();
        map.add(asker, Asker { log: log.clone() }).unwrap();
        map.add(echo, Echo(log.clone())).unwrap();
        let peers = tokio::task::spawn_blocking(move || {
            let (mut asker_peer, mut echo_peer) = (asker_peer, echo_peer);
            asker_peer.write_all(b"question").unwrap();
            echo_peer.write_all(b"ping").unwrap();
            let mut ping = [0u8; 4];
            echo_peer.read_exact(&mut ping).unwrap();
            let mut answer = [0u8; 8];
            asker_peer.read_exact(&mut answer).unwrap();
            (ping, answer)
        });
        let (done, finished) = tokio::sync::oneshot::channel();
        let peers = tokio::spawn(async move {
            let result = peers.await.unwrap();
            let _ = done.send(());
            result
        });
        map.run_until(async {
            let _ = finished.await;
        })
        .await
        .unwrap();
        let (ping, answer) = peers.await.unwrap();
        assert_eq!((&ping, &answer), (b"ping", b"QUESTION"));
        // The echo was served while the question was being worked on.
        assert_eq!(log.entries(), ["asked", "echoed", "answered"]);
        map.close_all();
    });
}

/// Sets its flag when dropped: shows that a future was cancelled.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Closing a channel aborts its work: the future is dropped and its callback never runs. So
/// does `Work::cancel`, and `call_later` runs only if not cancelled.
#[test]
fn work_is_cancelled_with_its_channel() {
    struct Worker {
        dropped: Arc<AtomicBool>,
        completed: Rc<Cell<usize>>,
    }
    impl Dispatcher for Worker {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn writable(&self, _: &Channel) -> bool {
            false
        }
    }
    block_on(async {
        let map = Map::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let completed = Rc::new(Cell::new(0));
        let (channel, _peer) = socket_pair();
        let id = map
            .add(
                channel,
                Worker {
                    dropped: dropped.clone(),
                    completed: completed.clone(),
                },
            )
            .unwrap();
        map.with(id, |worker: &mut Worker, channel: &mut Channel| {
            let flag = DropFlag(worker.dropped.clone());
            channel
                .spawn(
                    async move {
                        let _flag = flag;
                        std::future::pending::<()>().await
                    },
                    |me: &mut Worker, _: &mut Channel, ()| {
                        me.completed.set(me.completed.get() + 1);
                        Ok(())
                    },
                )
                .unwrap();
            let later = channel
                .call_later(
                    Duration::from_millis(10),
                    |me: &mut Worker, _: &mut Channel| {
                        me.completed.set(me.completed.get() + 100);
                        Ok(())
                    },
                )
                .unwrap();
            later.cancel();
            channel
                .call_later(
                    Duration::from_millis(20),
                    |me: &mut Worker, _: &mut Channel| {
                        me.completed.set(me.completed.get() + 10);
                        Ok(())
                    },
                )
                .unwrap();
        })
        .unwrap();
        map.run_until(tokio::time::sleep(Duration::from_millis(100)))
            .await
            .unwrap();
        assert_eq!(completed.get(), 10, "only the uncancelled call_later ran");
        assert!(!dropped.load(Ordering::SeqCst));
        map.close_channel(id);
        map.run_until(async {
            while !dropped.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        assert!(
            dropped.load(Ordering::SeqCst),
            "closing the channel dropped its work"
        );
        assert_eq!(completed.get(), 10);
    });
}

/// A native member task keeps the map running until it ends; close_all cancels members.
#[test]
fn member_tasks_count_toward_the_map() {
    block_on(async {
        let map = Map::new();
        let ran = Rc::new(Cell::new(false));
        let flag = ran.clone();
        map.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.set(true);
        });
        assert!(!map.is_empty() && map.len() == 1);
        let started = Instant::now();
        map.run().await.unwrap();
        assert!(ran.get() && map.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(50));

        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        map.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        let (channel, _peer) = socket_pair();
        struct Quiet;
        impl Dispatcher for Quiet {
            fn writable(&self, _: &Channel) -> bool {
                false
            }
        }
        map.add(channel, Quiet).unwrap();
        map.run_until(tokio::time::sleep(Duration::from_millis(20)))
            .await
            .unwrap();
        assert_eq!(map.len(), 2);
        map.close_all();
        assert!(map.is_empty());
        map.run().await.unwrap();
        tokio::task::yield_now().await;
        assert!(
            dropped.load(Ordering::SeqCst),
            "close_all cancelled the member task"
        );
    });
}

/// A native task on another thread is told when a channel closes.
#[test]
fn closed_notification_crosses_threads() {
    block_on_multi(async {
        let map = Map::new();
        let (channel, peer) = socket_pair();
        struct Reader;
        impl Dispatcher for Reader {
            fn writable(&self, _: &Channel) -> bool {
                false
            }
            fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
                channel.recv(100)?;
                Ok(())
            }
        }
        let id = map.add(channel, Reader).unwrap();
        let handle = map.handle().channel(id);
        let watcher = tokio::spawn(async move { handle.closed().await });
        // The peer leaves: end of file, the default handle_read_eof/handle_close close.
        let closer = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(peer);
        });
        map.run().await.unwrap();
        closer.await.unwrap();
        watcher.await.unwrap().unwrap();
        // Asking about a channel that is gone answers at once.
        let gone = map.handle().channel(id);
        let answer = tokio::spawn(async move { gone.closed().await });
        map.serve(async {
            while !answer.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
    });
}

/// Graceful shutdown: every channel gets handle_close; one with a lot of queued output
/// flushes it to a slow reader within the grace period; then the map is empty.
#[test]
fn graceful_shutdown_flushes_queued_output() {
    struct Sender {
        output: BytesMut,
        log: Log,
        closing: bool,
    }
    impl Dispatcher for Sender {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn writable(&self, _: &Channel) -> bool {
            !self.output.is_empty()
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            let sent = channel.send(&self.output)?;
            self.output.advance(sent);
            if self.closing && self.output.is_empty() {
                self.log.push("flushed");
                channel.close();
            }
            Ok(())
        }
        fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.log.push("handle_close");
            self.closing = true;
            if self.output.is_empty() {
                channel.close();
            }
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (channel, peer) = socket_pair();
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
        map.add(
            channel,
            Sender {
                output: BytesMut::from(&data[..]),
                log: log.clone(),
                closing: false,
            },
        )
        .unwrap();
        let token = map.shutdown_token();
        let reader = tokio::task::spawn_blocking(move || {
            // A slow reader: nothing is read until the shutdown has begun.
            std::thread::sleep(Duration::from_millis(50));
            let mut peer = peer;
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        // Run a little, then shut down while most of the output is still queued.
        map.run_until(tokio::time::sleep(Duration::from_millis(5)))
            .await
            .unwrap();
        assert!(!token.is_cancelled());
        map.shutdown(Duration::from_secs(5)).await.unwrap();
        assert!(token.is_cancelled() && map.is_empty());
        assert_eq!(log.entries(), ["handle_close", "flushed"]);
        let got = reader.await.unwrap();
        assert!(
            got == data,
            "received {} of {} bytes",
            got.len(),
            data.len()
        );
    });
}

/// A channel that never finishes flushing is closed when the grace period ends.
#[test]
fn shutdown_grace_is_a_bound() {
    struct Stubborn;
    impl Dispatcher for Stubborn {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_close(&mut self, _: &mut Channel) -> io::Result<()> {
            Ok(()) // never closes
        }
    }
    block_on(async {
        let map = Map::new();
        let (channel, _peer) = socket_pair();
        map.add(channel, Stubborn).unwrap();
        let started = Instant::now();
        map.shutdown(Duration::from_millis(50)).await.unwrap();
        assert!(map.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(50));
    });
}

/// The native task a dispatcher started after handing its stream over.
type Native = Rc<std::cell::RefCell<Option<tokio::task::JoinHandle<io::Result<Vec<u8>>>>>>;

/// Hand-over out of the map at a protocol switch: the dispatcher reads a line that arrives
/// together with the first bytes of the next protocol, takes the stream out, and a native task
/// carries on with the leftover bytes first; nothing is lost or reordered.
#[test]
fn handover_to_a_native_task_keeps_buffered_bytes() {
    struct Switcher {
        input: BytesMut,
        native: Native,
    }
    impl Dispatcher for Switcher {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            let data = channel.recv(4096)?;
            self.input.extend_from_slice(&data);
            if let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                assert_eq!(&self.input[..end], b"UPGRADE");
                self.input.advance(end + 1);
                let leftover = self.input.split().freeze();
                let mut stream = channel.take_stream()?;
                // The native side: everything after the switch, leftover bytes first.
                *self.native.borrow_mut() = Some(tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut rest = leftover.to_vec();
                    stream.read_to_end(&mut rest).await?;
                    Ok(rest)
                }));
            }
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let native = Native::default();
        let (channel, mut peer) = socket_pair();
        let id = map
            .add(
                channel,
                Switcher {
                    input: BytesMut::new(),
                    native: native.clone(),
                },
            )
            .unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
        let sent = payload.clone();
        let writer = std::thread::spawn(move || {
            // The line and the first bytes of the new protocol in one write.
            let mut first = b"UPGRADE\n".to_vec();
            first.extend_from_slice(&sent[..1000]);
            peer.write_all(&first).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            peer.write_all(&sent[1000..]).unwrap();
        });
        map.run().await.unwrap(); // the map empties when the channel leaves it
        assert!(!map.contains(id));
        let task = native
            .borrow_mut()
            .take()
            .expect("the dispatcher started the native task");
        writer.join().unwrap(); // the peer closes when the writer ends
        let received = task.await.unwrap().unwrap();
        assert!(
            received == payload,
            "received {} of {} bytes, or reordered",
            received.len(),
            payload.len()
        );
    });
}

/// Hand-over into the map: a native task reads a header through a buffered reader (which reads
/// ahead), then adopts the stream as a channel whose dispatcher starts from the read-ahead bytes.
#[test]
fn native_stream_adopted_with_its_read_ahead() {
    struct Collector {
        received: Rc<std::cell::RefCell<Vec<u8>>>,
    }
    impl Dispatcher for Collector {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            let data = channel.recv(4096)?;
            self.received.borrow_mut().extend_from_slice(&data);
            Ok(())
        }
    }
    block_on(async {
        use tokio::io::AsyncBufReadExt;
        let map = Map::new();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 247) as u8).collect();
        let sent = payload.clone();
        let writer = std::thread::spawn(move || {
            let mut theirs = theirs.into_std().unwrap();
            theirs.set_nonblocking(false).unwrap();
            let mut first = b"HELLO native\n".to_vec();
            first.extend_from_slice(&sent);
            theirs.write_all(&first).unwrap();
        });
        let mut reader = tokio::io::BufReader::new(ours);
        let mut header = String::new();
        reader.read_line(&mut header).await.unwrap();
        assert_eq!(header, "HELLO native\n");
        let read_ahead = reader.buffer().to_vec();
        let stream = reader.into_inner();
        let received = Rc::new(std::cell::RefCell::new(read_ahead));
        map.add(
            Channel::from_unix(stream),
            Collector {
                received: received.clone(),
            },
        )
        .unwrap();
        writer.join().unwrap(); // then the peer closes: end of file empties the map
        map.run().await.unwrap();
        let received = received.borrow();
        assert!(
            *received == payload,
            "received {} of {} bytes",
            received.len(),
            payload.len()
        );
    });
}
