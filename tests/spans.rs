//! The tracing a learner reads: each channel's span is a root span with its id, fd, dispatcher
//! and peer; every callback the reactor runs (a graceful shutdown's `handle_close`, the
//! interest sweep's re-asks, lock-step passes, `Map::with`) is inside its own channel's span
//! and no other; at `TRACE` the reactor says what each channel wants and what readiness
//! arrived. Checked with a subscriber that records spans and events; and the example programs
//! write their log without colour codes when stderr is not a terminal.

mod util;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::process::Command;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use asyncore::{Address, Channel, ChannelId, Dispatcher, Family, Map};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use util::{block_on, listener, socket_pair, LIMIT};

type Fields = BTreeMap<String, String>;

/// A span as it was made: its name, fields, and its parent's fields (`None` for a root).
#[derive(Clone, Debug)]
struct SpanSeen {
    name: String,
    fields: Fields,
    parent: Option<Fields>,
}

/// An event: its fields (`message` included) and the fields of the spans it was inside, the
/// innermost first.
#[derive(Clone, Debug)]
struct EventSeen {
    fields: Fields,
    scope: Vec<Fields>,
}

impl EventSeen {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }
    /// The `id` of the innermost span (a channel's `#N`).
    fn in_channel(&self) -> Option<&str> {
        self.scope.first()?.get("id").map(String::as_str)
    }
}

#[derive(Default)]
struct Seen {
    spans: HashMap<u64, SpanSeen>,
    made: Vec<SpanSeen>,
    events: Vec<EventSeen>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let mut seen = self.0.lock().unwrap();
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .and_then(|parent| seen.spans.get(&parent.id().into_u64()))
            .map(|parent| parent.fields.clone());
        let span = SpanSeen {
            name: attrs.metadata().name().to_string(),
            fields,
            parent,
        };
        seen.spans.insert(id.into_u64(), span.clone());
        seen.made.push(span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut seen = self.0.lock().unwrap();
        if let Some(span) = seen.spans.get_mut(&id.into_u64()) {
            values.record(&mut Visitor(&mut span.fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let mut seen = self.0.lock().unwrap();
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .filter_map(|span| seen.spans.get(&span.id().into_u64()))
                    .map(|span| span.fields.clone())
                    .collect()
            })
            .unwrap_or_default();
        seen.events.push(EventSeen { fields, scope });
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        // The registry reuses the ids of closed spans.
        self.0.lock().unwrap().spans.remove(&id.into_u64());
    }
}

impl Recorder {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(
            self.clone()
                .with_filter(tracing::level_filters::LevelFilter::TRACE),
        );
        tracing::subscriber::set_default(subscriber)
    }
    fn events(&self) -> Vec<EventSeen> {
        self.0.lock().unwrap().events.clone()
    }
    fn channel_spans(&self) -> Vec<SpanSeen> {
        let seen = self.0.lock().unwrap();
        seen.made
            .iter()
            .filter(|span| span.name == "channel")
            .cloned()
            .collect()
    }
    /// The events about channel `id` (their `channel` field).
    fn about(&self, id: ChannelId) -> Vec<EventSeen> {
        let id = id.to_string();
        self.events()
            .into_iter()
            .filter(|event| event.fields.get("channel") == Some(&id))
            .collect()
    }
}

/// Every event about a channel (each callback, each `wants`/`ready`) is inside that channel's
/// span, and inside no other channel's.
fn assert_in_own_span(recorder: &Recorder) {
    for event in recorder.events() {
        let Some(channel) = event.fields.get("channel") else {
            continue;
        };
        assert_eq!(
            event.in_channel(),
            Some(channel.as_str()),
            "event outside its channel's span: {event:#?}"
        );
        assert_eq!(event.scope.len(), 1, "nested spans: {event:#?}");
    }
}

/// Echoes one message, closes on `handle_close`.
struct Talker;

impl Dispatcher for Talker {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(1024)?;
        channel.send(&data)?;
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

struct Acceptor {
    accepted: Rc<Cell<Option<ChannelId>>>,
}

impl Dispatcher for Acceptor {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        sock: Channel,
        _: Address,
    ) -> io::Result<()> {
        let id = channel.map().unwrap().add(sock, Talker)?;
        self.accepted.set(Some(id));
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

/// An accepted connection's span is a root span, not the listener's child; its callbacks and
/// the reactor's `wants`/`ready` lines are in it; a graceful shutdown's `handle_close` too. The
/// map on a current-thread runtime, then on the main thread of a multi-thread one.
#[test]
fn accepted_channels_have_root_spans_and_shutdown_closes_inside_them() {
    let recorder = Recorder::default();
    let guard = recorder.install();
    block_on(accept_then_shut_down(recorder));
    drop(guard);
    let recorder = Recorder::default();
    let _guard = recorder.install();
    util::block_on_multi(accept_then_shut_down(recorder));
}

async fn accept_then_shut_down(recorder: Recorder) {
    {
        let map = Map::new();
        let (server, address) = listener(Family::Inet).unwrap();
        let accepted = Rc::new(Cell::new(None));
        let listener_id = map
            .add(
                server,
                Acceptor {
                    accepted: accepted.clone(),
                },
            )
            .unwrap();
        let Address::Inet(target) = address else {
            unreachable!()
        };
        let (hang_up, hung_up) = std::sync::mpsc::channel::<()>();
        let (echoed, got_echo) = tokio::sync::oneshot::channel();
        let peer = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(target).unwrap();
            stream.set_read_timeout(Some(LIMIT)).unwrap();
            stream.write_all(b"hi").unwrap();
            let mut echo = [0; 2];
            stream.read_exact(&mut echo).unwrap();
            let _ = echoed.send(stream.local_addr().unwrap());
            let _ = hung_up.recv_timeout(LIMIT); // stay connected through the shutdown
        });
        let mut client = None;
        map.run_until(async { client = got_echo.await.ok() })
            .await
            .unwrap();
        let client = client.expect("the peer got its echo");
        map.shutdown(LIMIT).await.unwrap();
        let _ = hang_up.send(());
        peer.join().unwrap();
        let talker = accepted.get().expect("a connection was accepted");

        let spans = recorder.channel_spans();
        assert_eq!(spans.len(), 2, "{spans:#?}");
        for span in &spans {
            assert!(span.parent.is_none(), "not a root span: {span:#?}");
        }
        let own = spans
            .iter()
            .find(|span| span.fields.get("id") == Some(&talker.to_string()))
            .expect("the connection's span");
        assert_eq!(
            own.fields.get("dispatcher").map(String::as_str),
            Some("Talker")
        );
        assert_eq!(own.fields.get("peer"), Some(&client.to_string()));
        assert!(own.fields.contains_key("fd"));
        let server_span = spans
            .iter()
            .find(|span| span.fields.get("id") == Some(&listener_id.to_string()))
            .unwrap();
        assert_eq!(
            server_span.fields.get("dispatcher").map(String::as_str),
            Some("Acceptor")
        );

        assert_in_own_span(&recorder);
        // The reactor's story of the connection: it wants to read, readiness arrives, the
        // callback runs; at shutdown, handle_close runs in its span.
        let story: Vec<String> = recorder
            .about(talker)
            .iter()
            .map(|event| match event.fields.get("callback") {
                Some(callback) => callback.clone(),
                None => event.message().to_string(),
            })
            .collect();
        let at = |what: &str| {
            story
                .iter()
                .position(|line| line == what)
                .unwrap_or_else(|| panic!("no {what:?} in {story:#?}"))
        };
        assert!(at("wants READ") < at("ready READ"), "{story:#?}");
        assert!(at("ready READ") < at("handle_read"), "{story:#?}");
        assert!(at("handle_read") < at("handle_close"), "{story:#?}");
        let close = recorder
            .about(listener_id)
            .into_iter()
            .find(|event| event.fields.get("callback").map(String::as_str) == Some("handle_close"))
            .expect("the listener's handle_close at shutdown");
        assert_eq!(close.in_channel(), Some(listener_id.to_string().as_str()));
    }
}

/// Its `writable()` reads a flag another channel's callback sets (asyncore's shared state):
/// the interest sweep asks it again, from outside its task.
struct Follower {
    go: Rc<Cell<bool>>,
}

impl Dispatcher for Follower {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, _: &Channel) -> bool {
        tracing::info!("asked writable");
        self.go.get()
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.send(b"go")?;
        self.go.set(false);
        Ok(())
    }
}

struct Leader {
    go: Rc<Cell<bool>>,
}

impl Dispatcher for Leader {
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.recv(64)?;
        self.go.set(true);
        Ok(())
    }
}

/// The sweep's re-asks, lock-step passes and `Map::with` run a channel's code inside its span.
#[test]
fn sweeps_passes_and_with_run_inside_the_channels_span() {
    let recorder = Recorder::default();
    let _guard = recorder.install();
    block_on(async {
        let map = Map::new();
        let go = Rc::new(Cell::new(false));
        let (follower_end, mut follower_peer) = socket_pair();
        let (leader_end, mut leader_peer) = socket_pair();
        let follower = map.add(follower_end, Follower { go: go.clone() }).unwrap();
        let leader = map.add(leader_end, Leader { go: go.clone() }).unwrap();
        leader_peer.write_all(b"now").unwrap();
        let waiter = std::thread::spawn(move || {
            let mut got = [0; 2];
            follower_peer.read_exact(&mut got).unwrap();
            follower_peer
        });
        let mut follower_peer = util::run_until_done(&map, waiter).await;

        // A lock-step pass: the leader reads, the follower is asked (in its span).
        leader_peer.write_all(b"again").unwrap();
        let pass = map.poll(LIMIT).await.unwrap();
        assert_eq!(pass.events, vec![(leader, asyncore::Event::Read)]);
        // Map::with from outside any callback.
        map.with::<Follower, _>(follower, |_, _| tracing::info!("inside with"))
            .unwrap();
        map.close_all();
        let _ = follower_peer.read(&mut [0; 8]);

        assert_in_own_span(&recorder);
        let events = recorder.events();
        let changed = events
            .iter()
            .find(|event| event.message() == "interest changed by another callback")
            .expect("the sweep asked the follower again");
        assert_eq!(changed.in_channel(), Some(follower.to_string().as_str()));
        let asked: Vec<&EventSeen> = events
            .iter()
            .filter(|event| event.message() == "asked writable")
            .collect();
        assert!(asked.len() >= 3, "{asked:#?}");
        for event in asked {
            assert_eq!(event.in_channel(), Some(follower.to_string().as_str()));
            assert_eq!(event.scope.len(), 1, "{event:#?}");
        }
        let inside = events
            .iter()
            .find(|event| event.message() == "inside with")
            .unwrap();
        assert_eq!(inside.in_channel(), Some(follower.to_string().as_str()));
        // The pass said what it asked and found, in each channel's span.
        let leader_story: Vec<String> = recorder
            .about(leader)
            .iter()
            .map(|event| event.message().to_string())
            .collect();
        assert!(
            leader_story.iter().filter(|m| *m == "wants READ").count() >= 2,
            "{leader_story:#?}"
        );
    });
}

/// With `--cfg tokio_unstable`, each channel's task carries its name (tokio-console shows it).
#[cfg(tokio_unstable)]
#[test]
fn channel_tasks_are_named() {
    let recorder = Recorder::default();
    let _guard = recorder.install();
    block_on(async {
        let map = Map::new();
        let (ours, _peer) = socket_pair();
        let id = map.add(ours, Talker).unwrap();
        map.run_until(tokio::task::yield_now()).await.unwrap();
        let seen = recorder.0.lock().unwrap();
        let names: Vec<&String> = seen
            .made
            .iter()
            .filter(|span| span.name == "runtime.spawn")
            .filter_map(|span| span.fields.get("task.name"))
            .collect();
        let expected = format!("channel {id} Talker");
        assert!(
            names.iter().any(|name| name.starts_with(&expected)),
            "{names:#?}"
        );
    });
}

/// The example programs log without colour codes into a pipe, and an accepted connection's
/// lines name it alone (`channel{id=#2 ...}`), not inside the listener's span.
#[test]
fn example_logs_are_plain_text_into_a_pipe() {
    let mut command = Command::new(util::programs::example("echo_server"));
    command
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "asyncore=trace")
        .env_remove("NO_COLOR");
    let program = util::programs::Program::start(command);
    let mut stream = std::net::TcpStream::connect(program.address).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(b"hello").unwrap();
    let mut echo = [0; 5];
    stream.read_exact(&mut echo).unwrap();
    drop(stream);
    let (status, stderr) = program.stop("TERM");
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes in a pipe: {stderr}");
    let connection: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("callback=\"handle_read\""))
        .collect();
    assert!(!connection.is_empty(), "{stderr}");
    for line in connection {
        assert_eq!(line.matches("channel{").count(), 1, "{line}");
    }
    assert!(
        stderr.contains("wants READ") && stderr.contains("ready READ"),
        "{stderr}"
    );
}
