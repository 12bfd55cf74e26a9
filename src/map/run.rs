//! The free-running loop: every channel on its own task until the map empties or is stopped.

use std::future::{poll_fn, Future};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

use super::{Map, MapInner};

impl Map {
    /// Runs the map until it is empty: asyncore's `loop()` without a count.
    ///
    /// Every channel runs freely on its own task: it waits for the readiness its dispatcher
    /// asks for and runs callbacks as soon as that arrives, with no global pass. Returns
    /// `Ok(())` at once for an empty map, and as soon as the last channel closes.
    ///
    /// # Errors
    /// The [`ExitNow`](crate::ExitNow) a callback returned (the map keeps its channels; run it
    /// again to go on), or `Other` if the map is already running (a callback cannot run its own
    /// map).
    ///
    /// # Cancel safety
    /// Dropping the future pauses the map; no event is lost, and the next run resumes it.
    pub async fn run(&self) -> io::Result<()> {
        self.run_while(true, std::future::pending()).await.map(drop)
    }

    /// Runs the map until it is empty or `stop` completes, whichever is first. The channels
    /// stay; a server's main loop follows it with [`shutdown`](Map::shutdown). `stop` is polled
    /// when it wakes its waker (as every well-behaved future does), not on each of the map's
    /// wake-ups:
    ///
    /// ```no_run
    /// # #![allow(dead_code)]
    /// # async fn serve(map: asyncore::Map) -> std::io::Result<()> {
    /// map.run_until(async { let _ = asyncore::shutdown_signal().await; }).await?;
    /// map.shutdown(std::time::Duration::from_secs(2)).await
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`run`](Map::run).
    pub async fn run_until(&self, stop: impl Future<Output = ()>) -> io::Result<()> {
        self.run_while(true, stop).await.map(drop)
    }

    /// Runs the map until `stop` completes, even while it is empty: for a map that is a
    /// service of a larger program, fed with channels through
    /// [`MapHandle::add`](crate::MapHandle::add), rather than a program of its own. The
    /// channels stay (see [`shutdown`](Map::shutdown)). `stop` is polled as in
    /// [`run_until`](Map::run_until).
    ///
    /// A map inside a larger application that shuts down with tokio-util's
    /// `CancellationToken` and `TaskTracker`: the map runs on a thread of its own (it is
    /// `!Send`), serves until the token is cancelled, then shuts down gracefully; the
    /// application's native tasks reach it through its [`MapHandle`](crate::MapHandle).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use asyncore::Map;
    /// use tokio_util::sync::CancellationToken;
    /// use tokio_util::task::TaskTracker;
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let token = CancellationToken::new();
    /// let (found, handle) = std::sync::mpsc::channel();
    /// let stop = token.clone();
    /// let map_thread = std::thread::spawn(move || {
    ///     tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    ///         let map = Map::new();
    ///         let _ = found.send(map.handle());
    ///         map.serve(stop.cancelled_owned()).await?;
    ///         map.shutdown(Duration::from_secs(2)).await // handle_close, flush, then empty
    ///     })
    /// });
    /// let handle = handle.recv().expect("the map thread started");
    /// runtime.block_on(async {
    ///     let tracker = TaskTracker::new();
    ///     tracker.spawn(async move {
    ///         // Native work: add channels with `handle.add(..)`, call them, and so on.
    ///         handle.wait_empty().await;
    ///     });
    ///     token.cancel(); // e.g. on SIGTERM
    ///     tracker.close();
    ///     tracker.wait().await;
    /// });
    /// map_thread.join().expect("the map thread")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`run`](Map::run).
    pub async fn serve(&self, stop: impl Future<Output = ()>) -> io::Result<()> {
        self.run_while(false, stop).await.map(drop)
    }

    /// The free-running loop: until `stop` (returns true), or the map empties (if
    /// `until_empty`; returns false), or a callback's `ExitNow`.
    async fn run_while(
        &self,
        until_empty: bool,
        stop: impl Future<Output = ()>,
    ) -> io::Result<bool> {
        let inner = &self.inner;
        let _running = inner.start()?;
        inner.resume();
        let state = &inner.state;
        let mut stop = std::pin::pin!(stop);
        let stop_waker = Arc::new(StopWaker {
            woken: AtomicBool::new(true),
            run: AtomicWaker::new(),
        });
        let result = inner
            .local
            .run_until(poll_fn(|cx| {
                if let Some(error) = state.take_exit() {
                    return Poll::Ready(Err(error));
                }
                if until_empty && inner.is_empty() {
                    return Poll::Ready(Ok(false));
                }
                let known = state.register_runner(cx);
                // `stop`'s waker keeps this task's waker until it fires (which takes it), so it
                // is registered again only when the waker changed or it fired: not on every one
                // of the map's wake-ups.
                let fired = stop_waker.woken.swap(false, Ordering::AcqRel);
                if !known || fired {
                    stop_waker.run.register(cx.waker());
                }
                if fired {
                    let waker = futures::task::waker_ref(&stop_waker);
                    if stop
                        .as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_ready()
                    {
                        return Poll::Ready(Ok(true));
                    }
                }
                Poll::Pending
            }))
            .await;
        // One more turn of the map's tasks, so that work and members cancelled by the last
        // close are dropped now rather than at the next run.
        inner.local.run_until(tokio::task::yield_now()).await;
        result
    }
}

/// The waker `run_until` hands its `stop` future. This loop wakes whenever any channel does;
/// polling `stop` (a signal watch, say) each time would cost more than the channel's own work,
/// so it is polled only after it asked to be.
struct StopWaker {
    woken: AtomicBool,
    run: AtomicWaker,
}

impl futures::task::ArcWake for StopWaker {
    fn wake_by_ref(this: &Arc<Self>) {
        this.woken.store(true, Ordering::Release);
        this.run.wake();
    }
}

impl MapInner {
    /// Marks the map as running for as long as the guard lives (a run or a pass).
    pub(crate) fn start(&self) -> io::Result<Running<'_>> {
        if self.running.replace(true) {
            return Err(io::Error::other(
                "the map is already running (a callback cannot run its own map)",
            ));
        }
        self.watchdog.ran();
        self.remote.set_running(true);
        Ok(Running(self))
    }

    /// Lets channel tasks dispatch again after lock-step passes or `ExitNow`.
    fn resume(&self) {
        if self.state.set_paused(false) {
            for entry in self.snapshot() {
                entry.poke();
            }
        }
    }

    /// Runs `future` with the map's tasks (channels, members, requests) alongside.
    pub(crate) async fn run_tasks<F: Future>(&self, future: F) -> F::Output {
        self.local.run_until(future).await
    }
}

/// Marks the map as running for as long as a run or pass lasts.
pub(crate) struct Running<'a>(&'a MapInner);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
        self.0.remote.set_running(false);
    }
}
