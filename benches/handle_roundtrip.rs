//! The cost of reaching a dispatcher from native code: `ChannelHandle::call` (native task →
//! map thread → the channel's task runs the closure → result back) against the native idiom it
//! replaces, a request over a tokio mpsc channel answered through a oneshot, in the same run.
//!
//! Both sides are set up alike: the caller runs on one thread's current-thread runtime, the
//! callee (the map, or the native actor) on another thread's, so every round trip crosses
//! threads twice.
//!
//! ```text
//! cargo bench --bench handle_roundtrip
//! ```

use std::io;
use std::time::{Duration, Instant};

use asyncore::{Channel, Dispatcher, Map};
use criterion::{criterion_group, criterion_main, Criterion};
use tokio::sync::{mpsc, oneshot};

struct Counter {
    count: u64,
}

impl Dispatcher for Counter {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, _: &Channel) -> bool {
        false
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a map with one `Counter` channel on its own thread; returns a handle to the channel
/// and the sender that stops the map.
fn map_thread() -> (
    asyncore::ChannelHandle,
    oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (ready, handle) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime().block_on(async move {
            let map = Map::new();
            let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
            let id = map
                .add(Channel::from_unix(ours), Counter { count: 0 })
                .unwrap();
            ready.send(map.handle().channel(id)).unwrap();
            map.serve(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
            drop(theirs);
        })
    });
    (handle.recv().unwrap(), stop, thread)
}

/// The native equivalent: an actor task owning the counter, asked through mpsc + oneshot.
fn actor_thread() -> (
    mpsc::UnboundedSender<oneshot::Sender<u64>>,
    std::thread::JoinHandle<()>,
) {
    let (requests, mut inbox) = mpsc::unbounded_channel::<oneshot::Sender<u64>>();
    let thread = std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut count = 0u64;
            while let Some(reply) = inbox.recv().await {
                count += 1;
                let _ = reply.send(count);
            }
        })
    });
    (requests, thread)
}

fn round_trips(c: &mut Criterion) {
    let caller = runtime();
    let (channel, stop, map) = map_thread();
    let (actor, actor_thread) = actor_thread();
    let mut group = c.benchmark_group("round trip");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("ChannelHandle::call", |b| {
        b.iter_custom(|iterations| {
            caller.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let counted = channel
                        .call(|counter: &mut Counter, _: &mut Channel| {
                            counter.count += 1;
                            counter.count
                        })
                        .await;
                    std::hint::black_box(counted.unwrap());
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("mpsc + oneshot", |b| {
        b.iter_custom(|iterations| {
            caller.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let (reply, answer) = oneshot::channel();
                    actor.send(reply).unwrap();
                    std::hint::black_box(answer.await.unwrap());
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    let _ = stop.send(());
    map.join().unwrap();
    drop(actor);
    actor_thread.join().unwrap();
    let _: io::Result<()> = Ok(());
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
