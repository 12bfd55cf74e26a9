//! Time and async work, seen from a callback: deadlines, delayed calls, and futures whose
//! results come back as callbacks.
//!
//! asyncore has no timers, and a callback must never block, so its users could neither wait
//! nor call anything slow. Here a callback can:
//!
//! - set a **deadline** on its channel ([`Channel::set_timeout`]): if it passes first, the
//!   channel's task runs [`Dispatcher::handle_timeout`]. One deadline per channel, reset or
//!   cleared at will; the idle timeout that closes a silent client is two lines.
//! - start **async work** ([`Channel::spawn`]): the future runs as its own task on the map's
//!   thread (so it may hold `Rc`s, and it may await anything: a database client, an HTTP
//!   request, a channel to a native task), and when it finishes its output is handed to a
//!   callback that runs on the channel's task with `&mut` access to the dispatcher and the
//!   channel, like any other callback. Other channels run meanwhile.
//! - **call later** ([`Channel::call_later`]): the same, with a sleep for the work.
//!
//! Cancellation: when the channel closes, its unfinished work is aborted (the futures are
//! dropped at their next await point) and no completion callback runs for it; a finished
//! result that arrives after the close is dropped. [`Work::cancel`] aborts one piece early.
//!
//! Deadlines and completions are served while the map runs freely ([`Map::run`](crate::Map::run));
//! during lock-step passes completions still run (between the pass's dispatch steps, as
//! requests from handles do), deadlines wait for the next free run. The deadline itself is the
//! channel's ([`Channel::set_deadline`]); the work is above the map, which runs it.

use std::any::Any;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::channel::Channel;
use crate::dispatcher::Dispatcher;
use crate::driver::Completion;
use crate::map::map_of;

/// Work started by [`Channel::spawn`] or [`Channel::call_later`].
#[derive(Debug, Clone)]
pub struct Work {
    abort: AbortHandle,
}

impl Work {
    /// Aborts the work; its completion callback will not run. No effect once it finished.
    pub fn cancel(&self) {
        self.abort.abort();
    }

    /// Whether the work's future has finished (or was cancelled).
    pub fn is_finished(&self) -> bool {
        self.abort.is_finished()
    }
}

impl Channel {
    /// Runs `work` as a task on the map's thread; when it finishes, `then` runs on this
    /// channel's task with the dispatcher (a `D`), the channel and the output.
    ///
    /// The work is aborted if the channel closes first. `then` follows the usual error
    /// routing: an error it returns goes to `handle_error`, a disconnect to `handle_close`.
    ///
    /// # Errors
    /// `NotConnected` if the channel is not in a map (or already closed).
    ///
    /// # Example
    ///
    /// A handler that looks something up without blocking the reactor:
    ///
    /// ```
    /// # #![allow(dead_code)]
    /// use std::io;
    /// use asyncore::{Channel, Dispatcher};
    ///
    /// struct Lookup;
    /// impl Dispatcher for Lookup {
    ///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
    ///         let key = channel.recv(512)?;
    ///         channel.spawn(
    ///             async move { slow_lookup(&key).await },
    ///             |_: &mut Lookup, channel: &mut Channel, value: Vec<u8>| {
    ///                 channel.send(&value)?;
    ///                 Ok(())
    ///             },
    ///         )?;
    ///         Ok(())
    ///     }
    /// }
    /// # async fn slow_lookup(key: &[u8]) -> Vec<u8> { key.to_vec() }
    /// ```
    pub fn spawn<D, T, F, C>(&mut self, work: F, then: C) -> io::Result<Work>
    where
        D: Dispatcher,
        F: Future<Output = T> + 'static,
        T: 'static,
        C: FnOnce(&mut D, &mut Channel, T) -> io::Result<()> + 'static,
    {
        let map = match map_of(self) {
            Some(map) if !self.is_closed() => map,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("spawn: channel {} is not in a map", self.id()),
                ))
            }
        };
        let id = self.id();
        let weak = std::rc::Rc::downgrade(&map);
        let abort = map.spawn_local(async move {
            let output = work.await;
            let completion: Completion = Box::new(move |dispatcher, channel| {
                let any: &mut dyn Any = dispatcher;
                match any.downcast_mut::<D>() {
                    Some(dispatcher) => then(dispatcher, channel, output),
                    None => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("completion expects a {}", std::any::type_name::<D>()),
                    )),
                }
            });
            if let Some(map) = weak.upgrade() {
                map.deliver(id, completion);
            }
        });
        self.keep_work(abort.clone());
        Ok(Work { abort })
    }

    /// Runs `then` on this channel's task after `delay` (asyncio's `call_later`); cancelled if
    /// the channel closes first.
    ///
    /// # Errors
    /// As [`spawn`](Channel::spawn).
    pub fn call_later<D, C>(&mut self, delay: Duration, then: C) -> io::Result<Work>
    where
        D: Dispatcher,
        C: FnOnce(&mut D, &mut Channel) -> io::Result<()> + 'static,
    {
        self.spawn(
            tokio::time::sleep(delay),
            move |dispatcher: &mut D, channel, ()| then(dispatcher, channel),
        )
    }
}
