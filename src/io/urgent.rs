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

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::task::Context;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::latch::Latch;

pub(crate) struct UrgentWatch {
    fd: Rc<AsyncFd<OwnedFd>>,
    urgent: Latch,
}

impl UrgentWatch {
    /// Duplicates `socket`'s descriptor and registers the duplicate for `PRIORITY`.
    pub(crate) fn new(socket: impl AsFd) -> io::Result<UrgentWatch> {
        let duplicate = socket.as_fd().try_clone_to_owned()?;
        Ok(UrgentWatch {
            fd: Rc::new(register(duplicate)?),
            urgent: Latch::default(),
        })
    }

    /// Whether urgent data is pending; registers the task for a wake-up when it is not.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        let fd = &self.fd;
        self.urgent
            .poll(cx, || Box::pin(wait_urgent(Rc::clone(fd))))
    }

    /// Takes the pending urgent event, if any.
    pub(crate) fn take(&mut self) -> bool {
        self.urgent.take()
    }
}

/// Waits for `PRIORITY` readiness and clears it.
#[cfg(any(target_os = "linux", target_os = "android"))]
async fn wait_urgent(fd: Rc<AsyncFd<OwnedFd>>) -> bool {
    let Ok(mut guard) = fd.ready(Interest::PRIORITY).await else {
        return false;
    };
    if guard.ready().is_priority() {
        guard.clear_ready_matching(tokio::io::Ready::PRIORITY);
        true
    } else {
        false
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
async fn wait_urgent(_: Rc<AsyncFd<OwnedFd>>) -> bool {
    false
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
