//! The interest sweep (asks [`InterestScope::Shared`] channels again after every batch of
//! callbacks) and the audit (checks [`InterestScope::Own`] channels once a second): the rule,
//! its cost and what a batch is are in the crate docs, [interest and shared
//! state](crate#interest-and-shared-state).

use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::MapInner;
use crate::driver::Entry;
use crate::event::InterestScope;
use crate::loop_state::LoopState;

/// How often the audit looks at `InterestScope::Own` channels.
pub(super) const AUDIT_INTERVAL: Duration = Duration::from_secs(1);
/// At most one stale-interest warning per map per this interval.
const AUDIT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The sweep's task: waits for callbacks to run, then asks the `Shared` channels again.
pub(super) async fn sweep(map: Weak<MapInner>, state: Rc<LoopState>) {
    let mut batch: Vec<Rc<Entry>> = Vec::new();
    loop {
        poll_fn(|cx| state.poll_touched(cx)).await;
        if state.paused() {
            continue; // lock-step passes ask every channel themselves; a resume pokes them all
        }
        let Some(inner) = map.upgrade() else {
            return;
        };
        // A snapshot: asking may run `handle_error`, which may close channels.
        inner
            .shared
            .borrow()
            .values()
            .for_each(|entry| batch.push(Rc::clone(entry)));
        drop(inner);
        for entry in batch.drain(..) {
            if let Some((was, now)) = entry.refresh_interest() {
                changed(&entry, was, now);
            }
        }
    }
}

/// Says, in the channel's span, that another callback changed its interest. Out of line: the
/// sweep's loop stays small for the common case, where nothing changed.
#[cold]
#[inline(never)]
fn changed(entry: &Entry, was: crate::event::Interest, now: crate::event::Interest) {
    let _span = entry.enter_span();
    tracing::trace!(channel = %entry.id, ?was, ?now, "interest changed by another callback");
}

/// The audit's task, started with the map's first `InterestScope::Own` channel.
pub(super) async fn audit(map: Weak<MapInner>, state: Rc<LoopState>, every: Duration) {
    let mut last_warning: Option<Instant> = None;
    let mut channels: Vec<Rc<Entry>> = Vec::new();
    loop {
        tokio::time::sleep(every).await;
        if state.paused() {
            continue;
        }
        let Some(inner) = map.upgrade() else {
            return;
        };
        channels.extend(
            inner
                .entries
                .borrow()
                .values()
                .filter(|entry| entry.scope == InterestScope::Own)
                .cloned(),
        );
        drop(inner);
        for entry in channels.drain(..) {
            let Some((was, now)) = entry.refresh_interest() else {
                continue;
            };
            let now_instant = Instant::now();
            if last_warning
                .is_some_and(|at| now_instant.duration_since(at) < AUDIT_WARNING_INTERVAL)
            {
                continue;
            }
            last_warning = Some(now_instant);
            let _span = entry.enter_span();
            tracing::warn!(
                channel = %entry.id,
                dispatcher = entry.type_name,
                "stale interest: channel {} waited for {was:?} but its readable()/writable() now \
                 say {now:?}, changed outside its callbacks without a wake; call Map::wake({}) \
                 (or ChannelHandle::wake) after changing what they read, or return \
                 InterestScope::Shared from interest_scope()",
                entry.id,
                entry.id,
            );
        }
    }
}
