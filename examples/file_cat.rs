//! `cat` with asyncore's `file_dispatcher`: a dispatcher on stdin and one on stdout copy stdin
//! to stdout byte for byte, and the program exits 0 at end of input once everything is written.
//!
//! ```text
//! cargo run --release --example file_cat < input > output
//! ```
//!
//! Two channels, one per descriptor ([`Channel::from_fd`], which duplicates it and sets it
//! non-blocking), and a [`SendBuffer`] on the output side:
//!
//! - `Input` reads up to 64 KiB per read event and hands it to `Output`, which writes what the
//!   pipe takes at once and queues the rest;
//! - back-pressure: `Input` is readable only while the output queue is below its high water
//!   mark, so a slow reader of stdout slows the reading of stdin instead of filling memory;
//!   `Output` wakes `Input` when the queue has drained to the low mark;
//! - at end of input, `Output` closes once its queue is empty, and the map is empty.
//!
//! Regular files and `/dev/null` work too, on either side: the reactor cannot watch them, so
//! they are always ready, as under `select`. If stdout's reader goes away (`EPIPE`), the program
//! stops with one line on stderr and a failing status.

mod support;

use std::cell::{Cell, RefCell};
use std::io;
use std::process::ExitCode;
use std::rc::Rc;

use asyncore::{Channel, ChannelId, Dispatcher, InterestScope, Map, SendBuffer, SEND_CHUNK};

/// What both sides see: whether reading is paused, and the first failure.
#[derive(Default)]
struct Shared {
    paused: Cell<bool>,
    failure: RefCell<Option<String>>,
}

impl Shared {
    fn fail(&self, map: Option<Map>, what: String) {
        self.failure.borrow_mut().get_or_insert(what);
        if let Some(map) = map {
            map.close_all();
        }
    }
}

struct Input {
    output: ChannelId,
    shared: Rc<Shared>,
}

impl Dispatcher for Input {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // the output wakes it when it lifts the pause
    }

    fn readable(&self, _: &Channel) -> bool {
        !self.shared.paused.get()
    }
    fn writable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(SEND_CHUNK)?;
        if data.is_empty() {
            return Ok(()); // end of input: handle_read_eof follows
        }
        let map = channel.map().expect("in a map");
        map.with(self.output, |output: &mut Output, out| {
            output.queue(out, data)
        })?
    }
    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        let map = channel.map().expect("in a map");
        channel.close();
        // The output may already be gone (closed after a failure): nothing left to flush.
        let _ = map.with(self.output, |output: &mut Output, out| output.finish(out));
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.shared
            .fail(channel.map(), "stdin: read failed".to_string());
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.shared.fail(channel.map(), format!("stdin: {error}"));
        channel.close();
    }
}

struct Output {
    out: SendBuffer,
    input: Option<ChannelId>,
    input_done: bool,
    shared: Rc<Shared>,
}

impl Output {
    /// Writes what stdout takes now, queues the rest, and pauses the input above the high mark.
    fn queue(&mut self, channel: &mut Channel, data: bytes::Bytes) -> io::Result<()> {
        self.out.send(channel, data)?;
        self.shared.paused.set(self.out.is_paused());
        Ok(())
    }

    /// End of input: close once everything is written.
    fn finish(&mut self, channel: &mut Channel) {
        self.input_done = true;
        if self.out.is_empty() {
            channel.close();
        }
    }
}

impl Dispatcher for Output {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // its own send buffer
    }

    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn writable(&self, channel: &Channel) -> bool {
        self.out.writable(channel)
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.out.handle_write(channel)?;
        if self.input_done && self.out.is_empty() {
            channel.close();
            return Ok(());
        }
        if self.shared.paused.get() && !self.out.is_paused() {
            self.shared.paused.set(false);
            // The input's readable() reads the pause, and its interest is declared its own:
            // tell the reactor to ask it again.
            if let (Some(map), Some(input)) = (channel.map(), self.input) {
                map.wake(input);
            }
        }
        Ok(())
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.shared.fail(
            channel.map(),
            "stdout: closed before all input was written".to_string(),
        );
        channel.close();
        Ok(())
    }
    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.shared.fail(channel.map(), format!("stdout: {error}"));
        channel.close();
    }
}

fn start(map: &Map, shared: &Rc<Shared>) -> io::Result<()> {
    let stdout = Channel::from_fd(io::stdout()).map_err(|e| named("stdout", e))?;
    let stdin = Channel::from_fd(io::stdin()).map_err(|e| named("stdin", e))?;
    let output = map.add(
        stdout,
        Output {
            out: SendBuffer::new(),
            input: None,
            input_done: false,
            shared: shared.clone(),
        },
    )?;
    let input = map.add(
        stdin,
        Input {
            output,
            shared: shared.clone(),
        },
    )?;
    map.with(output, |o: &mut Output, _| o.input = Some(input))
}

fn named(what: &str, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    if let Some(extra) = std::env::args().nth(1) {
        return support::fail(
            "file_cat",
            format!("unexpected argument {extra:?} (usage: file_cat < INPUT > OUTPUT)"),
        );
    }
    let map = asyncore::socket_map();
    let shared = Rc::new(Shared::default());
    if let Err(e) = start(&map, &shared) {
        return support::fail("file_cat", e);
    }
    let served = map.run_until(support::signal()).await;
    map.close_all();
    if let Some(failure) = shared.failure.borrow_mut().take() {
        return support::fail("file_cat", failure);
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail("file_cat", e),
    }
}
