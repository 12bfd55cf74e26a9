//! Results of async work started by a callback, waiting to run as callbacks on the channel's
//! task.

use std::io;

use super::Entry;
use crate::channel::Channel;
use crate::dispatcher::Dispatcher;
use crate::event::Event;

/// A completion callback waiting for its channel's task.
pub(crate) type Completion = Box<dyn FnOnce(&mut dyn Dispatcher, &mut Channel) -> io::Result<()>>;

impl Entry {
    /// Queues the result of a piece of work for the channel's task.
    pub(crate) fn deliver(&self, completion: Completion) {
        self.with_rare(|rare| rare.completions.push_back(completion));
        self.poke();
    }

    /// Runs the queued completion callbacks, oldest first; one inlined test when there are
    /// none.
    #[inline]
    pub(super) fn run_completions(&self) {
        let queued = self
            .rare
            .borrow()
            .as_ref()
            .is_some_and(|rare| !rare.completions.is_empty());
        if queued {
            self.run_queued_completions();
        }
    }

    fn run_queued_completions(&self) {
        loop {
            let Some(completion) = self.with_rare(|rare| rare.completions.pop_front()) else {
                return;
            };
            if self.stopping() {
                self.with_rare(|rare| rare.completions.push_front(completion));
                return;
            }
            let mut channel = self.channel.borrow_mut();
            let mut dispatcher = self.dispatcher.borrow_mut();
            if channel.is_closed() {
                self.with_rare(|rare| rare.completions.clear());
                return;
            }
            self.call(
                &mut **dispatcher,
                &mut channel,
                Event::Completion,
                &mut None,
                completion,
            );
        }
    }
}
