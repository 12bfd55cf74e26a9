//! Watching a TCP stream for urgent (out-of-band) data: asyncore's exceptional condition,
//! `select`'s `e` set, `POLLPRI`.
//!
//! Tokio registers a `TcpStream` for reads and writes only, so its readiness never reports
//! urgent data (tokio-rs/tokio#5784). Rather than re-register the stream itself (which would
//! take every stream channel off Tokio's own `TcpStream` paths), a watched channel keeps its
//! stream and adds a *duplicate* of the socket's descriptor, registered through `AsyncFd` for
//! `PRIORITY` only: epoll keys registrations by descriptor, so the two coexist, and both see the
//! same socket. The duplicate is closed with the channel.
//!
//! The readiness is consumed the moment it is seen (Tokio never clears `PRIORITY` by itself:
//! `recv(MSG_OOB)` with nothing there is `EINVAL`, not `WouldBlock`), and the channel holds it as
//! one pending event until the reactor runs `handle_expt`. Clearing first means urgent data
//! that arrives while `handle_expt` runs raises a new event, and urgent data the handler leaves
//! unread does not make the channel spin: one event per urgent byte the peer sends.
//!
//! When the peer closes, no urgent data can follow: Tokio then completes the wait with
//! "read closed" and no `PRIORITY`, and the watch stops (the stream's own readiness reports
//! the close).

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Context;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub(crate) struct UrgentWatch {
    fd: Rc<AsyncFd<OwnedFd>>,
    wait: Option<Pin<Box<dyn Future<Output = Seen>>>>,
    pending: bool,
    /// The peer closed (or the runtime is shutting down): nothing more to watch for.
    finished: bool,
}

enum Seen {
    Urgent,
    Finished,
}

impl UrgentWatch {
    /// Duplicates `socket`'s descriptor and registers the duplicate for `PRIORITY`.
    pub(crate) fn new(socket: impl AsFd) -> io::Result<UrgentWatch> {
        let duplicate = socket.as_fd().try_clone_to_owned()?;
        Ok(UrgentWatch {
            fd: Rc::new(register(duplicate)?),
            wait: None,
            pending: false,
            finished: false,
        })
    }

    /// Whether urgent data is pending; registers the task for a wake-up when it is not.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        if self.pending {
            return true;
        }
        if self.finished {
            return false;
        }
        let wait = self.wait.get_or_insert_with(|| {
            let fd = Rc::clone(&self.fd);
            Box::pin(wait_urgent(fd))
        });
        let Some(seen) = poll_once(wait, cx) else {
            return false;
        };
        self.wait = None;
        match seen {
            Seen::Urgent => self.pending = true,
            Seen::Finished => self.finished = true,
        }
        self.pending
    }

    /// Takes the pending urgent event, if any.
    pub(crate) fn take(&mut self) -> bool {
        std::mem::take(&mut self.pending)
    }
}

fn poll_once<T>(future: &mut Pin<Box<dyn Future<Output = T>>>, cx: &mut Context<'_>) -> Option<T> {
    match future.as_mut().poll(cx) {
        std::task::Poll::Ready(value) => Some(value),
        std::task::Poll::Pending => None,
    }
}

/// Waits for `PRIORITY` readiness and clears it.
#[cfg(any(target_os = "linux", target_os = "android"))]
async fn wait_urgent(fd: Rc<AsyncFd<OwnedFd>>) -> Seen {
    let Ok(mut guard) = fd.ready(Interest::PRIORITY).await else {
        return Seen::Finished;
    };
    if guard.ready().is_priority() {
        guard.clear_ready_matching(tokio::io::Ready::PRIORITY);
        Seen::Urgent
    } else {
        Seen::Finished
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
async fn wait_urgent(_: Rc<AsyncFd<OwnedFd>>) -> Seen {
    Seen::Finished
}

/// Tokio offers `PRIORITY` interest on Linux and Android only.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn register(_: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "urgent data events need Linux or Android (Tokio's PRIORITY interest)",
    ))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `AsyncFd::register_with_interest` asks that the descriptor stay open and the same
    // while registered. The `OwnedFd` is moved into the `AsyncFd`, which only lends it out
    // shared (`get_mut` is never called), so nothing closes or replaces it before the drop.
    unsafe { AsyncFd::register_with_interest(fd, Interest::PRIORITY) }.map_err(io::Error::from)
}
