//! How errors travel: every operation returns `io::Error`; this module gives them context,
//! recognises the ones asyncore treats as a disconnect, and defines [`ExitNow`].

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::io;

/// Stops the loop from inside a callback, as raising `asyncore.ExitNow` does.
///
/// Return it from any callback (`return Err(ExitNow.into())`) and the running
/// [`Map::run`](crate::Map::run), [`Map::run_count`](crate::Map::run_count) or
/// [`Map::poll`](crate::Map::poll) returns that error at once. The map keeps its channels; running
/// it again carries on where it stopped. Recognise it with [`ExitNow::is`].
///
/// ```
/// use asyncore::ExitNow;
/// let error: std::io::Error = ExitNow.into();
/// assert!(ExitNow::is(&error));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitNow;

impl ExitNow {
    /// Whether `error` is an `ExitNow`.
    pub fn is(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|inner| inner.is::<ExitNow>())
    }
}

impl fmt::Display for ExitNow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the loop was stopped by ExitNow")
    }
}

impl Error for ExitNow {}

impl From<ExitNow> for io::Error {
    fn from(exit: ExitNow) -> io::Error {
        io::Error::other(exit)
    }
}

/// An `io::Error` that says what was being done (`"bind 127.0.0.1:80"`) and keeps the cause as
/// its `source`, with the cause's kind.
#[derive(Debug)]
struct Context {
    what: String,
    cause: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.cause)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

pub(crate) fn context(cause: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(
        cause.kind(),
        Context {
            what: what.to_string(),
            cause,
        },
    )
}

/// The errno values asyncore's `_DISCONNECTED` lists: the peer is gone, so the channel closes
/// (`handle_close`) instead of reporting an error (`handle_error`).
pub(crate) fn is_disconnect(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionReset | NotConnected | ConnectionAborted | BrokenPipe
    ) {
        return true;
    }
    let os = root_os_error(error);
    os == Some(libc::ESHUTDOWN) || os == Some(libc::EBADF)
}

fn root_os_error(error: &io::Error) -> Option<i32> {
    if let Some(code) = error.raw_os_error() {
        return Some(code);
    }
    let mut source = error.get_ref().and_then(|inner| inner.source());
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        source = cause.source();
    }
    None
}

pub(crate) fn would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

/// The error a callback's panic becomes: kind `Other`, the panic message in the text.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>, callback: &str) -> io::Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_string());
    io::Error::other(format!("{callback} panicked: {message}"))
}

pub(crate) fn closed_channel(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("{what}: the channel is closed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_cause() {
        let cause = io::Error::from_raw_os_error(libc::EADDRINUSE);
        let error = context(cause, "bind 127.0.0.1:80");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(
            error.to_string().starts_with("bind 127.0.0.1:80: "),
            "{error}"
        );
        assert!(error.get_ref().unwrap().source().is_some());
    }

    #[test]
    fn disconnects_are_recognised_through_context() {
        for errno in [
            libc::ECONNRESET,
            libc::ENOTCONN,
            libc::ESHUTDOWN,
            libc::ECONNABORTED,
            libc::EPIPE,
            libc::EBADF,
        ] {
            let error = context(io::Error::from_raw_os_error(errno), "send");
            assert!(is_disconnect(&error), "{error}");
        }
        assert!(!is_disconnect(&io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
    }

    #[test]
    fn exit_now_round_trips() {
        assert!(ExitNow::is(&ExitNow.into()));
        assert!(!ExitNow::is(&io::Error::other("x")));
    }
}
