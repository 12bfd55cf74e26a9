//! Handles: how native async code on any thread reaches a map and its channels. The public
//! docs are on [`MapHandle`] and [`ChannelHandle`].

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::channel::Channel;
use crate::dispatcher::Dispatcher;
use crate::error::panic_error;
use crate::event::ChannelId;
use crate::map::{not_found, Map, Remote, Request};
use crate::snapshot::MapSnapshot;

impl Map {
    /// A `Send + Clone` handle to this map for native tasks on any thread.
    pub fn handle(&self) -> MapHandle {
        MapHandle {
            remote: Arc::clone(&self.inner().remote),
        }
    }
}

/// A `Send + Clone` handle to a [`Map`], for native tasks on any thread.
///
/// A map is `!Send` and lives on one thread. A handle sends each request to the map's thread,
/// where the map runs it between callbacks (never during one), and the answer comes back to the
/// caller; a factory given to [`add`](MapHandle::add) builds the channel and its dispatcher
/// there, so neither has to be `Send`. Requests are served while the map runs ([`Map::run`],
/// [`Map::serve`], or lock-step passes); a request sent while it does not waits until it does.
///
/// # Example
///
/// A map on the main thread of a multi-thread runtime and a native task on a worker thread,
/// which adds a channel to the map and calls into its dispatcher:
///
/// ```
/// use std::io;
/// use asyncore::{Channel, Dispatcher, Map};
/// use bytes::{Buf, BytesMut};
/// use tokio::io::AsyncReadExt;
///
/// /// Sends what is put in its outbox.
/// #[derive(Default)]
/// struct Outbox { queued: BytesMut, sent: usize }
///
/// impl Dispatcher for Outbox {
///     fn readable(&self, _: &Channel) -> bool { false }
///     fn writable(&self, _: &Channel) -> bool { !self.queued.is_empty() }
///     fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
///         let sent = channel.send(&self.queued)?;
///         self.queued.advance(sent);
///         self.sent += sent;
///         Ok(())
///     }
/// }
///
/// #[tokio::main] // main() runs on the main thread (block_on), tasks on worker threads
/// async fn main() -> io::Result<()> {
///     let map = Map::new();
///     let handle = map.handle();
///     let native = tokio::spawn(async move {
///         let (ours, mut theirs) = tokio::net::UnixStream::pair()?;
///         // The factory runs on the map's thread and builds the (non-Send) dispatcher there.
///         let id = handle.add(move || Ok((Channel::from_unix(ours), Outbox::default()))).await?;
///         handle.call(id, |outbox: &mut Outbox, _| outbox.queued.extend_from_slice(b"hello")).await?;
///         let mut greeting = [0; 5];
///         theirs.read_exact(&mut greeting).await?;
///         assert_eq!(&greeting, b"hello");
///         assert_eq!(handle.call(id, |outbox: &mut Outbox, _| outbox.sent).await?, 5);
///         assert_eq!(handle.query(|map| map.len()).await?, 1);
///         handle.close_all().await
///     });
///     // Serve the map (empty at first) until the native task is done.
///     let mut outcome = None;
///     map.serve(async { outcome = Some(native.await.expect("the native task")) }).await?;
///     assert!(map.is_empty());
///     outcome.expect("it finished")
/// }
/// ```
#[derive(Clone)]
pub struct MapHandle {
    remote: Arc<Remote>,
}

impl MapHandle {
    /// Runs `f` with the map on the map's thread and returns its result: the general request
    /// the other methods are built on.
    ///
    /// # Errors
    /// `BrokenPipe` if the map is gone.
    pub async fn query<R, F>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce(&Map) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let request: Request = Box::new(move |map: &Map| {
            let _ = reply.send(f(map));
        });
        self.remote.send(request).map_err(|_| map_gone())?;
        self.remote.answer(answer).await.map_err(|_| map_gone())
    }

    /// Builds a channel and its dispatcher on the map's thread with `factory` (which is `Send`
    /// even though what it builds is not) and adds them; returns the new channel's id.
    ///
    /// # Errors
    /// The factory's error, or `BrokenPipe` if the map is gone.
    pub async fn add<D, F>(&self, factory: F) -> io::Result<ChannelId>
    where
        D: Dispatcher,
        F: FnOnce() -> io::Result<(Channel, D)> + Send + 'static,
    {
        self.query(move |map| {
            let (channel, dispatcher) = factory()?;
            map.add(channel, dispatcher)
        })
        .await?
    }

    /// Runs `f` against channel `id`'s dispatcher (which must be a `D`) and channel, on the
    /// channel's own task, between its callbacks, and returns its result; the channel's
    /// interest is asked again afterwards.
    ///
    /// # Errors
    /// `NotFound` if the channel is not in the map, or closes before `f` runs; `InvalidInput`
    /// if its dispatcher is not a `D`; `Other` if `f` panicked (the channel's `handle_error`
    /// gets the panic); `BrokenPipe` if the map is gone.
    pub async fn call<D, R, F>(&self, id: ChannelId, f: F) -> io::Result<R>
    where
        D: Dispatcher,
        F: FnOnce(&mut D, &mut Channel) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<io::Result<R>>();
        let request: Request = Box::new(move |map: &Map| {
            let Some(entry) = map.entry(id) else {
                let _ = reply.send(Err(not_found(id)));
                return;
            };
            let type_name = entry.type_name;
            entry.deliver(Box::new(move |dispatcher, channel| {
                let any: &mut dyn Any = dispatcher;
                let Some(dispatcher) = any.downcast_mut::<D>() else {
                    let wrong = format!(
                        "channel {id} is a {type_name}, not a {}",
                        std::any::type_name::<D>()
                    );
                    let _ = reply.send(Err(io::Error::new(io::ErrorKind::InvalidInput, wrong)));
                    return Ok(());
                };
                match catch_unwind(AssertUnwindSafe(|| f(dispatcher, channel))) {
                    Ok(value) => {
                        let _ = reply.send(Ok(value));
                        Ok(())
                    }
                    Err(payload) => {
                        let error = panic_error(payload, "a closure run on the channel");
                        let _ = reply.send(Err(io::Error::other(error.to_string())));
                        Err(error)
                    }
                }
            }));
        });
        self.remote.send(request).map_err(|_| map_gone())?;
        self.remote.answer(answer).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("channel {id} closed before the call ran"),
            )
        })?
    }

    /// A snapshot of the map, taken on the map's thread between callbacks ([`Map::snapshot`]):
    /// what a monitor on another thread shows.
    ///
    /// # Errors
    /// `BrokenPipe` if the map is gone.
    pub async fn snapshot(&self) -> io::Result<MapSnapshot> {
        self.query(Map::snapshot).await
    }

    /// Closes every channel of the map ([`Map::close_all`]).
    pub async fn close_all(&self) -> io::Result<()> {
        self.query(|map| map.close_all()).await
    }

    /// Waits until the map is empty (or gone).
    pub async fn wait_empty(&self) {
        self.remote.wait_empty().await;
    }

    /// Whether the map is empty right now.
    pub fn is_empty(&self) -> bool {
        self.remote.is_empty()
    }

    /// Asks channel `id` for its interest again ([`Map::wake`]), from any thread: for a
    /// dispatcher with [`InterestScope::Own`](crate::InterestScope::Own) whose `readable()` or
    /// `writable()` reads state that native code changed. Does not wait; a channel that is
    /// gone is ignored.
    ///
    /// # Errors
    /// `BrokenPipe` if the map is gone.
    pub fn wake(&self, id: ChannelId) -> io::Result<()> {
        let request: Request = Box::new(move |map: &Map| {
            map.wake(id);
        });
        self.remote.send(request).map_err(|_| map_gone())
    }

    /// A handle to one channel of the map.
    pub fn channel(&self, id: ChannelId) -> ChannelHandle {
        ChannelHandle {
            id,
            map: self.clone(),
        }
    }
}

impl fmt::Debug for MapHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapHandle")
            .field("empty", &self.is_empty())
            .finish()
    }
}

/// A `Send + Clone` handle to one channel of a map ([`MapHandle::channel`]), for native tasks on
/// any thread: call into its dispatcher, wake it, wait for it to close, close it.
///
/// # Example
///
/// A dispatcher that sends what native code leaves in a mailbox shared across threads. Its
/// `writable()` reads the mailbox; it declares its interest its own
/// ([`InterestScope::Own`](crate::InterestScope::Own)), so the native task that fills the
/// mailbox wakes it:
///
/// ```
/// use std::io;
/// use std::sync::{Arc, Mutex};
/// use asyncore::{Channel, Dispatcher, InterestScope, Map};
/// use tokio::io::AsyncReadExt;
///
/// struct Mailbox { letters: Arc<Mutex<Vec<u8>>>, sent: usize }
///
/// impl Dispatcher for Mailbox {
///     fn interest_scope(&self) -> InterestScope { InterestScope::Own }
///     fn writable(&self, _: &Channel) -> bool { !self.letters.lock().unwrap().is_empty() }
///     fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
///         let mut letters = self.letters.lock().unwrap();
///         let sent = channel.send(&letters)?;
///         letters.drain(..sent);
///         self.sent += sent;
///         Ok(())
///     }
///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
///         channel.recv(64)?; // end of file: handle_read_eof, then handle_close closes
///         Ok(())
///     }
/// }
///
/// #[tokio::main]
/// async fn main() -> io::Result<()> {
///     let map = Map::new();
///     let (ours, mut theirs) = tokio::net::UnixStream::pair()?;
///     let letters = Arc::new(Mutex::new(Vec::new()));
///     let mailbox = Mailbox { letters: letters.clone(), sent: 0 };
///     let channel = map.handle().channel(map.add(Channel::from_unix(ours), mailbox)?);
///     let native = tokio::spawn(async move { // on a worker thread
///         letters.lock().unwrap().extend_from_slice(b"hi");
///         channel.wake()?; // what writable() reads changed outside the channel's callbacks
///         let mut letter = [0; 2];
///         theirs.read_exact(&mut letter).await?;
///         assert_eq!(&letter, b"hi");
///         assert_eq!(channel.call(|mailbox: &mut Mailbox, _| mailbox.sent).await?, 2);
///         drop(theirs); // the peer hangs up...
///         channel.closed().await // ...and the channel leaves the map
///     });
///     let mut outcome = None;
///     map.serve(async { outcome = Some(native.await.expect("the native task")) }).await?;
///     assert!(map.is_empty());
///     outcome.expect("it finished")
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ChannelHandle {
    id: ChannelId,
    map: MapHandle,
}

impl ChannelHandle {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// Runs `f` against the channel's dispatcher and channel on the map's thread; see
    /// [`MapHandle::call`].
    pub async fn call<D, R, F>(&self, f: F) -> io::Result<R>
    where
        D: Dispatcher,
        F: FnOnce(&mut D, &mut Channel) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.map.call(self.id, f).await
    }

    /// Completes when the channel has left the map (closed by anyone, or the map closed or
    /// dropped); at once if it is not in the map.
    ///
    /// # Errors
    /// `BrokenPipe` if the map is gone before the question reaches it.
    pub async fn closed(&self) -> io::Result<()> {
        let id = self.id;
        let waiter = self
            .map
            .query(move |map| {
                let (notify, closed) = oneshot::channel();
                if let Some(entry) = map.entry(id) {
                    entry.on_close(notify);
                }
                closed
            })
            .await?;
        let _ = waiter.await;
        Ok(())
    }

    /// Asks the channel for its interest again ([`MapHandle::wake`]).
    ///
    /// # Errors
    /// `BrokenPipe` if the map is gone.
    pub fn wake(&self) -> io::Result<()> {
        self.map.wake(self.id)
    }

    /// Closes the channel (no `handle_close`, as [`Channel::close`]).
    ///
    /// # Errors
    /// `NotFound` if the channel is no longer in the map; `BrokenPipe` if the map is gone.
    pub async fn close(&self) -> io::Result<()> {
        let id = self.id;
        self.map
            .query(move |map| {
                if map.contains(id) {
                    map.close_channel(id);
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no channel {id} in the map"),
                    ))
                }
            })
            .await?
    }
}

fn map_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the map is gone")
}
