//! Lock-step passes: asyncore's `poll()`, one deterministic round over the whole map, and the
//! [`Pass`] report that shows what happened in it.

use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use crate::driver::{Entry, Phase};
use crate::event::{ChannelId, Event, Interest, Ready};
use crate::map::MapInner;

/// What one lock-step pass did: which channel wanted what, which readiness fired, which
/// callback ran. Returned by [`Map::poll`](crate::Map::poll); printing it with `{:#?}` is a good
/// way to watch the reactor.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// let pass = asyncore::Map::new().poll(Duration::ZERO).await?;
/// assert!(pass.wanted.is_empty() && pass.events.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Each interested channel and what it waited for, in ascending id order. Channels whose
    /// `readable()` and `writable()` were both false are not listed.
    pub wanted: Vec<(ChannelId, Interest)>,
    /// The channels that were ready, and with what, in ascending id order.
    pub ready: Vec<(ChannelId, Ready)>,
    /// The callbacks that ran, in the order they ran.
    pub events: Vec<(ChannelId, Event)>,
    /// True when no channel was interested and the pass slept for its whole timeout.
    pub slept: bool,
}

pub(crate) async fn run_pass(map: &MapInner, timeout: Duration) -> io::Result<Pass> {
    let mut pass = Pass::default();
    let entries = map.snapshot();
    if entries.is_empty() {
        return Ok(pass);
    }
    let mut waiting: Vec<(Rc<Entry>, Interest)> = Vec::new();
    for entry in entries {
        let want = entry.interest();
        if !want.is_empty() {
            pass.wanted.push((entry.id, want));
            waiting.push((entry, want));
        }
    }
    if waiting.is_empty() {
        tokio::time::sleep(timeout).await;
        pass.slept = true;
        return Ok(pass);
    }
    // asyncore's select sees the sockets' state at the moment of the call; Tokio's readiness is
    // what its I/O driver last delivered. Yielding once lets the driver deliver what is pending.
    tokio::task::yield_now().await;
    // Polled unconstrained: the cooperative budget would otherwise report channels past the
    // first 128 as not ready.
    let gather = tokio::task::coop::unconstrained(poll_fn(|cx| {
        let ready: Vec<(&Rc<Entry>, Interest, Ready)> = waiting
            .iter()
            .filter_map(|(entry, want)| match entry.poll_io(cx, *want) {
                Poll::Ready(ready) => Some((entry, *want, ready)),
                Poll::Pending => None,
            })
            .collect();
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(ready)
        }
    }));
    let ready = tokio::time::timeout(timeout, gather)
        .await
        .unwrap_or_default();
    pass.ready = ready.iter().map(|(entry, _, r)| (entry.id, *r)).collect();
    let mut events = Vec::new();
    for phase in [Phase::Read, Phase::Write, Phase::Expt] {
        for (entry, want, r) in &ready {
            entry.phase_event(phase, *r, *want, &mut Some(&mut events));
            if let Some(error) = map.take_exit() {
                return Err(error);
            }
        }
    }
    pass.events = events;
    Ok(pass)
}
