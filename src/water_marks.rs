//! High and low water marks on queued output (asyncio's `set_write_buffer_limits`), shared by
//! [`SendBuffer`](crate::SendBuffer) and asynchat's output queue.

use std::io;

/// Paused from the moment more than `high` bytes are queued until `low` or fewer are: the
/// hysteresis keeps a producer from stopping and starting on every send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaterMarks {
    high: usize,
    low: usize,
    paused: bool,
}

impl WaterMarks {
    /// Marks at `high` and a quarter of it (asyncio's default ratio).
    pub(crate) fn new(high: usize) -> WaterMarks {
        WaterMarks {
            high,
            low: high / 4,
            paused: false,
        }
    }

    /// Sets the marks and the state for `queued` bytes.
    ///
    /// # Errors
    /// `InvalidInput` when `low > high`; the marks are then unchanged.
    pub(crate) fn set(&mut self, high: usize, low: usize, queued: usize) -> io::Result<()> {
        if low > high {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write buffer limits: the low mark ({low}) is above the high mark ({high})"
                ),
            ));
        }
        self.high = high;
        self.low = low;
        self.update(queued);
        Ok(())
    }

    /// The marks as `(low, high)`, asyncio's `get_write_buffer_limits()`.
    pub(crate) fn limits(&self) -> (usize, usize) {
        (self.low, self.high)
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// The state after the queue changed to `queued` bytes.
    pub(crate) fn update(&mut self, queued: usize) {
        if queued > self.high {
            self.paused = true;
        } else if queued <= self.low {
            self.paused = false;
        }
    }
}
