//! The framing core, asynchat's `handle_read` loop without the socket: [`Terminator`] and
//! [`Framer`], whose docs say how it frames.

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;

/// What ends a record: asynchat's `set_terminator` argument.
///
/// Convert from bytes (`b"\r\n"`, `"\n"`, `Vec<u8>`, [`Bytes`](https://docs.rs/bytes/1/bytes/struct.Bytes.html)) for a delimiter, from `usize`
/// for a byte count. An empty delimiter and a count of 0 behave as [`Terminator::None`] (all
/// falsy terminators do in asynchat).
///
/// ```
/// use asyncore::chat::{FrameEvent, Framer, Terminator};
/// use bytes::Bytes;
///
/// assert_eq!(Terminator::from("\r\n"), Terminator::Bytes(Bytes::from_static(b"\r\n")));
/// assert_eq!(Terminator::from(4), Terminator::Count(4));
/// assert!(Terminator::from(b"").is_none());
///
/// // A count is used up as bytes arrive: the framer tells how many are still missing.
/// let mut framer = Framer::new(4);
/// framer.feed(Bytes::from_static(b"ab"));
/// assert_eq!(framer.next_event(), Some(FrameEvent::Data(Bytes::from_static(b"ab"))));
/// assert_eq!(framer.terminator(), &Terminator::Count(2));
/// framer.feed(Bytes::from_static(b"cd"));
/// assert_eq!(framer.next_event(), Some(FrameEvent::Data(Bytes::from_static(b"cd"))));
/// assert_eq!(framer.next_event(), Some(FrameEvent::Terminator));
/// assert_eq!(framer.terminator(), &Terminator::Count(0));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Terminator {
    /// A delimiter of any length: a record ends where it occurs.
    Bytes(Bytes),
    /// A byte count: the record is the next `n` bytes. As in asynchat, the count is decremented
    /// as bytes arrive, so [`Framer::terminator`] tells how many are still missing, and it is
    /// `Count(0)` inside `found_terminator`; unless a new terminator is set then, the rest of
    /// the input is unframed, as with `None`.
    Count(usize),
    /// No framing: every byte is passed on as data and no record ever ends (until close).
    #[default]
    None,
}

impl Terminator {
    /// Whether this terminator frames nothing (`None`, an empty delimiter, a count of 0).
    pub fn is_none(&self) -> bool {
        match self {
            Terminator::Bytes(b) => b.is_empty(),
            Terminator::Count(n) => *n == 0,
            Terminator::None => true,
        }
    }
}

impl From<&'static [u8]> for Terminator {
    fn from(bytes: &'static [u8]) -> Self {
        Terminator::Bytes(Bytes::from_static(bytes))
    }
}

impl<const N: usize> From<&'static [u8; N]> for Terminator {
    fn from(bytes: &'static [u8; N]) -> Self {
        Terminator::Bytes(Bytes::from_static(bytes))
    }
}

impl From<&'static str> for Terminator {
    fn from(text: &'static str) -> Self {
        Terminator::Bytes(Bytes::from_static(text.as_bytes()))
    }
}

impl From<Vec<u8>> for Terminator {
    fn from(bytes: Vec<u8>) -> Self {
        Terminator::Bytes(bytes.into())
    }
}

impl From<Bytes> for Terminator {
    fn from(bytes: Bytes) -> Self {
        Terminator::Bytes(bytes)
    }
}

impl From<usize> for Terminator {
    fn from(count: usize) -> Self {
        Terminator::Count(count)
    }
}

impl From<Option<Terminator>> for Terminator {
    fn from(terminator: Option<Terminator>) -> Self {
        terminator.unwrap_or(Terminator::None)
    }
}

/// One step of framing: what asynchat's `handle_read` loop calls next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameEvent {
    /// Bytes of the current record (`collect_incoming_data`); never empty.
    Data(Bytes),
    /// The current record ended (`found_terminator`).
    Terminator,
}

/// Input not framed yet, and the terminator that frames it: asynchat's `handle_read` loop
/// without the socket. Pure: no I/O.
///
/// A `Framer` turns its input into [`FrameEvent`]s one at a time, so the caller can change the
/// terminator between two events and have the change apply to the rest of the input already
/// buffered (asynchat reads `get_terminator()` again on every turn of its loop; pipelined SMTP
/// `DATA` depends on it).
///
/// The events are asynchat's, byte for byte: data before a terminator is reported in one or
/// more [`FrameEvent::Data`] chunks (never empty), then [`FrameEvent::Terminator`]; the
/// terminator's own bytes are never reported, even when they arrive split across reads. Only a
/// possible beginning of the terminator at the very end of the input (at most `len - 1` bytes)
/// is held back; everything else is handed out at once. So the framer never holds more than
/// one read plus `len - 1` bytes, whatever the peer sends, and no byte is searched more than
/// twice. Chunks are slices of the buffers that were fed (`Bytes` splits, no copies), except
/// when a held-back prefix has to be joined to the next read.
///
/// ```
/// use asyncore::chat::{FrameEvent, Framer};
/// use bytes::Bytes;
///
/// let mut framer = Framer::new(b"\r\n");
/// framer.feed(Bytes::from_static(b"hel"));
/// framer.feed(Bytes::from_static(b"lo\r"));
/// assert_eq!(framer.next_event(), Some(FrameEvent::Data(Bytes::from_static(b"hello"))));
/// assert_eq!(framer.next_event(), None); // "\r" may start the terminator: held back
/// framer.feed(Bytes::from_static(b"\nx"));
/// assert_eq!(framer.next_event(), Some(FrameEvent::Terminator));
/// assert_eq!(framer.next_event(), Some(FrameEvent::Data(Bytes::from_static(b"x"))));
/// assert_eq!(framer.next_event(), None);
/// ```
#[derive(Default)]
pub struct Framer {
    input: Bytes,
    terminator: Terminator,
    /// The searcher for a `Bytes` terminator, built once per `set_terminator`.
    search: Search,
    /// The terminator's KMP failure table: finds the held-back prefix in O(len), where
    /// asynchat's `find_prefix_at_end` takes O(len²) (which matters for long boundaries).
    failure: Vec<usize>,
    /// A terminator was found after the `Data` just returned: report it next.
    found_pending: bool,
    /// `next_event` said `None`, and neither input nor terminator changed since.
    settled: bool,
}

impl std::fmt::Debug for Framer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framer")
            .field("buffered", &self.input.len())
            .field("terminator", &self.terminator)
            .finish()
    }
}

impl Framer {
    /// A framer with `terminator` and no input.
    pub fn new(terminator: impl Into<Terminator>) -> Framer {
        let mut framer = Framer::default();
        framer.set_terminator(terminator);
        framer
    }

    /// Sets the terminator; it applies to the input still buffered. asynchat's `set_terminator`.
    pub fn set_terminator(&mut self, terminator: impl Into<Terminator>) {
        self.terminator = terminator.into();
        self.settled = false;
        self.search = match &self.terminator {
            Terminator::Bytes(t) if t.len() == 1 => Search::Byte(t[0]),
            Terminator::Bytes(t) if !t.is_empty() => {
                Search::Finder(Box::new(Finder::new(&t[..]).into_owned()))
            }
            _ => Search::None,
        };
        self.failure = match &self.terminator {
            Terminator::Bytes(t) if t.len() > 1 => failure_table(t),
            _ => Vec::new(),
        };
    }

    /// The current terminator; for a count, the bytes still missing. asynchat's
    /// `get_terminator`.
    pub fn terminator(&self) -> &Terminator {
        &self.terminator
    }

    /// Appends input. Zero-copy when nothing is buffered (the usual case); otherwise the
    /// held-back bytes and `data` are joined.
    pub fn feed(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.settled = false;
        if self.input.is_empty() {
            self.input = data;
        } else {
            let mut joined = BytesMut::with_capacity(self.input.len() + data.len());
            joined.extend_from_slice(&self.input);
            joined.extend_from_slice(&data);
            self.input = joined.freeze();
        }
    }

    /// How many input bytes are buffered, not yet handed out.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Takes the buffered input out (for a hand-over to native code, or to discard it).
    pub fn take_buffered(&mut self) -> Bytes {
        self.found_pending = false;
        std::mem::take(&mut self.input)
    }

    /// Copies the buffered bytes into a buffer of their own, so that they stop pinning the
    /// (possibly much larger) buffer they were read into. At most `len - 1` bytes after a
    /// complete [`next_event`](Framer::next_event) loop.
    pub fn compact(&mut self) {
        if !self.input.is_empty() {
            self.input = Bytes::copy_from_slice(&self.input);
        }
    }

    /// Whether [`next_event`](Framer::next_event) may have an event without more input: input
    /// was fed or the terminator changed since it last said `None`. O(1).
    pub fn has_event(&self) -> bool {
        !self.settled && (self.found_pending || !self.input.is_empty())
    }

    /// The next event, or `None` when the buffered input cannot say more until more arrives.
    pub fn next_event(&mut self) -> Option<FrameEvent> {
        let event = self.frame();
        self.settled = event.is_none();
        event
    }

    fn frame(&mut self) -> Option<FrameEvent> {
        if std::mem::take(&mut self.found_pending) {
            return Some(FrameEvent::Terminator);
        }
        if self.input.is_empty() {
            return None;
        }
        if self.terminator.is_none() {
            return Some(FrameEvent::Data(std::mem::take(&mut self.input)));
        }
        match &mut self.terminator {
            Terminator::Count(n) => {
                if self.input.len() < *n {
                    *n -= self.input.len();
                    Some(FrameEvent::Data(std::mem::take(&mut self.input)))
                } else {
                    let data = self.input.split_to(*n);
                    *n = 0;
                    self.found_pending = true;
                    Some(FrameEvent::Data(data))
                }
            }
            Terminator::Bytes(terminator) => {
                if let Some(index) = self.search.find(&self.input) {
                    let data = self.input.split_to(index);
                    self.input = self.input.slice(terminator.len()..);
                    if data.is_empty() {
                        return Some(FrameEvent::Terminator);
                    }
                    self.found_pending = true;
                    return Some(FrameEvent::Data(data));
                }
                let held = prefix_at_end(&self.input, terminator, &self.failure);
                if held == self.input.len() {
                    None
                } else {
                    let data = self.input.split_to(self.input.len() - held);
                    Some(FrameEvent::Data(data))
                }
            }
            Terminator::None => unreachable!("is_none above"),
        }
    }
}

/// How a delimiter is searched: `memchr` for one byte (the usual `\n`), a boxed `memmem`
/// searcher otherwise (boxed: it is ~300 bytes, and every connection has a framer).
#[derive(Default)]
enum Search {
    #[default]
    None,
    Byte(u8),
    Finder(Box<Finder<'static>>),
}

impl Search {
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        match self {
            Search::None => None,
            Search::Byte(b) => memchr::memchr(*b, haystack),
            Search::Finder(finder) => finder.find(haystack),
        }
    }
}

/// KMP's failure table: for each `i`, the length of the longest proper prefix of
/// `needle[..=i]` that is also its suffix.
fn failure_table(needle: &[u8]) -> Vec<usize> {
    let mut table = vec![0; needle.len()];
    let mut k = 0;
    for i in 1..needle.len() {
        while k > 0 && needle[i] != needle[k] {
            k = table[k - 1];
        }
        if needle[i] == needle[k] {
            k += 1;
        }
        table[i] = k;
    }
    table
}

/// [`find_prefix_at_end`] in O(`needle.len()`): runs the KMP automaton over the last
/// `needle.len() - 1` bytes of `haystack`, which does not contain `needle` (the caller searched).
fn prefix_at_end(haystack: &[u8], needle: &[u8], failure: &[usize]) -> usize {
    if needle.len() < 2 {
        return 0;
    }
    let tail = &haystack[haystack.len().saturating_sub(needle.len() - 1)..];
    let mut k = 0;
    for &byte in tail {
        while k > 0 && byte != needle[k] {
            k = failure[k - 1];
        }
        if byte == needle[k] {
            k += 1;
        }
    }
    k
}

/// The length of the longest proper prefix of `needle` that `haystack` ends with: how many
/// bytes at the end of the input may be the start of a terminator. asynchat's
/// `find_prefix_at_end`; always 0 for a one-byte needle.
///
/// ```
/// use asyncore::chat::find_prefix_at_end;
/// assert_eq!(find_prefix_at_end(b"qwerty\r", b"\r\n"), 1);
/// assert_eq!(find_prefix_at_end(b"qwertydkjf", b"\r\n"), 0);
/// ```
pub fn find_prefix_at_end(haystack: &[u8], needle: &[u8]) -> usize {
    let longest = needle.len().saturating_sub(1).min(haystack.len());
    (1..=longest)
        .rev()
        .find(|&l| haystack.ends_with(&needle[..l]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(terminator: &'static [u8], reads: &[&'static [u8]]) -> Vec<String> {
        let mut framer = Framer::new(terminator);
        let mut events = Vec::new();
        for read in reads {
            framer.feed(Bytes::from_static(read));
            while let Some(event) = framer.next_event() {
                events.push(match event {
                    FrameEvent::Data(d) => String::from_utf8(d.to_vec()).unwrap(),
                    FrameEvent::Terminator => "<found>".to_string(),
                });
            }
        }
        events
    }

    #[test]
    fn split_terminator_events_match_asynchat() {
        // B80's example, checked against Python 3.11.
        let events = run(b"\r\n", &[b"hel", b"lo\r", b"\nwor", b"ld\r\n\r\nx"]);
        assert_eq!(
            events,
            ["hel", "lo", "<found>", "wor", "ld", "<found>", "<found>", "x"]
        );
    }

    #[test]
    fn count_decays_to_unframed() {
        // B78: 3 with [ab, cdefgh] -> ab, c, found, defgh.
        let mut framer = Framer::new(3usize);
        let mut events = Vec::new();
        for read in [&b"ab"[..], b"cdefgh"] {
            framer.feed(Bytes::from_static(read));
            while let Some(event) = framer.next_event() {
                if event == FrameEvent::Terminator {
                    assert_eq!(framer.terminator(), &Terminator::Count(0));
                }
                events.push(event);
            }
        }
        let data = |s: &'static [u8]| FrameEvent::Data(Bytes::from_static(s));
        assert_eq!(
            events,
            [
                data(b"ab"),
                data(b"c"),
                FrameEvent::Terminator,
                data(b"defgh")
            ]
        );
    }

    #[test]
    fn kmp_prefix_agrees_with_asynchat_helper() {
        let needles: [&[u8]; 5] = [b"aab", b"abab", b"aaaa", b"\r\n.\r\n", b"abcabd"];
        let hay = b"xaabababaaaabcab\r\n.\r";
        for needle in needles {
            let table = failure_table(needle);
            for end in 0..=hay.len() {
                let h = &hay[..end];
                if memchr::memmem::find(h, needle).is_some() {
                    continue;
                }
                assert_eq!(
                    prefix_at_end(h, needle, &table),
                    find_prefix_at_end(h, needle),
                    "{needle:?} at end of {h:?}"
                );
            }
        }
    }

    #[test]
    fn prefix_at_end_cases() {
        assert_eq!(find_prefix_at_end(b"abqq", b"qqq"), 2);
        assert_eq!(find_prefix_at_end(b"q", b"qqq"), 1);
        assert_eq!(find_prefix_at_end(b"", b"qqq"), 0);
        assert_eq!(find_prefix_at_end(b"abc\r", b"\n"), 0);
    }
}
