//! A readiness Tokio does not report through a socket's own polls, awaited on the side and
//! held as one pending event until the channel takes it: a datagram socket's pending error
//! (`ERROR`) and a TCP stream's urgent data (`PRIORITY`).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;

/// The wait for the readiness: `true` when it was seen, `false` when it never will be (the
/// peer closed, the runtime is shutting down).
pub(crate) type Wait = Pin<Box<dyn Future<Output = bool>>>;

#[derive(Default)]
pub(crate) struct Latch {
    /// Made when first needed, dropped when it completes.
    wait: Option<Wait>,
    pending: bool,
    finished: bool,
}

impl Latch {
    /// Whether the readiness is pending; otherwise starts (`start`) or goes on waiting for it,
    /// registering the task for a wake-up.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, start: impl FnOnce() -> Wait) -> bool {
        if self.pending || self.finished {
            return self.pending;
        }
        let wait = self.wait.get_or_insert_with(start);
        let std::task::Poll::Ready(seen) = wait.as_mut().poll(cx) else {
            return false;
        };
        self.wait = None;
        self.pending = seen;
        self.finished = !seen;
        seen
    }

    /// Takes the pending event, if any; the next one needs a new wait.
    pub(crate) fn take(&mut self) -> bool {
        std::mem::take(&mut self.pending)
    }
}
