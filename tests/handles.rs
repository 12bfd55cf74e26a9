//! Handles: native tasks on other runtime threads reach a map and its channels, on both the
//! current-thread and the multi-thread runtime.

mod util;

use std::io::{self, Read, Write};
use std::time::Duration;

use asyncore::{Channel, Dispatcher, Map};
use bytes::{Buf, BytesMut};
use tokio::net::UnixStream;
use util::{block_on, block_on_multi};

/// Writes whatever it is given, from `outbox`, when writable.
struct Outbox {
    outbox: BytesMut,
    thread: String,
}

impl Dispatcher for Outbox {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, _: &Channel) -> bool {
        !self.outbox.is_empty()
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = channel.send(&self.outbox)?;
        self.outbox.advance(sent);
        Ok(())
    }
}

/// A native task on a worker thread adds a channel through a factory, hands it work through a
/// closure (whose effect, new output, makes the channel writable), reads the result back, and
/// finally closes everything and waits for the map to empty.
async fn cross_thread_round_trip() {
    let map = Map::new();
    let handle = map.handle();
    let (theirs_tx, theirs_rx) = std::sync::mpsc::channel();
    let native = tokio::spawn(async move {
        let id = handle
            .add(move || {
                let (ours, theirs) = UnixStream::pair()?;
                theirs_tx.send(theirs.into_std()?).unwrap();
                let thread = format!("{:?}", std::thread::current().id());
                Ok((
                    Channel::from_unix(ours),
                    Outbox {
                        outbox: BytesMut::new(),
                        thread,
                    },
                ))
            })
            .await
            .unwrap();
        let channel = handle.channel(id);
        let map_thread = channel
            .call(|outbox: &mut Outbox, _: &mut Channel| {
                outbox.outbox.extend_from_slice(b"hello from a native task");
                outbox.thread.clone()
            })
            .await
            .unwrap();
        let mut peer = theirs_rx.recv().unwrap();
        peer.set_nonblocking(false).unwrap();
        peer.set_read_timeout(Some(util::LIMIT)).unwrap();
        let mut got = [0u8; 24];
        tokio::task::spawn_blocking(move || {
            peer.read_exact(&mut got).unwrap();
            got
        })
        .await
        .map(|got| assert_eq!(&got, b"hello from a native task"))
        .unwrap();
        // Wrong type and unknown ids are clear errors.
        let wrong = channel
            .call(|_: &mut Wrong, _: &mut Channel| ())
            .await
            .unwrap_err();
        assert_eq!(wrong.kind(), io::ErrorKind::InvalidInput, "{wrong}");
        channel.close().await.unwrap();
        assert_eq!(
            channel.close().await.unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        handle.wait_empty().await;
        map_thread
    });
    // The map serves while the native task works; it has no channel at first, so serve it
    // until the task is done rather than run it until empty.
    map.serve(async {
        while !native.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    let map_thread = native.await.unwrap();
    assert_eq!(
        map_thread,
        format!("{:?}", std::thread::current().id()),
        "closures run on the map's thread"
    );
}

struct Wrong;
impl Dispatcher for Wrong {}

#[test]
fn round_trip_on_current_thread_runtime() {
    block_on(cross_thread_round_trip());
}

#[test]
fn round_trip_from_multi_thread_workers() {
    block_on_multi(cross_thread_round_trip());
}

/// A handle outliving its map gets BrokenPipe, and waiting for emptiness ends.
#[test]
fn handle_of_a_dropped_map() {
    block_on_multi(async {
        let map = Map::new();
        let handle = map.handle();
        drop(map);
        let error = tokio::spawn(async move {
            handle.wait_empty().await;
            handle.query(|map| map.len()).await.unwrap_err()
        })
        .await
        .unwrap();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    });
}

/// close_all from a native task empties a busy map; the map's run returns.
#[test]
fn close_all_from_a_native_task() {
    block_on_multi(async {
        let map = Map::new();
        let mut peers = Vec::new();
        for _ in 0..10 {
            let (ours, theirs) = UnixStream::pair().unwrap();
            peers.push(theirs);
            map.add(
                Channel::from_unix(ours),
                Outbox {
                    outbox: BytesMut::new(),
                    thread: String::new(),
                },
            )
            .unwrap();
        }
        let handle = map.handle();
        assert!(!handle.is_empty());
        let closer = tokio::spawn(async move { handle.close_all().await });
        map.run().await.unwrap();
        closer.await.unwrap().unwrap();
        assert!(map.is_empty());
        // Every peer sees end of file: the sockets were really closed.
        for peer in peers {
            let mut peer = peer.into_std().unwrap();
            peer.set_nonblocking(false).unwrap();
            let mut buf = [0u8; 1];
            assert_eq!(peer.read(&mut buf).unwrap(), 0);
            let _ = peer.write(b"x");
        }
    });
}

/// A closure that panics is contained: the caller gets an error, the channel's handle_error
/// runs (closing it), and later calls find no channel.
#[test]
fn a_panicking_closure_is_contained() {
    block_on_multi(async {
        let map = Map::new();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let id = map
            .add(
                Channel::from_unix(ours),
                Outbox {
                    outbox: BytesMut::new(),
                    thread: String::new(),
                },
            )
            .unwrap();
        let channel = map.handle().channel(id);
        let native = tokio::spawn(async move {
            let panicked = channel
                .call(|_: &mut Outbox, _: &mut Channel| panic!("boom"))
                .await
                .unwrap_err();
            let after = channel
                .call(|_: &mut Outbox, _: &mut Channel| ())
                .await
                .unwrap_err();
            (panicked, after)
        });
        map.serve(async {
            while !native.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        let (panicked, after) = native.await.unwrap();
        assert_eq!(panicked.kind(), io::ErrorKind::Other);
        assert!(panicked.to_string().contains("boom"), "{panicked}");
        assert_eq!(after.kind(), io::ErrorKind::NotFound, "{after}");
        assert!(
            map.is_empty(),
            "the default handle_error closed the channel"
        );
    });
}
