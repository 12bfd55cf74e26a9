//! File channels: asyncore's `file_dispatcher` and `file_wrapper`, for pipes, FIFOs, terminals,
//! character devices, sockets given as bare descriptors, and regular files.
//!
//! The model is documented on [`Channel::from_fd`], where users find it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::{require_runtime, Channel};
use crate::address::Family;
use crate::error::context;
use crate::io::{FileIo, Io};

impl Channel {
    /// Wraps a file descriptor: asyncore's `file_dispatcher(fd)`. The descriptor is duplicated
    /// (`F_DUPFD_CLOEXEC`), so the caller may close its own at any time; the channel owns and
    /// closes the duplicate.
    ///
    /// The channel starts [`connected`](Channel::connected) (`handle_connect` never runs; its
    /// [`family`](Channel::family) says `Unix`, and it has no [`addr`](Channel::addr)), and
    /// [`recv`](Channel::recv)/[`send`](Channel::send) (and `recv_into`, `recv_buf`,
    /// `send_vectored`) are `read(2)`/`write(2)` with a socket's event rules:
    ///
    /// - end of file (`read` returns 0: the pipe's writer is gone, the file is read to its end)
    ///   is `handle_read_eof`, whose default leads to `handle_close`;
    /// - `EPIPE` on a write (the pipe's reader is gone) is a disconnect: `send` returns `Ok(0)`
    ///   and `handle_close` runs after the callback (Rust programs ignore `SIGPIPE`);
    /// - nothing to read is `Err(WouldBlock)` ("nothing to do"), a full pipe is `Ok(0)`.
    ///
    /// A pipe whose writer went away while data was still in it stays readable until that data
    /// is read; only then comes end of file (asyncore's `poll` backend closes at the hang-up
    /// and loses it).
    ///
    /// # Regular files: always ready
    ///
    /// epoll refuses regular files and `/dev/null` (`EPERM`); `select`, and so asyncore, reports
    /// them always readable and writable. So does the channel: when the reactor refuses the
    /// descriptor it is served in an *always-ready* mode ([`always_ready`](Channel::always_ready)
    /// is true), in which it is readable and writable on every pass for as long as the
    /// dispatcher asks. Reads return data until end of file (then `handle_read_eof`, and no more
    /// read events); writes always take data. Each event is charged to Tokio's cooperative
    /// budget, so an always-ready channel yields to the rest of the thread, but it never sleeps:
    /// return `false` from `writable()` while there is nothing to write, as for any channel.
    ///
    /// # O_NONBLOCK is shared
    ///
    /// `O_NONBLOCK` is set on the duplicate, and so on the open file description it shares with
    /// the original (a flag of the description, not of the descriptor): the caller's descriptor,
    /// and any other process holding the same pipe or terminal, sees non-blocking I/O from now
    /// on, and the flag stays set after the channel closes. asyncore does the same (it calls
    /// `os.set_blocking(fd, False)`). Blocking reads and writes on the original then fail with
    /// `WouldBlock`; a program that wraps its stdout leaves a non-blocking terminal behind for
    /// its shell.
    ///
    /// # Errors
    /// What `dup` or `fcntl` report (`EMFILE`, `EBADF`), or registering with Tokio's reactor
    /// (other than `EPERM`); `Other` when no Tokio runtime is running.
    ///
    /// # Example
    ///
    /// Reading a pipe to its end (a Tokio pipe here; any descriptor will do):
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// use std::io::{self, Write};
    /// use asyncore::{Channel, Dispatcher, Map};
    ///
    /// struct Collect(Vec<u8>);
    ///
    /// impl Dispatcher for Collect {
    ///     fn writable(&self, _: &Channel) -> bool {
    ///         false
    ///     }
    ///     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
    ///         self.0.extend_from_slice(&channel.recv(4096)?);
    ///         Ok(())
    ///     }
    ///     fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
    ///         assert_eq!(self.0, b"through a pipe");
    ///         channel.close();
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let (writer, reader) = tokio::net::unix::pipe::pipe()?;
    /// let mut writer = std::fs::File::from(writer.into_blocking_fd()?);
    /// writer.write_all(b"through a pipe")?;
    /// drop(writer);
    /// let map = Map::new();
    /// map.add(Channel::from_fd(&reader)?, Collect(Vec::new()))?;
    /// drop(reader); // the channel has its own descriptor
    /// map.run().await
    /// # }
    /// ```
    pub fn from_fd(fd: impl AsFd) -> io::Result<Channel> {
        let duplicate = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| context(e, "duplicate file descriptor"))?;
        Channel::from_owned_fd(duplicate)
    }

    /// Like [`from_fd`](Channel::from_fd), but takes ownership of `fd` instead of duplicating
    /// it: the channel closes it.
    ///
    /// # Errors
    /// As for `from_fd`.
    pub fn from_owned_fd(fd: OwnedFd) -> io::Result<Channel> {
        require_runtime("from_fd")?;
        // On the open file description, shared with every duplicate. socket2's
        // `set_nonblocking` is `fcntl(F_SETFL, .. | O_NONBLOCK)`, good for any descriptor.
        socket2::SockRef::from(&fd)
            .set_nonblocking(true)
            .map_err(|e| context(e, "set O_NONBLOCK"))?;
        let file =
            FileIo::register(fd).map_err(|e| context(e, "register descriptor with Tokio"))?;
        let mut channel = Channel::with_io(Family::Unix, Io::File(file));
        channel.connected = true;
        Ok(channel)
    }

    /// Whether this is a file channel served as always ready: a regular file or `/dev/null`,
    /// which the reactor cannot watch (see [`from_fd`](Channel::from_fd)).
    pub fn always_ready(&self) -> bool {
        matches!(&self.io, Io::File(file) if file.always_ready())
    }

    /// Whether this channel was made by [`from_fd`](Channel::from_fd) or
    /// [`from_owned_fd`](Channel::from_owned_fd) and is still open.
    pub fn is_file(&self) -> bool {
        matches!(self.io, Io::File(_))
    }
}
