//! Lock-step passes: asyncore's `poll()`, one deterministic round over the whole map, and the
//! [`Pass`] report that shows what happened in it.

use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use crate::driver::{Entry, PHASES};
use crate::event::{ChannelId, Event, Interest, Ready};
use crate::map::{Map, MapInner};

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

impl Map {
    /// Runs at most `count` lock-step passes of at most `timeout` each: asyncore's
    /// `loop(timeout, count=count)`. Returns early when the map empties; at once for an empty
    /// map or `count == 0`. See [`poll`](Map::poll) for what one pass does.
    ///
    /// # Errors
    /// As [`poll`](Map::poll).
    pub async fn run_count(&self, timeout: Duration, count: usize) -> io::Result<()> {
        for _ in 0..count {
            if self.ids().is_empty() {
                break;
            }
            self.poll(timeout).await?;
        }
        Ok(())
    }

    /// Runs one lock-step pass, asyncore's `poll(timeout)`, and reports what happened in it.
    ///
    /// 1. Every channel, in ascending id order, is asked for its interest.
    /// 2. If none is interested, the pass sleeps `timeout`. Otherwise it waits up to `timeout`
    ///    until at least one wanted readiness is there, and collects all that are.
    /// 3. It dispatches all read events, then all write events, then all urgent events, each
    ///    in ascending id order, one callback at a time. A channel closed earlier in the pass
    ///    gets no more events; channels added during the pass join at the next one.
    ///
    /// Native tasks spawned on the map and requests from handles keep running during the pass;
    /// channel tasks wait.
    ///
    /// # Errors
    /// The [`ExitNow`](crate::ExitNow) a callback returned (the rest of the pass is skipped), or
    /// `Other` if the map is already running.
    pub async fn poll(&self, timeout: Duration) -> io::Result<Pass> {
        let inner = self.inner();
        let _running = inner.start()?;
        inner.state.set_paused(true);
        inner.run_tasks(run_pass(inner, timeout)).await
    }
}

async fn run_pass(map: &MapInner, timeout: Duration) -> io::Result<Pass> {
    let mut pass = Pass::default();
    let entries = map.snapshot();
    if entries.is_empty() {
        return Ok(pass);
    }
    // Each interested channel, what it wants, and what is ready without the socket (buffered
    // input).
    let mut waiting: Vec<(Rc<Entry>, Interest, Ready)> = Vec::new();
    for entry in entries {
        let (want, now) = {
            let _span = entry.enter_span();
            let (want, now) = entry.interest();
            entry.asked(want);
            (want, now)
        };
        if !want.is_empty() {
            pass.wanted.push((entry.id, want));
        }
        // A TLS channel is polled though its dispatcher wants nothing: its session may have a
        // handshake to drive or records to flush (not listed in `wanted`).
        if !want.is_empty() || !now.is_empty() || entry.polls_alone() {
            waiting.push((entry, want, now));
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
            .filter_map(|(entry, want, now)| {
                let polled = match entry.poll_io(cx, *want) {
                    Poll::Ready(ready) => ready,
                    Poll::Pending => Ready::NONE,
                };
                let ready = polled | *now;
                (!ready.is_empty()).then_some((entry, *want, ready))
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
    for (entry, _, r) in &ready {
        let _span = entry.enter_span();
        entry.saw(*r);
    }
    pass.ready = ready.iter().map(|(entry, _, r)| (entry.id, *r)).collect();
    let mut events = Vec::new();
    // The TLS sessions' events first (completed handshakes, failures), as a connect's.
    for (entry, _, r) in &ready {
        if r.is_tls() {
            entry.tls_phase(&mut Some(&mut events));
            if let Some(error) = map.state.take_exit() {
                return Err(error);
            }
        }
    }
    for phase in PHASES {
        for (entry, want, r) in &ready {
            let _span = entry.enter_span();
            entry.phase_event(phase, *r, *want, &mut Some(&mut events));
            if let Some(error) = map.state.take_exit() {
                return Err(error);
            }
        }
    }
    pass.events = events;
    Ok(pass)
}
