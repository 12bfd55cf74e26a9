//! What a map shares with other threads: the queue of requests its handles send, whether it
//! is empty, and how often it has run.

use std::future::Future;
use std::rc::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};

use super::{Map, MapInner};

/// A request from a handle, run on the map's thread between callbacks.
pub(crate) type Request = Box<dyn FnOnce(&Map) + Send>;

/// The map's side that other threads see (through `MapHandle`).
pub(crate) struct Remote {
    requests: mpsc::UnboundedSender<Request>,
    empty: watch::Sender<bool>,
    /// Runs and passes started, for the watchdogs.
    runs: AtomicU64,
    /// Whether a run or pass is under way.
    running: AtomicBool,
}

impl Remote {
    pub(super) fn new() -> (Remote, mpsc::UnboundedReceiver<Request>) {
        let (requests, receiver) = mpsc::unbounded_channel();
        let remote = Remote {
            requests,
            empty: watch::Sender::new(true),
            runs: AtomicU64::new(0),
            running: AtomicBool::new(false),
        };
        (remote, receiver)
    }

    /// Sends `request` to the map's thread; gives it back if the map is gone.
    pub(crate) fn send(&self, request: Request) -> Result<(), Request> {
        self.requests.send(request).map_err(|refused| refused.0)
    }

    pub(crate) fn set_empty(&self, empty: bool) {
        self.empty
            .send_if_modified(|value| std::mem::replace(value, empty) != empty);
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self.empty.borrow()
    }

    /// Waits until the map is empty (or gone).
    pub(crate) async fn wait_empty(&self) {
        let mut empty = self.empty.subscribe();
        let _ = empty.wait_for(|empty| *empty).await;
    }

    /// A run or pass starts (`true`) or ends.
    pub(super) fn set_running(&self, running: bool) {
        if running {
            self.runs.fetch_add(1, Ordering::Relaxed);
        }
        self.running.store(running, Ordering::Relaxed);
    }

    /// Awaits the answer to a request. A request sent while the map is not running waits
    /// for its next run; if none comes within the watchdog's grace period, a `WARN` says so
    /// (once per request), as a handle that waits forever on a map nobody runs would
    /// otherwise be silent.
    pub(crate) async fn answer<T>(&self, answer: impl Future<Output = T>) -> T {
        if self.running.load(Ordering::Relaxed) {
            return answer.await;
        }
        let runs = self.runs();
        let mut answer = std::pin::pin!(answer);
        tokio::select! {
            biased;
            value = answer.as_mut() => return value,
            () = tokio::time::sleep(super::watchdog::GRACE) => {}
        }
        if self.runs() == runs && !self.running.load(Ordering::Relaxed) {
            tracing::warn!(
                "a request to a map has waited {:?} and nothing has run that map since it was sent: \
                 requests are served while the map runs (Map::run, run_until, serve, poll); \
                 run it on its thread",
                super::watchdog::GRACE
            );
        }
        answer.await
    }

    pub(super) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

/// The map's side of its handles: runs each request on the map's thread. A request may change
/// any dispatcher's state, so it counts as a callback for the interest sweep.
pub(super) async fn serve_requests(
    map: Weak<MapInner>,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(request) = requests.recv().await {
        match map.upgrade() {
            Some(inner) => {
                let state = std::rc::Rc::clone(&inner.state);
                request(&Map::from_inner(inner));
                state.touch();
            }
            None => return,
        }
    }
}
