//! The file descriptor under a file channel (asyncore's `file_wrapper`): a pipe, FIFO,
//! terminal, character device or socket adopted by [`Channel::from_fd`](crate::Channel::from_fd),
//! or a regular file.
//!
//! Two modes, chosen when the descriptor is registered:
//!
//! - **Polled**: the descriptor is registered with Tokio's reactor (`AsyncFd`), and readiness is
//!   Tokio's cached readiness, as for sockets: it stays set until a read or write returns
//!   `WouldBlock`. On a pipe or FIFO a short read also clears it (the pipe is empty), and a short
//!   write (the pipe is full), as the stream fast path does; that rule is not used for other
//!   descriptors, since a terminal in canonical mode returns one line per read however many are
//!   waiting. A pipe whose writer has gone reports `EPOLLHUP`: Tokio keeps that sticky, so the
//!   channel stays readable and reads what is left until `read` returns 0 (asyncore's `poll`
//!   backend closes at the hang-up and loses it).
//! - **Always ready**: epoll refuses regular files and `/dev/null` (`EPERM`), while `select`, and
//!   so asyncore, reports them always ready. So does this mode: every readiness poll succeeds
//!   for whatever the dispatcher waits for, at the price of one unit of Tokio's cooperative
//!   budget, so that a channel that is always ready still yields to the rest of the thread.
//!   There is no cached readiness to clear.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::task::{Context, Poll};

use bytes::BufMut;
use tokio::io::unix::AsyncFd;

use super::{do_io, short_transfer, CachedReadiness, READABLE, WRITABLE};
use crate::event::{Interest, Ready};

pub(crate) struct FileIo {
    fd: Mode,
    /// A pipe or FIFO: a short read or write proves it empty or full.
    fifo: bool,
}

enum Mode {
    Polled(AsyncFd<File>),
    AlwaysReady(File),
}

impl FileIo {
    /// Registers `fd` (already non-blocking) with Tokio's reactor, or falls back to the
    /// always-ready mode if epoll refuses it.
    pub(crate) fn register(fd: OwnedFd) -> io::Result<FileIo> {
        let file = File::from(fd);
        let fifo = file.metadata().is_ok_and(|m| m.file_type().is_fifo());
        let fd = match register(file) {
            Ok(fd) => Mode::Polled(fd),
            Err(refused) if refused.cause.raw_os_error() == Some(libc::EPERM) => {
                Mode::AlwaysReady(refused.file)
            }
            Err(refused) => return Err(refused.cause),
        };
        Ok(FileIo { fd, fifo })
    }

    /// Whether epoll refused the descriptor and it is served as always ready.
    pub(crate) fn always_ready(&self) -> bool {
        matches!(self.fd, Mode::AlwaysReady(_))
    }

    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, want: Interest) -> Ready {
        // As for sockets, an `Err` (the runtime shutting down) counts as ready, so that the next
        // operation reports it.
        match &self.fd {
            Mode::Polled(fd) => {
                let mut ready = Ready::NONE;
                if want.is_read() && fd.poll_read_ready(cx).is_ready() {
                    ready = ready | Ready::READ;
                }
                if want.is_write() && fd.poll_write_ready(cx).is_ready() {
                    ready = ready | Ready::WRITE;
                }
                ready
            }
            Mode::AlwaysReady(_) => match tokio::task::coop::poll_proceed(cx) {
                Poll::Ready(progress) => {
                    progress.made_progress();
                    let mut ready = Ready::NONE;
                    if want.is_read() {
                        ready = ready | Ready::READ;
                    }
                    if want.is_write() {
                        ready = ready | Ready::WRITE;
                    }
                    ready
                }
                // The budget is spent: Tokio has arranged for the task to run again after the
                // others had their turn.
                Poll::Pending => Ready::NONE,
            },
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.file().as_raw_fd()
    }

    pub(crate) fn sock_ref(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(self.file())
    }

    fn file(&self) -> &File {
        match &self.fd {
            Mode::Polled(fd) => fd.get_ref(),
            Mode::AlwaysReady(file) => file,
        }
    }

    /// `read(2)` into `buf`'s spare capacity.
    pub(crate) fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        let asked = buf.chunk_mut().len();
        let file = self.file();
        do_io(
            &self.fd,
            READABLE,
            || read_buf(file, buf),
            self.drained(asked),
        )
    }

    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let asked = buf.len();
        let mut file = self.file();
        do_io(&self.fd, READABLE, || file.read(buf), self.drained(asked))
    }

    pub(crate) fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        let mut file = self.file();
        do_io(
            &self.fd,
            WRITABLE,
            || file.write(data),
            self.drained(data.len()),
        )
    }

    /// No short-write rule, as for streams: `writev` also stops at `IOV_MAX` buffers.
    pub(crate) fn try_write_vectored(&self, data: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut file = self.file();
        do_io(&self.fd, WRITABLE, || file.write_vectored(data), |_| false)
    }

    /// Whether a transfer that stops short of `asked` bytes proves the descriptor drained or
    /// full: on a pipe or FIFO only.
    fn drained(&self, asked: usize) -> impl Fn(&usize) -> bool {
        let fifo = self.fifo;
        move |&n| fifo && short_transfer(n, asked)
    }
}

/// In polled mode, operations go through Tokio's `try_io`, which clears the cached readiness
/// when they return `WouldBlock`; always-ready descriptors have no readiness to clear.
impl CachedReadiness for Mode {
    #[inline]
    fn attempt<R>(
        &self,
        interest: tokio::io::Interest,
        op: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Mode::Polled(fd) => fd.try_io(interest, |_| op()),
            Mode::AlwaysReady(_) => op(),
        }
    }
}

struct Refused {
    file: File,
    cause: io::Error,
}

/// Registers `file` with the current runtime's reactor for reads and writes.
#[allow(unsafe_code)]
fn register(file: File) -> Result<AsyncFd<File>, Refused> {
    // SAFETY: `AsyncFd::register` asks that the descriptor stay open and the same for the
    // life of the `AsyncFd`. The `File` owns it and is moved into the `AsyncFd`, which only
    // hands out shared references (and `get_mut` is never used here), so nothing can close
    // or replace it before the `AsyncFd` is dropped.
    unsafe { AsyncFd::register(file) }.map_err(|e| {
        let (file, cause) = e.into_parts();
        Refused { file, cause }
    })
}

/// `read(2)` into the spare capacity of `buf`, without zeroing it first.
#[allow(unsafe_code)]
fn read_buf<B: BufMut>(file: &File, buf: &mut B) -> io::Result<usize> {
    let chunk = buf.chunk_mut();
    // SAFETY: `chunk` is valid for writes of `chunk.len()` bytes; `read(2)` writes at most
    // that many into it and reads none of it. The descriptor is borrowed from a live `File`.
    // (std's `read_buf` into uninitialised memory is not stable yet; zeroing a 64 KiB buffer
    // per read would cost as much as the copy.)
    let n = unsafe {
        libc::read(
            file.as_fd().as_raw_fd(),
            chunk.as_mut_ptr().cast(),
            chunk.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: `read(2)` initialised exactly the first `n` bytes of the chunk.
    unsafe { buf.advance_mut(n) };
    Ok(n)
}
