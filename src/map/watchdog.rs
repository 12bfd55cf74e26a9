//! The warning for a map that nothing runs (why it matters: [hosting a map in a multi-thread
//! runtime](crate#hosting-a-map-in-a-multi-thread-runtime)). When a channel is added to a map
//! that is not running, a watchdog (a `Send` task on the runtime) looks again after a grace
//! period and, if the map has not run since, says so at `WARN`, once, naming the channel and
//! the fix.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use super::Remote;
use crate::event::ChannelId;

/// How long a map may hold channels without running before the watchdog speaks.
pub(super) const GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct Watchdog {
    /// A watchdog task is waiting: no other until the map has run.
    armed: Cell<bool>,
}

impl Watchdog {
    /// Channel `id` was added while the map is not running.
    pub(super) fn arm(&self, remote: &Arc<Remote>, id: ChannelId, dispatcher: &'static str) {
        if self.armed.replace(true) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime, no task to watch with; nothing can run the map either
        };
        let on_worker = runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            && tokio::task::try_id().is_some();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        let remote = Arc::clone(remote);
        let runs = remote.runs();
        runtime.spawn(async move {
            tokio::time::sleep(GRACE).await;
            if remote.runs() != runs || remote.is_empty() {
                return;
            }
            let hint = if on_worker {
                "it was added from a task on a multi-thread runtime's worker thread, whose \
                 default map nothing can ever run; add it from the thread that runs the map \
                 (or through that map's MapHandle), or run a map on a thread of its own"
            } else {
                "run it with Map::run (asyncore::run for the default map), run_until, serve \
                 or poll on this thread"
            };
            tracing::warn!(
                channel = %id,
                dispatcher,
                thread = %thread,
                "channel {id} was added to a map {GRACE:?} ago and nothing has run that map \
                 since: {hint}"
            );
        });
    }

    /// The map runs: the next add while it is not running arms a new watchdog.
    pub(super) fn ran(&self) {
        self.armed.set(false);
    }
}
