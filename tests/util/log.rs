//! What a `tracing` subscriber wrote, as text: tests read the log a user would read.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A log captured into memory, one line per event (no time, no target, no colour), from every
/// thread that installs its subscriber.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// A subscriber that writes every event at `level` and above here.
    pub fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync {
        let sink = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_max_level(level)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish()
    }

    /// [`subscriber`](Captured::subscriber) as a `Dispatch`, to install on other threads.
    pub fn dispatch(&self, level: tracing::Level) -> tracing::Dispatch {
        tracing::Dispatch::new(self.subscriber(level))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// The line containing `message`; fails the test if there is none.
    pub fn line(&self, message: &str) -> String {
        let lines = self.lines();
        lines
            .iter()
            .find(|line| line.contains(message))
            .cloned()
            .unwrap_or_else(|| panic!("no {message:?} in the log: {lines:#?}"))
    }
}
