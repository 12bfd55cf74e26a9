//! asyncore's `loop(count=…)` and `poll()`: exact passes, dispatch order, what a pass sees of
//! channels closed or added during it, and how the loop ends.

mod util;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncore::{Channel, ChannelId, Dispatcher, Event, ExitNow, Interest, Map, Ready};
use util::{block_on, socket_pair, Log};

/// Counts its callbacks; reads everything; asks what its flags say.
struct Counter {
    log: Log,
    name: &'static str,
    readable: bool,
    writable: bool,
}

impl Dispatcher for Counter {
    fn readable(&self, _: &Channel) -> bool {
        self.readable
    }
    fn writable(&self, _: &Channel) -> bool {
        self.writable
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.log.push(format!("{} read", self.name));
        channel.recv(4096)?;
        Ok(())
    }
    fn handle_write(&mut self, _: &mut Channel) -> io::Result<()> {
        self.log.push(format!("{} write", self.name));
        Ok(())
    }
}

fn counter(log: &Log, name: &'static str, readable: bool, writable: bool) -> Counter {
    Counter {
        log: log.clone(),
        name,
        readable,
        writable,
    }
}

#[test]
fn empty_map_returns_at_once() {
    block_on(async {
        let map = Map::new();
        let started = Instant::now();
        map.run().await.unwrap();
        map.run_count(Duration::from_secs(30), 5).await.unwrap();
        let pass = map.poll(Duration::from_secs(30)).await.unwrap();
        assert_eq!(pass, asyncore::Pass::default());
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

/// `count = k` makes exactly k passes: a channel that is always writable gets exactly k write
/// callbacks (asyncore B5, B12).
#[test]
fn count_makes_exactly_that_many_passes() {
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (channel, _peer) = socket_pair();
        map.add(channel, counter(&log, "a", false, true)).unwrap();
        map.run_count(Duration::from_secs(5), 7).await.unwrap();
        assert_eq!(log.count("a write"), 7);
        map.run_count(Duration::from_secs(5), 0).await.unwrap();
        assert_eq!(log.count("a write"), 7);
    });
}

/// A pass in which nobody is interested sleeps its timeout and counts as a pass (B9).
#[test]
fn pass_without_interest_sleeps() {
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (channel, _peer) = socket_pair();
        map.add(channel, counter(&log, "a", false, false)).unwrap();
        let started = Instant::now();
        let pass = map.poll(Duration::from_millis(50)).await.unwrap();
        assert!(pass.slept && pass.wanted.is_empty() && pass.events.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(50));
        let started = Instant::now();
        map.run_count(Duration::from_millis(20), 3).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
    });
}

/// One pass dispatches all reads, then all writes, by ascending id (B11), and reports what
/// each channel wanted and what was ready.
#[test]
fn pass_order_is_reads_then_writes_by_id() {
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (a, mut peer_a) = socket_pair();
        let (b, mut peer_b) = socket_pair();
        let a = map.add(a, counter(&log, "a", true, true)).unwrap();
        let b = map.add(b, counter(&log, "b", true, true)).unwrap();
        use std::io::Write;
        peer_b.write_all(b"x").unwrap();
        peer_a.write_all(b"y").unwrap();
        // Let both become readable before the pass looks.
        std::thread::sleep(Duration::from_millis(20));
        let pass = map.poll(Duration::from_secs(5)).await.unwrap();
        let both = Interest::READ | Interest::WRITE;
        assert_eq!(pass.wanted, vec![(a, both), (b, both)]);
        assert_eq!(
            pass.ready,
            vec![
                (a, Ready::READ | Ready::WRITE),
                (b, Ready::READ | Ready::WRITE)
            ]
        );
        assert_eq!(
            pass.events,
            vec![
                (a, Event::Read),
                (b, Event::Read),
                (a, Event::Write),
                (b, Event::Write)
            ]
        );
        assert_eq!(log.entries(), ["a read", "b read", "a write", "b write"]);
    });
}

/// A channel closed earlier in a pass gets no further events in it (B11, S4).
#[test]
fn closed_in_a_pass_gets_no_more_events() {
    struct Closer {
        victim: Rc<RefCell<Option<ChannelId>>>,
    }
    impl Dispatcher for Closer {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            if let Some(victim) = self.victim.borrow_mut().take() {
                channel.map().unwrap().close_channel(victim);
            }
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let victim = Rc::new(RefCell::new(None));
        let (a, _pa) = socket_pair();
        let (b, _pb) = socket_pair();
        let a = map
            .add(
                a,
                Closer {
                    victim: victim.clone(),
                },
            )
            .unwrap();
        let b = map.add(b, counter(&log, "b", false, true)).unwrap();
        *victim.borrow_mut() = Some(b);
        let pass = map.poll(Duration::from_secs(5)).await.unwrap();
        assert_eq!(pass.ready.len(), 2, "both were writable: {pass:?}");
        assert_eq!(pass.events, vec![(a, Event::Write)]);
        assert!(log.entries().is_empty());
        assert_eq!(map.ids(), vec![a]);
    });
}

/// A channel added during a pass is first asked in the next pass (B6).
#[test]
fn added_in_a_pass_joins_the_next() {
    struct Spawner {
        spawned: Rc<RefCell<Option<ChannelId>>>,
        log: Log,
    }
    impl Dispatcher for Spawner {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn writable(&self, _: &Channel) -> bool {
            self.spawned.borrow().is_none()
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            let (new, peer) = socket_pair();
            std::mem::forget(peer); // keep the pair open for the test's lifetime
            let id = channel
                .map()
                .unwrap()
                .add(new, counter(&self.log, "new", false, true))?;
            *self.spawned.borrow_mut() = Some(id);
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let spawned = Rc::new(RefCell::new(None));
        let (a, _pa) = socket_pair();
        let a = map
            .add(
                a,
                Spawner {
                    spawned: spawned.clone(),
                    log: log.clone(),
                },
            )
            .unwrap();
        let first = map.poll(Duration::from_secs(5)).await.unwrap();
        assert_eq!(first.events, vec![(a, Event::Write)]);
        let new = spawned.borrow().unwrap();
        assert!(map.contains(new));
        assert!(log.entries().is_empty());
        let second = map.poll(Duration::from_secs(5)).await.unwrap();
        assert_eq!(second.wanted, vec![(new, Interest::WRITE)]);
        assert_eq!(second.events, vec![(new, Event::Write)]);
        map.close_all();
    });
}

/// `ExitNow` from a callback ends run/poll with that error; the map keeps its channels and the
/// next run goes on (B7).
#[test]
fn exit_now_stops_the_loop() {
    struct Stopper {
        log: Log,
        left: usize,
    }
    impl Dispatcher for Stopper {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.log.push("write");
            self.left -= 1;
            if self.left == 0 {
                channel.close();
                return Ok(());
            }
            Err(ExitNow.into())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (a, _pa) = socket_pair();
        map.add(
            a,
            Stopper {
                log: log.clone(),
                left: 3,
            },
        )
        .unwrap();
        let error = map.run().await.unwrap_err();
        assert!(ExitNow::is(&error), "{error}");
        assert_eq!(log.count("write"), 1);
        assert_eq!(map.len(), 1);
        let error = map.run_count(Duration::from_secs(5), 10).await.unwrap_err();
        assert!(ExitNow::is(&error));
        assert_eq!(log.count("write"), 2);
        map.run().await.unwrap(); // third write closes: the map empties and run returns
        assert_eq!(log.count("write"), 3);
        assert!(map.is_empty());
    });
}

/// Without a count the loop returns as soon as the last channel closes (B5).
#[test]
fn run_returns_when_the_map_empties() {
    struct CloseAfter(usize);
    impl Dispatcher for CloseAfter {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            self.0 -= 1;
            if self.0 == 0 {
                channel.close();
            }
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        for n in 1..=5 {
            let (channel, peer) = socket_pair();
            std::mem::forget(peer);
            map.add(channel, CloseAfter(n * 10)).unwrap();
        }
        map.run().await.unwrap();
        assert!(map.is_empty());
    });
}

/// A callback cannot run its own map: the nested run fails cleanly instead of deadlocking.
#[test]
fn running_a_running_map_is_an_error() {
    struct Nested(Log);
    impl Dispatcher for Nested {
        fn readable(&self, _: &Channel) -> bool {
            false
        }
        fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
            let map = channel.map().unwrap();
            let result = futures::executor::block_on(map.poll(Duration::ZERO));
            self.0.push(result.unwrap_err().to_string());
            channel.close();
            Ok(())
        }
    }
    block_on(async {
        let map = Map::new();
        let log = Log::default();
        let (a, _pa) = socket_pair();
        map.add(a, Nested(log.clone())).unwrap();
        map.run().await.unwrap();
        assert_eq!(
            log.entries(),
            ["the map is already running (a callback cannot run its own map)"]
        );
    });
}

/// The default map is per thread, and explicit maps are isolated from it (B1).
#[test]
fn default_map_and_explicit_maps_are_separate() {
    block_on(async {
        let log = Log::default();
        let (a, _pa) = socket_pair();
        let (b, _pb) = socket_pair();
        let private = Map::new();
        let in_default = asyncore::add(a, counter(&log, "default", false, true)).unwrap();
        let in_private = private
            .add(b, counter(&log, "private", false, true))
            .unwrap();
        assert!(
            asyncore::socket_map().contains(in_default)
                && !asyncore::socket_map().contains(in_private)
        );
        asyncore::run_count(Duration::from_secs(5), 2)
            .await
            .unwrap();
        assert_eq!(log.entries(), ["default write", "default write"]);
        private.run_count(Duration::from_secs(5), 1).await.unwrap();
        assert_eq!(log.count("private write"), 1);
        let other_thread = std::thread::spawn(|| asyncore::socket_map().len())
            .join()
            .unwrap();
        assert_eq!(other_thread, 0);
        asyncore::close_all();
        assert!(asyncore::socket_map().is_empty());
    });
}
