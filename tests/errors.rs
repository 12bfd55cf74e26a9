//! Error routing and bad input: refused connects, bad addresses, closed channels, panics,
//! disconnects, and the busy-writer trap made visible and harmless to the rest of the thread.

mod util;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncore::{Channel, Dispatcher, Family, Map};
use util::{any_address, block_on, closed_port, listener, socket_pair, Log, Recorder};

/// A refused TCP connect reaches handle_error with the OS error (B39); the loop ends normally.
#[test]
fn refused_connect_reaches_handle_error() {
    block_on(async {
        let port = closed_port();
        let map = Map::new();
        let log = Log::default();
        let mut client = Channel::create_socket(Family::Inet).unwrap();
        client.connect(("127.0.0.1", port)).unwrap();
        map.add(
            client,
            Recorder {
                writable: true,
                ..Recorder::new("client", &log)
            },
        )
        .unwrap();
        map.run().await.unwrap();
        assert_eq!(log.entries(), ["client: error ConnectionRefused"]);
    });
}

/// The error text names what failed and where.
#[test]
fn refused_connect_error_has_context() {
    struct Keep(Arc<Mutex<String>>);
    impl Dispatcher for Keep {
        fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
            *self.0.lock().unwrap() = error.to_string();
            channel.close();
        }
    }
    block_on(async {
        let port = closed_port();
        let map = Map::new();
        let text = Arc::new(Mutex::new(String::new()));
        let mut client = Channel::create_socket(Family::Inet).unwrap();
        client.connect(("127.0.0.1", port)).unwrap();
        map.add(client, Keep(text.clone())).unwrap();
        map.run().await.unwrap();
        let text = text.lock().unwrap().clone();
        assert!(
            text.starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{text}"
        );
    });
}

/// A Unix connect to a path nobody listens on fails at once, with the path in the message.
#[test]
fn unix_connect_to_nothing_fails_at_once() {
    block_on(async {
        let address = any_address(Family::Unix);
        let mut client = Channel::create_socket(Family::Unix).unwrap();
        let error = client.connect(&address).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        assert!(error.to_string().contains(&address.to_string()), "{error}");
    });
}

#[test]
fn invalid_addresses_are_clear_errors() {
    block_on(async {
        let mut channel = Channel::create_socket(Family::Inet).unwrap();
        for bad in ["not an address", "127.0.0.1", "127.0.0.1:99999"] {
            let error = channel.bind(bad).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{bad}: {error}");
            assert!(error.to_string().contains(bad), "{error}");
        }
        let error = channel.connect("[::1]:80").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("Inet6"), "{error}");
    });
}

/// Every operation on a closed channel is an error that says so; none panics.
#[test]
fn operations_on_a_closed_channel() {
    block_on(async {
        let (mut channel, _peer) = socket_pair();
        channel.close();
        channel.close(); // idempotent
        assert!(channel.is_closed() && channel.fileno().is_none());
        let errors = [
            channel.send(b"x").unwrap_err(),
            channel.recv(10).unwrap_err(),
            channel.accept().unwrap_err(),
            channel.bind("127.0.0.1:0").unwrap_err(),
            channel.listen(5).unwrap_err(),
            channel.connect("127.0.0.1:1").unwrap_err(),
            channel.local_addr().unwrap_err(),
            channel.shutdown(std::net::Shutdown::Both).unwrap_err(),
        ];
        for error in errors {
            assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
            assert!(error.to_string().contains("closed"), "{error}");
        }
        let map = Map::new();
        assert_eq!(
            map.add(channel, Recorder::new("x", &Log::default()))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotConnected
        );
    });
}

/// Misuse on an open channel (accept on a connected socket, listen twice) is InvalidInput.
#[test]
fn misuse_is_invalid_input() {
    block_on(async {
        let (mut connected, _peer) = socket_pair();
        assert_eq!(
            connected.accept().unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let (mut listening, _) = listener(Family::Inet).unwrap();
        let error = listening.listen(5).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("listening"), "{error}");
    });
}

/// A panic in `readable()` or in `handle_error` itself is contained to its channel; the other
/// channel and the loop go on.
#[test]
fn panics_are_contained_to_their_channel() {
    struct PanicsInReadable;
    impl Dispatcher for PanicsInReadable {
        fn readable(&self, _: &Channel) -> bool {
            panic!("readable exploded")
        }
    }
    struct PanicsTwice;
    impl Dispatcher for PanicsTwice {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, _: &mut Channel) -> io::Result<()> {
            panic!("handle_write exploded")
        }
        fn handle_error(&mut self, _: &mut Channel, _: io::Error) {
            panic!("handle_error exploded too")
        }
    }
    struct Survivor(Log, usize);
    impl Dispatcher for Survivor {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.1 += 1;
            if self.1 == 100 {
                self.0.push("survivor done");
                channel.close();
            }
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (a, _pa) = socket_pair();
        let (b, _pb) = socket_pair();
        let (c, _pc) = socket_pair();
        map.add(a, PanicsInReadable).unwrap();
        map.add(b, PanicsTwice).unwrap();
        map.add(c, Survivor(log.clone(), 0)).unwrap();
        map.run().await.unwrap();
        assert_eq!(log.entries(), ["survivor done"]);
        assert!(map.is_empty());
    });
}

/// An error of the disconnect family returned by a callback closes (handle_close), it is not
/// an error (B20); `WouldBlock` is nothing at all.
#[test]
fn disconnect_errors_close_and_would_block_is_nothing() {
    struct Returns(io::ErrorKind, Log);
    impl Dispatcher for Returns {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.1.push("write");
            if self.0 == io::ErrorKind::WouldBlock && self.1.count("write") == 3 {
                channel.close();
            }
            Err(self.0.into())
        }
        fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.1.push("close");
            channel.close();
            Ok(())
        }
        fn handle_error(&mut self, channel: &mut Channel, _: io::Error) {
            self.1.push("error");
            channel.close();
        }
    }
    block_on(async {
        for (kind, expected) in [
            (io::ErrorKind::ConnectionReset, vec!["write", "close"]),
            (io::ErrorKind::BrokenPipe, vec!["write", "close"]),
            (io::ErrorKind::ConnectionRefused, vec!["write", "error"]),
            (io::ErrorKind::WouldBlock, vec!["write", "write", "write"]),
        ] {
            let map = Map::new();
            let log = Log::default();
            let (a, _pa) = socket_pair();
            map.add(a, Returns(kind, log.clone())).unwrap();
            map.run().await.unwrap();
            assert_eq!(log.entries(), expected, "{kind:?}");
        }
    });
}

/// End of file calls handle_close once, even if handle_close leaves the channel open; the
/// channel then stops asking for reads instead of spinning on the closed read side.
#[test]
fn handle_close_runs_at_most_once() {
    struct StaysOpen(Log);
    impl Dispatcher for StaysOpen {
        fn writable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0.push("read");
            channel.recv(100)?;
            Ok(())
        }
        fn handle_close(&mut self, _: &mut Channel) -> io::Result<()> {
            self.0.push("close");
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (a, peer) = socket_pair();
        drop(peer);
        map.add(a, StaysOpen(log.clone())).unwrap();
        map.run_until(tokio::time::sleep(Duration::from_millis(100)))
            .await
            .unwrap();
        assert_eq!(log.entries(), ["read", "close"]);
    });
}

/// A handle_close that leaves the channel open to say goodbye: the close it asks for next
/// closes the channel (no second handle_close), after the goodbye has gone out.
#[test]
fn a_close_asked_for_after_handle_close_closes_the_channel() {
    struct Goodbye {
        log: Log,
        owed: &'static [u8],
    }
    impl Dispatcher for Goodbye {
        fn readable(&self, _: &Channel) -> bool {
            self.owed.is_empty()
        }
        fn writable(&self, _: &Channel) -> bool {
            !self.owed.is_empty()
        }
        fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.recv(100)?;
            Ok(())
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.log.push("write");
            let sent = channel.send(self.owed)?;
            self.owed = &self.owed[sent..];
            if self.owed.is_empty() {
                channel.request_close();
            }
            Ok(())
        }
        fn handle_close(&mut self, _: &mut Channel) -> io::Result<()> {
            self.log.push("close");
            self.owed = b"bye";
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (a, mut peer) = socket_pair();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let goodbye = Goodbye {
            log: log.clone(),
            owed: b"",
        };
        map.add(a, goodbye).unwrap();
        map.run().await.unwrap(); // returns only once the channel has closed itself
        assert_eq!(log.entries(), ["close", "write"]);
        let mut received = Vec::new();
        io::Read::read_to_end(&mut peer, &mut received).unwrap();
        assert_eq!(received, b"bye");
    });
}

/// A disconnect after handle_close (which left the channel open) closes the channel instead of
/// leaving a writer that fails forever.
#[test]
fn a_disconnect_after_handle_close_closes_the_channel() {
    struct KeepsWriting(Log);
    impl Dispatcher for KeepsWriting {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            channel.send(b"anyone there?")?;
            Ok(())
        }
        fn handle_close(&mut self, _: &mut Channel) -> io::Result<()> {
            self.0.push("close");
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (a, peer) = socket_pair();
        drop(peer);
        map.add(a, KeepsWriting(log.clone())).unwrap();
        map.run().await.unwrap();
        assert_eq!(log.entries(), ["close"]);
    });
}

/// The busy-writer trap (default `writable()` with nothing to write): the rest of the thread
/// still runs, and the reactor says which channel spins, once, not once per pass.
#[test]
fn busy_writer_is_visible_and_does_not_starve_the_thread() {
    struct Idle; // asyncore's defaults: readable and writable, handle_write does nothing
    impl Dispatcher for Idle {}

    let captured = util::log::Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::WARN));
    block_on(async {
        let map = Map::new();
        let (a, _peer) = socket_pair();
        let id = map.add(a, Idle).unwrap();
        let ticks = Arc::new(Mutex::new(0u64));
        let counter = ticks.clone();
        let native = tokio::spawn(async move {
            loop {
                *counter.lock().unwrap() += 1;
                tokio::task::yield_now().await;
            }
        });
        map.run_until(tokio::time::sleep(Duration::from_millis(200)))
            .await
            .unwrap();
        native.abort();
        assert!(*ticks.lock().unwrap() > 10, "the native task starved");
        let text = captured.text();
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("busy loop")).collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(
            warnings[0].contains(&id.to_string()) && warnings[0].contains("writable()"),
            "{text}"
        );
    });
}
