//! Snapshots of a map (`Map::snapshot`, `MapHandle::snapshot`) against states the tests set up
//! over real sockets: a connecting channel, a spinning writer, a full output queue, a channel
//! whose peer stopped reading (stalled), and the map's totals, closed channels included.

mod util;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{
    Address, Buffered, Channel, ChannelState, Dispatcher, Interest, InterestScope, Map, Ready,
    SendBuffer,
};
use bytes::{Buf, Bytes};
use tokio::sync::Notify;
use util::{block_on, block_on_multi, socket_pair, LIMIT};

/// Records nothing, reads what comes, never writes.
struct Quiet;

impl Dispatcher for Quiet {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(65536)?;
        Ok(())
    }
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

/// A TCP listener whose backlog is full: a connect to it stays pending (its SYN is dropped).
fn full_listener() -> (socket2::Socket, std::net::TcpStream, std::net::SocketAddr) {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap(); // room for one connection, never accepted
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect_timeout(&address, LIMIT).unwrap();
    (listener, filler, address)
}

#[test]
fn a_connecting_channel() {
    block_on(async {
        let (_listener, _filler, address) = full_listener();
        let map = Map::new();
        let mut channel = Channel::create_socket(asyncore::Family::Inet).unwrap();
        channel.connect(address).unwrap();
        let id = map.add(channel, Quiet).unwrap();

        // Before the map ever ran: connecting, nothing asked yet.
        let before = map.snapshot();
        let seen = before.channel(id).unwrap();
        assert_eq!(seen.state, ChannelState::Connecting);
        assert_eq!(seen.interest, Interest::NONE);
        assert!(!seen.waiting);
        assert_eq!(seen.idle, None, "no earlier snapshot saw it");

        // The task asks (writable() is false, but a pending connect always waits for WRITE)
        // and waits: the connect does not complete, since the listener's backlog is full.
        map.run_until(tokio::task::yield_now()).await.unwrap();
        let snapshot = map.snapshot();
        let seen = snapshot.channel(id).unwrap();
        assert_eq!(seen.state, ChannelState::Connecting);
        assert_eq!(seen.interest, Interest::READ | Interest::WRITE);
        assert!(seen.waiting);
        assert_eq!(seen.ready, Ready::NONE);
        assert_eq!(seen.callbacks, 0);
        assert_eq!(seen.peer, Some(Address::Inet(address)));
        assert!(seen.fd.is_some());
        assert!(seen.dispatcher.ends_with("Quiet"));
        assert_eq!(seen.dispatcher_name(), "Quiet");
        assert_eq!(seen.scope, InterestScope::Shared);
        assert!(!seen.spinning);
        // No callback since the previous snapshot while it waits to write: a connect that hangs.
        assert!(seen.stalled);
        assert!(seen.idle.is_some());
        assert_eq!(snapshot.totals.channels, 1);
        assert_eq!(snapshot.totals.stalled, 1);
        map.close_all();
    });
}

/// asyncore's defaults: always writable, and `handle_write` that writes nothing.
struct Spinner {
    writes: Rc<Cell<u32>>,
    enough: Rc<Notify>,
}

impl Dispatcher for Spinner {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_write(&mut self, _: &mut Channel) -> io::Result<()> {
        self.writes.set(self.writes.get() + 1);
        if self.writes.get() == 3000 {
            self.enough.notify_one();
        }
        Ok(())
    }
}

type Body = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

#[test]
fn a_spinning_writer() {
    for run in [block_on::<Body>, block_on_multi::<Body>] {
        run(Box::pin(async {
            let map = Map::new();
            let (ours, _peer) = socket_pair();
            let writes = Rc::new(Cell::new(0));
            let enough = Rc::new(Notify::new());
            let spinner = Spinner {
                writes: writes.clone(),
                enough: enough.clone(),
            };
            let id = map.add(ours, spinner).unwrap();
            let (quiet, _other) = socket_pair();
            let calm = map.add(quiet, Quiet).unwrap();
            map.run_until(enough.notified()).await.unwrap();

            let snapshot = map.snapshot();
            let seen = snapshot.channel(id).unwrap();
            assert!(seen.spinning, "{seen:#?}");
            assert!(seen.spins >= 1024, "{seen:#?}");
            assert_eq!(seen.callbacks, u64::from(writes.get()));
            assert_eq!(seen.interest, Interest::WRITE);
            assert!(seen.ready.is_write());
            assert_eq!(seen.bytes_sent, 0);
            assert!(!snapshot.channel(calm).unwrap().spinning);
            assert_eq!(snapshot.totals.spinning, 1);
            assert!(snapshot.totals.callbacks >= 3000);

            // Nothing ran since: the detector's count stands, but the channel is not spinning.
            let later = map.snapshot();
            let seen = later.channel(id).unwrap();
            assert!(seen.spins >= 1024 && !seen.spinning, "{seen:#?}");
            assert_eq!(later.totals.spinning, 0);
            map.close_all();
        }));
    }
}

/// Pushes `size` bytes when it joins the map, and reads nothing more.
struct Flood {
    size: usize,
}

impl ChatHandler for Flood {
    fn found_terminator(&mut self, _: &mut Chat, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
    fn handle_connect(&mut self, _: &mut Chat, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_output_queue() {
    block_on(async {
        let map = Map::new();
        let (ours, peer) = socket_pair();
        ours.socket().unwrap().set_send_buffer_size(4096).unwrap();
        let mut chat = Chat::new(&b"\n"[..]);
        chat.set_write_buffer_limits(64 * 1024, 16 * 1024).unwrap();
        let id = map
            .add(ours, AsyncChat::with_chat(Flood { size: 0 }, chat))
            .unwrap();
        let size = 1 << 20;
        map.with::<AsyncChat<Flood>, _>(id, |chat, _| {
            chat.handler_mut().size = size;
            chat.push(vec![b'x'; size]);
        })
        .unwrap();
        // The peer reads nothing; the chat sends what the socket takes and waits to write.
        map.run_until(tokio::task::yield_now()).await.unwrap();
        let snapshot = map.snapshot();
        let seen = snapshot.channel(id).unwrap();
        let queued = seen.buffered.output.expect("a chat reports its output");
        assert!(queued > 64 * 1024 && queued < size, "{seen:#?}");
        assert_eq!(seen.buffered.water_marks, Some((16 * 1024, 64 * 1024)));
        assert!(seen.buffered.paused);
        assert_eq!(seen.buffered.input, Some(0));
        assert!(seen.interest.is_write() && seen.waiting, "{seen:#?}");
        assert_eq!(seen.bytes_sent, (size - queued) as u64);
        assert_eq!(snapshot.totals.output_queued, queued as u64);
        assert!(seen.dispatcher_name().starts_with("AsyncChat<"));
        drop(peer);
        map.close_all();
    });
}

/// echo_server's handler: sends back what it reads, keeps what the socket did not take, and
/// stops reading while it owes anything. It reports no buffers.
struct Echo {
    unsent: Bytes,
    stuck: Rc<Notify>,
    wrote: Rc<Notify>,
}

impl Dispatcher for Echo {
    fn readable(&self, _: &Channel) -> bool {
        self.unsent.is_empty()
    }
    fn writable(&self, _: &Channel) -> bool {
        !self.unsent.is_empty()
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(64 * 1024)?;
        let sent = channel.send(&data)?;
        self.unsent = data.slice(sent..);
        if !self.unsent.is_empty() {
            self.stuck.notify_one();
        }
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = channel.send(&self.unsent)?;
        self.unsent.advance(sent);
        self.wrote.notify_one();
        Ok(())
    }
}

/// A peer that stopped reading: the echo handler stops reading too and waits to write, and
/// no callback runs while the map runs on. The snapshot calls it stalled, knows how long it
/// has been quiet, and shows the bytes it moved.
#[test]
fn a_reader_stalled_by_its_peer() {
    block_on(async {
        let map = Map::new();
        let (ours, mut peer) = socket_pair();
        ours.socket().unwrap().set_send_buffer_size(4096).unwrap();
        let stuck = Rc::new(Notify::new());
        let wrote = Rc::new(Notify::new());
        let echo = Echo {
            unsent: Bytes::new(),
            stuck: stuck.clone(),
            wrote: wrote.clone(),
        };
        let id = map.add(ours, echo).unwrap();
        peer.write_all(&[7u8; 32 * 1024]).unwrap();
        map.run_until(stuck.notified()).await.unwrap();
        map.run_until(tokio::task::yield_now()).await.unwrap();

        let first = map.snapshot();
        let seen = first.channel(id).unwrap();
        assert_eq!(seen.interest, Interest::WRITE, "{seen:#?}");
        assert!(seen.waiting);
        assert_eq!(seen.buffered, Buffered::default(), "it reports nothing");
        assert!(!seen.stalled, "no earlier snapshot to compare with");
        let callbacks = seen.callbacks;
        assert!(callbacks >= 1);
        assert!(seen.bytes_received > seen.bytes_sent && seen.bytes_sent > 0);

        // The map runs on for a while; the channel stays where it is.
        map.run_until(tokio::time::sleep(Duration::from_millis(50)))
            .await
            .unwrap();
        let second = map.snapshot();
        let seen = second.channel(id).unwrap();
        assert!(seen.stalled, "{seen:#?}");
        assert_eq!(seen.callbacks, callbacks);
        assert_eq!(seen.idle, Some(second.taken - first.taken));
        assert_eq!(second.totals.stalled, 1);

        // The peer reads again: the channel writes, and is no longer stalled.
        let mut sink = vec![0; 64 * 1024];
        let _ = peer.read(&mut sink).unwrap();
        map.run_until(wrote.notified()).await.unwrap();
        let third = map.snapshot();
        let seen = third.channel(id).unwrap();
        assert!(seen.callbacks > callbacks && !seen.stalled, "{seen:#?}");
        assert_eq!(seen.idle, Some(Duration::ZERO));
        map.close_all();
    });
}

/// A dispatcher with a `SendBuffer` reports it through `buffered()`.
struct Buffering {
    out: SendBuffer,
}

impl Dispatcher for Buffering {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own
    }
    fn writable(&self, channel: &Channel) -> bool {
        self.out.writable(channel)
    }
    fn buffered(&self, _: &Channel) -> Buffered {
        self.out.buffered()
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(64 * 1024)?;
        self.out.send(channel, data)
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.out.handle_write(channel)
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

/// From another thread, on both runtimes: the handle's snapshot, the totals counting what
/// closed channels did, a deadline, and a snapshot taken inside a callback.
#[test]
fn from_another_thread_with_totals() {
    fn body() -> Body {
        Box::pin(async {
            let map = Map::new();
            let (ours, peer) = socket_pair();
            let id = map
                .add(
                    ours,
                    Buffering {
                        out: SendBuffer::new(),
                    },
                )
                .unwrap();
            map.with::<Buffering, _>(id, |_, channel| {
                channel.set_timeout(Duration::from_secs(3600))
            })
            .unwrap();
            let handle = map.handle();
            let monitor = tokio::task::spawn_blocking(move || {
                let mut peer = peer;
                peer.write_all(b"hello").unwrap();
                let mut echo = [0; 5];
                peer.read_exact(&mut echo).unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let snapshot = runtime.block_on(handle.snapshot()).unwrap();
                drop(peer); // end of file: the channel closes
                runtime.block_on(handle.wait_empty());
                let after = runtime.block_on(handle.snapshot()).unwrap();
                (snapshot, after)
            });
            let mut outcome = None;
            map.serve(async { outcome = Some(monitor.await.unwrap()) })
                .await
                .unwrap();
            let (snapshot, after) = outcome.unwrap();
            let seen = snapshot.channel(id).unwrap();
            assert_eq!((seen.bytes_received, seen.bytes_sent), (5, 5));
            assert_eq!(seen.buffered.output, Some(0));
            assert_eq!(seen.buffered.water_marks, Some((16 * 1024, 64 * 1024)));
            let left = seen.deadline.expect("a deadline");
            assert!(left > Duration::from_secs(3000) && left <= Duration::from_secs(3600));
            assert_eq!(snapshot.totals.bytes_received, 5);
            assert!(snapshot.totals.running);
            assert!(after.channels.is_empty());
            assert_eq!(after.totals.channels, 0);
            assert_eq!(
                (after.totals.bytes_received, after.totals.bytes_sent),
                (5, 5)
            );
            assert!(
                after.totals.callbacks > seen.callbacks,
                "handle_read_eof, handle_close"
            );
            let rates = after.rates_since(&snapshot);
            assert!(rates.seconds > 0.0 && rates.bytes_received == 0.0);
        })
    }
    block_on(body());
    block_on_multi(body());
}

/// Looks at the map from inside its own callback.
struct Looker {
    seen: Rc<Cell<Option<ChannelState>>>,
}

impl Dispatcher for Looker {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(64)?;
        let snapshot = channel.map().unwrap().snapshot();
        self.seen
            .set(snapshot.channel(channel.id()).map(|seen| seen.state));
        assert!(!data.is_empty());
        channel.close();
        Ok(())
    }
}

#[test]
fn inside_a_callback_the_channel_is_busy() {
    block_on(async {
        let map = Map::new();
        let (ours, mut peer) = socket_pair();
        let seen = Rc::new(Cell::new(None));
        map.add(ours, Looker { seen: seen.clone() }).unwrap();
        peer.write_all(b"x").unwrap();
        map.run().await.unwrap();
        assert_eq!(seen.get(), Some(ChannelState::Busy));
    });
}

/// Lock-step passes record what they asked and what they found, as the free-running tasks do.
#[test]
fn lock_step_passes_show_in_snapshots() {
    block_on(async {
        let map = Map::new();
        let (ours, mut peer) = socket_pair();
        let id = map.add(ours, Quiet).unwrap();
        peer.write_all(b"ping").unwrap();
        let pass = map.poll(LIMIT).await.unwrap();
        assert_eq!(pass.ready, vec![(id, Ready::READ)]);
        let seen = map.snapshot();
        let seen = seen.channel(id).unwrap();
        assert_eq!(seen.interest, Interest::READ);
        assert_eq!(seen.ready, Ready::READ);
        assert_eq!(seen.callbacks, 1);
        assert_eq!(seen.bytes_received, 4);
    });
}
