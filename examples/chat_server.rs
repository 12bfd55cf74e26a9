//! A chat room on asynchat: every complete line a client sends goes to every other client,
//! unchanged, newline included.
//!
//! ```text
//! cargo run --release --example chat_server [ADDR] [--stall-timeout SECS] [--idle-timeout SECS]
//! ```
//!
//! `ADDR` defaults to 127.0.0.1:8080. `--stall-timeout` (default 10) is how long a member may
//! leave lines waiting for it without reading any before it is dropped; `--idle-timeout` (off
//! by default) closes a member that has sent no complete line for that long (a slowloris
//! client that trickles half a line never counts as active).
//!
//! Each connection is an [`AsyncChat`] with terminator `b"\n"`. A partial line waits in its
//! chat until the newline arrives and is never relayed in part: not when its sender leaves,
//! not at shutdown.
//!
//! # One log, many cursors
//!
//! The room keeps one log of the lines it relays, each line stored once whatever the number
//! of members, and each member has a cursor into it. A member's chat pulls its next lines from
//! the log with a [`Producer`] (asynchat's way of making output as the socket takes it): at
//! most a few KiB copied per send, or a slice of a long line, skipping the member's own lines.
//! The log forgets what every cursor has passed.
//!
//! # Back-pressure, not shedding
//!
//! When the log passes its high-water mark ([`LOG_HIGH`]) because some member reads more
//! slowly than the others talk, the room pauses: it stops reading from the members (each
//! member's `readable()` says no) until the slowest cursor has brought the log down to
//! [`LOG_LOW`]. A sender faster than the room is slowed to the room's speed by TCP itself; a
//! member that keeps reading is never dropped. Only a member that has taken nothing for the
//! stall timeout while lines wait for it is dropped.
//!
//! A pause stops the floods, not the conversation: during each pause every member may still
//! add [`PAUSED_SHARE`] bytes of lines (plus what its last read brought). Without that share,
//! the members who flood decide who gets read: whoever the room reads first after a pause
//! refills the log, and a member who says one line now and then can wait for seconds behind
//! them, or for the whole stall timeout when the pause is due to a member who stopped reading.
//!
//! The marks are small for the sake of latency: a member gets a new line after everything the
//! log holds for it, and while the room is flooded every member is about as far behind as the
//! log is long, so a line takes about the log's bytes divided by what one member is sent a
//! second (the room's output shared by its members). A deeper log lets the room send bigger
//! batches, for more lines a second at the price of that delay and of memory
//! (`benches/README.md` has the figures).
//!
//! `readable()` reads the room's shared state, so it depends on more than the member's own
//! callbacks. Members still declare [`InterestScope::Own`] — `Shared` would make the map ask
//! every member after every batch of callbacks, ten thousand calls per batch in a big room —
//! and the room calls [`Map::wake`] on each member when the answer changes: when the log
//! crosses a mark (rare: once per [`LOG_HIGH`] − [`LOG_LOW`] bytes that the slowest member
//! takes) and when a member waiting for a long-line grant gets one.
//!
//! # Memory
//!
//! Bounded whatever the number of members talking:
//!
//! - the log: at most [`LOG_HIGH`] plus the line that crossed it (up to [`MAX_LINE`]), plus,
//!   per member, its [`PAUSED_SHARE`] and one read ([`READ_SIZE`]) in each pause;
//! - per member: one batch being sent ([`BATCH`] bytes, or a slice of a long line that the
//!   log holds anyway) and the unfinished line it is sending (at most [`FREE_UNFINISHED`] plus
//!   one read);
//! - an unfinished line longer than [`FREE_UNFINISHED`] needs one of [`LONG_LINES`] grants of
//!   up to [`MAX_LINE`] bytes; a member waiting for a grant is not read.
//!
//! A line longer than [`MAX_LINE`] (1 MiB) closes its sender; the others never see any of it.
//!
//! # Lines are atomic
//!
//! No member receives part of a line. At shutdown (SIGINT or SIGTERM) the room stops reading,
//! drops unfinished lines, and each member is sent the lines the log holds for it, then closed
//! at a line boundary. A member that has not taken them within [`DRAIN`] is reset (`SO_LINGER`
//! 0) if it is in the middle of a line, so that it sees a reset rather than a clean end of file
//! after half a line; the same holds for a member dropped as stalled or idle.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::process::ExitCode;
use std::rc::{Rc, Weak};
use std::time::Duration;

use asyncore::chat::{AsyncChat, Chat, ChatHandler, Producer};
use asyncore::{Address, Channel, ChannelId, Dispatcher, InterestScope, Map};
use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info};

const PROGRAM: &str = "chat_server";
const USAGE: &str = "usage: chat_server [ADDR] [--stall-timeout SECS] [--idle-timeout SECS]";

const BACKLOG: u32 = 1024;

/// The longest line relayed, newline excluded; a longer one closes its sender.
pub const MAX_LINE: usize = 1024 * 1024;
/// The log's high-water mark: above it the room pauses (it reads only members with some of
/// their [`PAUSED_SHARE`] left).
pub const LOG_HIGH: usize = 1024 * 1024;
/// The log's low-water mark: at or below it the room reads again.
pub const LOG_LOW: usize = 256 * 1024;
/// The bytes of lines a member may still add to the log during each pause (one read may take
/// it past): enough for someone who talks, not for a flood.
pub const PAUSED_SHARE: usize = 1024;
/// What a member's read takes at most.
pub const READ_SIZE: usize = 4 * 1024;
/// What a read takes at most while the member holds a long-line grant.
pub const LONG_READ_SIZE: usize = 64 * 1024;
/// An unfinished line may grow to this without a long-line grant.
pub const FREE_UNFINISHED: usize = 4 * 1024;
/// How many members may each be in the middle of a line longer than [`FREE_UNFINISHED`].
pub const LONG_LINES: usize = 16;
/// Short lines are copied into one batch of at most this many bytes per send.
pub const BATCH: usize = 4 * 1024;
/// The most of one long line handed to a member's chat at once (a slice, not a copy).
const SLICE: usize = 16 * 1024;
/// Lines up to this size are copied into shared pages of [`PAGE`] bytes.
const PAGED_LINE: usize = 4 * 1024;
const PAGE: usize = 256 * 1024;
/// What the log counts for each line besides its bytes.
const LINE_OVERHEAD: usize = 64;
/// How long a member has at shutdown to take the lines the log holds for it.
pub const DRAIN: Duration = Duration::from_secs(4);
/// How long the shutdown waits for every member to be closed.
const GRACE: Duration = Duration::from_secs(5);
/// The default `--stall-timeout`.
const DEFAULT_STALL: Duration = Duration::from_secs(10);

/// The command line's choices.
#[derive(Clone, Copy, Debug)]
struct Config {
    stall: Duration,
    idle: Option<Duration>,
}

// ---------------------------------------------------------------------------------------------
// The room: the log and the members' cursors

struct Line {
    author: ChannelId,
    /// The line with its newline.
    data: Bytes,
}

/// One member, as the room sees it.
struct Slot {
    /// The next line to send is `seq`, from byte `off` of it.
    seq: u64,
    off: usize,
    /// The cursor counts in [`Room::behind`] (until the member has read its last line).
    counted: bool,
    /// A [`Feed`] is in the member's output queue.
    feeding: bool,
    /// Send no line from this one on (the member is leaving).
    stop_at: Option<u64>,
    /// Send nothing more at all (the member is being dropped).
    cut: bool,
    /// Holds one of the long-line grants.
    grant: bool,
    /// When the member last took what it was given.
    progress: Instant,
    /// The pause ([`Room::pauses`]) in which the member last added a line, and how many bytes
    /// of lines it added in that pause.
    pause: u64,
    spent: usize,
}

struct Room {
    log: VecDeque<Line>,
    /// The sequence number of `log[0]`.
    base: u64,
    /// Bytes the log counts ([`LINE_OVERHEAD`] included).
    bytes: usize,
    /// Where short lines are copied.
    page: BytesMut,
    slots: HashMap<ChannelId, Slot>,
    /// How many counted cursors point at each line: the first key is the oldest line needed.
    behind: BTreeMap<u64, usize>,
    /// Members with no [`Feed`] queued (they have everything): woken by the next line.
    idle: Vec<ChannelId>,
    /// Above the high-water mark: only members with some of their [`PAUSED_SHARE`] left are
    /// read.
    paused: bool,
    /// How many times the room has paused: each pause gives every member a new share.
    pauses: u64,
    /// Shutting down: nobody is read.
    closing: bool,
    free_grants: usize,
    waiting_grants: VecDeque<ChannelId>,
    /// Members to wake (by the room's task, outside any callback).
    to_wake: Vec<ChannelId>,
    notify: Rc<Notify>,
}

type SharedRoom = Rc<RefCell<Room>>;

impl Room {
    fn new() -> Room {
        Room {
            log: VecDeque::new(),
            base: 0,
            bytes: 0,
            page: BytesMut::new(),
            slots: HashMap::new(),
            behind: BTreeMap::new(),
            idle: Vec::new(),
            paused: false,
            pauses: 0,
            closing: false,
            free_grants: LONG_LINES,
            waiting_grants: VecDeque::new(),
            to_wake: Vec::new(),
            notify: Rc::new(Notify::new()),
        }
    }

    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    fn count(&mut self, seq: u64) {
        *self.behind.entry(seq).or_default() += 1;
    }

    fn uncount(&mut self, seq: u64) {
        if let Some(n) = self.behind.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.behind.remove(&seq);
            }
        }
    }

    fn join(&mut self, id: ChannelId) {
        let seq = self.end();
        self.count(seq);
        self.slots.insert(
            id,
            Slot {
                seq,
                off: 0,
                counted: true,
                feeding: false,
                stop_at: None,
                cut: false,
                grant: false,
                progress: Instant::now(),
                pause: 0,
                spent: 0,
            },
        );
        self.idle.push(id);
    }

    fn leave(&mut self, id: ChannelId) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if slot.counted {
            self.uncount(slot.seq);
        }
        if slot.grant {
            self.release_grant_slot();
        }
        self.waiting_grants.retain(|&w| w != id);
        self.trim();
    }

    /// Moves member `id`'s cursor.
    fn set_cursor(&mut self, id: ChannelId, seq: u64, off: usize) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let (old, counted) = (slot.seq, slot.counted);
        slot.seq = seq;
        slot.off = off;
        if counted && old != seq {
            self.uncount(old);
            self.count(seq);
        }
    }

    /// Stops counting member `id`'s cursor: it reads nothing more from the log.
    fn uncount_member(&mut self, id: ChannelId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if std::mem::replace(&mut slot.counted, false) {
                let seq = slot.seq;
                self.uncount(seq);
                self.trim();
            }
        }
    }

    /// Whether member `id` may be read now, with `unfinished` bytes of a line collected.
    fn may_read(&self, id: ChannelId, unfinished: usize) -> bool {
        if self.closing {
            return false;
        }
        match self.slots.get(&id) {
            Some(slot) => {
                slot.stop_at.is_none()
                    && !slot.cut
                    && (slot.grant || unfinished <= FREE_UNFINISHED)
                    && (!self.paused || slot.pause != self.pauses || slot.spent < PAUSED_SHARE)
            }
            None => false,
        }
    }

    /// Member `id` has more than [`FREE_UNFINISHED`] bytes of a line: grants it a long line
    /// if one is free (true), or queues it for the next one.
    fn want_grant(&mut self, id: ChannelId) -> bool {
        let Some(slot) = self.slots.get_mut(&id) else {
            return false;
        };
        if slot.grant {
            return true;
        }
        if self.free_grants > 0 {
            self.free_grants -= 1;
            slot.grant = true;
            return true;
        }
        if !self.waiting_grants.contains(&id) {
            self.waiting_grants.push_back(id);
        }
        false
    }

    /// Member `id`'s unfinished line ended (or was dropped): its grant goes to the next member
    /// waiting for one.
    fn release_grant(&mut self, id: ChannelId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if std::mem::replace(&mut slot.grant, false) {
                self.release_grant_slot();
            }
        }
    }

    fn release_grant_slot(&mut self) {
        while let Some(next) = self.waiting_grants.pop_front() {
            if let Some(slot) = self.slots.get_mut(&next) {
                slot.grant = true;
                self.to_wake.push(next);
                self.notify.notify_one();
                return;
            }
        }
        self.free_grants += 1;
    }

    /// Appends `author`'s line (without its newline). Returns the members to feed (they had
    /// everything so far), and whether the log just went above its high-water mark.
    fn append(&mut self, author: ChannelId, line: &[u8]) -> (Vec<ChannelId>, bool) {
        let len = line.len() + 1;
        let data = if len <= PAGED_LINE {
            if self.page.capacity() - self.page.len() < len {
                self.page = BytesMut::with_capacity(PAGE);
            }
            self.page.extend_from_slice(line);
            self.page.extend_from_slice(b"\n");
            self.page.split().freeze()
        } else {
            let mut own = BytesMut::with_capacity(len);
            own.extend_from_slice(line);
            own.extend_from_slice(b"\n");
            own.freeze()
        };
        let seq = self.end();
        self.log.push_back(Line { author, data });
        self.bytes += len + LINE_OVERHEAD;
        if self.paused {
            if let Some(slot) = self.slots.get_mut(&author) {
                if slot.pause != self.pauses {
                    (slot.pause, slot.spent) = (self.pauses, 0);
                }
                slot.spent += len;
            }
        }
        // The author never gets its own line: a cursor waiting at this one moves past it.
        if let Some(slot) = self.slots.get(&author) {
            if slot.seq == seq && slot.off == 0 {
                self.set_cursor(author, seq + 1, 0);
            }
        }
        let now = Instant::now();
        let mut feed = Vec::new();
        let mut author_idle = false;
        for id in std::mem::take(&mut self.idle) {
            if id == author {
                author_idle = true;
                continue;
            }
            if let Some(slot) = self.slots.get_mut(&id) {
                if !slot.feeding && !slot.cut && slot.stop_at.is_none() {
                    slot.feeding = true;
                    slot.progress = now;
                    feed.push(id);
                }
            }
        }
        if author_idle {
            self.idle.push(author);
        }
        self.trim();
        let paused = !self.paused && self.bytes > LOG_HIGH;
        if paused {
            self.paused = true;
            self.pauses += 1;
        }
        (feed, paused)
    }

    /// The next output for member `id` (its [`Feed`]): a batch of short lines (copied) or a
    /// slice of a long one; empty when it has everything it is to get.
    fn next_for(&mut self, id: ChannelId) -> Bytes {
        let end = self.end();
        let Some(slot) = self.slots.get_mut(&id) else {
            return Bytes::new();
        };
        if slot.cut {
            slot.feeding = false;
            return Bytes::new();
        }
        slot.progress = Instant::now();
        let stop = slot.stop_at.unwrap_or(u64::MAX);
        let (mut seq, mut off) = (slot.seq, slot.off);
        // Own lines are skipped (only whole lines are, so `off` is 0 at one).
        while seq < end
            && off == 0
            && seq < stop
            && self.log[(seq - self.base) as usize].author == id
        {
            seq += 1;
        }
        if seq == end || (seq >= stop && off == 0) {
            let stopped = slot.stop_at.is_some();
            slot.feeding = false;
            self.set_cursor(id, seq, 0);
            if stopped {
                self.uncount_member(id);
            } else {
                self.idle.push(id);
                self.trim();
            }
            return Bytes::new();
        }
        let line = &self.log[(seq - self.base) as usize].data;
        let out = if line.len() - off > BATCH {
            let take = (line.len() - off).min(SLICE);
            let out = line.slice(off..off + take);
            off += take;
            if off == line.len() {
                seq += 1;
                off = 0;
            }
            out
        } else {
            let mut batch = BytesMut::with_capacity(BATCH);
            batch.extend_from_slice(&line[off..]);
            seq += 1;
            off = 0;
            while seq < end && seq < stop {
                let next = &self.log[(seq - self.base) as usize];
                if next.author != id {
                    if batch.len() + next.data.len() > BATCH {
                        break;
                    }
                    batch.extend_from_slice(&next.data);
                }
                seq += 1;
            }
            batch.freeze()
        };
        self.set_cursor(id, seq, off);
        self.trim();
        out
    }

    /// Forgets the lines every counted cursor has passed; below the low-water mark, reads
    /// again.
    fn trim(&mut self) {
        let oldest = match self.behind.keys().next() {
            Some(&seq) => seq,
            None => self.end(),
        };
        while self.base < oldest {
            let Some(line) = self.log.pop_front() else {
                break;
            };
            self.bytes -= line.data.len() + LINE_OVERHEAD;
            self.base += 1;
        }
        if self.paused && self.bytes <= LOG_LOW {
            self.paused = false;
            self.to_wake.extend(self.slots.keys().copied());
            self.notify.notify_one();
        }
    }

    /// Member `id` gets no line from the current end of the log on; whether a [`Feed`] of
    /// its is still queued.
    fn stop(&mut self, id: ChannelId) -> bool {
        let end = self.end();
        let Some(slot) = self.slots.get_mut(&id) else {
            return false;
        };
        slot.stop_at = Some(slot.stop_at.map_or(end, |s| s.min(end)));
        let feeding = slot.feeding;
        if !feeding {
            self.uncount_member(id);
        }
        feeding
    }

    /// Member `id` gets nothing more; whether it is in the middle of a line.
    fn cut(&mut self, id: ChannelId) -> bool {
        let Some(slot) = self.slots.get_mut(&id) else {
            return false;
        };
        slot.cut = true;
        slot.feeding = false;
        let middle = slot.off > 0;
        self.uncount_member(id);
        middle
    }
}

/// A member's output: asked by its chat for more each time the socket has taken what it had.
struct Feed {
    room: SharedRoom,
    id: ChannelId,
}

impl Producer for Feed {
    fn more(&mut self) -> Bytes {
        self.room.borrow_mut().next_for(self.id)
    }
}

/// Wakes the members the room has asked to wake, outside their callbacks; ends at shutdown.
async fn wake_members(room: Weak<RefCell<Room>>, notify: Rc<Notify>, map: Map) {
    let stop = map.shutdown_token();
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = stop.cancelled() => return,
        }
        let Some(room) = room.upgrade() else { return };
        let ids = std::mem::take(&mut room.borrow_mut().to_wake);
        for id in ids {
            map.wake(id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A member: an async_chat connection

struct Member {
    id: ChannelId,
    room: SharedRoom,
    address: Address,
    config: Config,
    /// When it last sent a complete line (or joined).
    last_line: Instant,
}

impl Member {
    /// Drops the member at once: nothing more is sent, and a member in the middle of a line is
    /// reset rather than closed, so that it cannot take half a line for a whole one.
    fn drop_now(&mut self, chat: &mut Chat, channel: &mut Channel) {
        let middle = {
            let mut room = self.room.borrow_mut();
            room.release_grant(self.id);
            room.cut(self.id)
        };
        if middle || chat.queued_bytes() > 0 {
            if let Ok(socket) = channel.socket() {
                let _ = socket.set_linger(Some(Duration::ZERO));
            }
            chat.discard_buffers();
        }
        channel.close();
    }

    /// Drops the unfinished line, if any, and its grant.
    fn forget_unfinished(&mut self, chat: &mut Chat) {
        chat.take_data();
        self.room.borrow_mut().release_grant(self.id);
    }

    /// The next moment something is due: the idle limit, or the stall limit while lines wait.
    fn next_deadline(&self) -> Option<Instant> {
        let room = self.room.borrow();
        let stall = room
            .slots
            .get(&self.id)
            .filter(|slot| slot.feeding)
            .map(|slot| slot.progress + self.config.stall);
        let idle = self.config.idle.map(|idle| self.last_line + idle);
        match (stall, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl ChatHandler for Member {
    fn interest_scope(&self) -> InterestScope {
        // readable() reads the room too; the room wakes members when its answer changes.
        InterestScope::Own
    }

    fn readable(&self, chat: &Chat, _: &Channel) -> bool {
        self.room.borrow().may_read(self.id, chat.incoming_len())
    }

    fn collect_incoming_data(&mut self, chat: &mut Chat, data: Bytes) -> io::Result<()> {
        chat.collect_incoming_data(data)?;
        if chat.incoming_len() > FREE_UNFINISHED && self.room.borrow_mut().want_grant(self.id) {
            chat.set_ac_in_buffer_size(LONG_READ_SIZE);
        }
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let line = chat.take_data();
        self.last_line = Instant::now();
        if chat.ac_in_buffer_size() != READ_SIZE {
            chat.set_ac_in_buffer_size(READ_SIZE);
        }
        let (feed, paused, everyone, wake) = {
            let mut room = self.room.borrow_mut();
            room.release_grant(self.id);
            let (feed, paused) = room.append(self.id, &line);
            let everyone: Vec<ChannelId> = if paused {
                room.slots.keys().copied().collect()
            } else {
                Vec::new()
            };
            let wake = std::mem::take(&mut room.to_wake);
            (feed, paused, everyone, wake)
        };
        let Some(map) = channel.map() else {
            return Ok(());
        };
        let stall = self.config.stall;
        for id in feed {
            let fed = map.with::<AsyncChat<Member>, _>(id, |other, other_channel| {
                let room = other.handler().room.clone();
                other.chat_mut().push_with_producer(Feed { room, id });
                let due = Instant::now() + stall;
                if other_channel.deadline().is_none_or(|at| at > due) {
                    other_channel.set_deadline(Some(due));
                }
            });
            if let Err(e) = fed {
                debug!("no delivery to {id}: {e}");
            }
        }
        if paused {
            debug!("room paused: the log passed {LOG_HIGH} bytes");
            for id in everyone {
                map.wake(id);
            }
        }
        for id in wake {
            map.wake(id);
        }
        Ok(())
    }

    fn handle_read_eof(&mut self, chat: &mut Chat, _: &mut Channel) -> io::Result<()> {
        // Its unfinished line is never relayed; it gets the lines already in the log for it.
        self.forget_unfinished(chat);
        self.room.borrow_mut().stop(self.id);
        chat.close_when_done();
        Ok(())
    }

    fn handle_close(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        self.forget_unfinished(chat);
        let (feeding, closing) = {
            let mut room = self.room.borrow_mut();
            (room.stop(self.id), room.closing)
        };
        if !feeding && chat.queued_bytes() == 0 {
            info!("client left: {}", self.address);
            channel.close();
            return Ok(());
        }
        // Lines owed: sent whole, then the close; dropped if they are not taken in time.
        chat.close_when_done();
        let drain = if closing { DRAIN } else { self.config.stall };
        channel.set_timeout(drain);
        Ok(())
    }

    fn handle_timeout(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let now = Instant::now();
        let (leaving, stalled) = {
            let room = self.room.borrow();
            match room.slots.get(&self.id) {
                Some(slot) => (
                    slot.stop_at.is_some(),
                    slot.feeding && now >= slot.progress + self.config.stall,
                ),
                None => (true, false),
            }
        };
        if leaving {
            info!(
                "client {} did not take its last lines in time",
                self.address
            );
            self.drop_now(chat, channel);
        } else if stalled {
            info!(
                "dropping client {}: it read nothing for {:?}",
                self.address, self.config.stall
            );
            self.drop_now(chat, channel);
        } else if self
            .config
            .idle
            .is_some_and(|idle| now >= self.last_line + idle)
        {
            info!("closing idle client {}", self.address);
            self.forget_unfinished(chat);
            channel.request_close(); // handle_close: the lines it is owed, then the close
        } else {
            channel.set_deadline(self.next_deadline());
        }
        Ok(())
    }

    fn handle_error(&mut self, chat: &mut Chat, channel: &mut Channel, error: io::Error) {
        if error.kind() == io::ErrorKind::InvalidData {
            info!("closing client {}: {error}", self.address);
        } else {
            info!("client {}: {error}; closing", self.address);
        }
        self.drop_now(chat, channel);
    }
}

impl Drop for Member {
    // Runs however the connection ends.
    fn drop(&mut self) {
        if let Ok(mut room) = self.room.try_borrow_mut() {
            room.leave(self.id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The listener

struct ChatServer {
    room: SharedRoom,
    config: Config,
}

impl Dispatcher for ChatServer {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // a listener: it always wants to accept
    }

    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        mut conn: Channel,
        address: Address,
    ) -> io::Result<()> {
        info!("client joined: {address}");
        let id = conn.id();
        self.room.borrow_mut().join(id);
        let member = Member {
            id,
            room: self.room.clone(),
            address,
            config: self.config,
            last_line: Instant::now(),
        };
        if let Some(idle) = self.config.idle {
            conn.set_timeout(idle);
        }
        let mut chat = Chat::new(b"\n");
        chat.set_max_frame_len(MAX_LINE);
        chat.set_ac_in_buffer_size(READ_SIZE);
        let map = channel.map().expect("the server is in a map");
        map.add(conn, AsyncChat::with_chat(member, chat))?;
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The program

fn start(address: std::net::SocketAddr, config: Config) -> io::Result<(Address, SharedRoom)> {
    let (channel, bound) = support::listener(address, BACKLOG)?;
    let room = Rc::new(RefCell::new(Room::new()));
    let map = asyncore::socket_map();
    map.add(
        channel,
        ChatServer {
            room: room.clone(),
            config,
        },
    )?;
    let notify = room.borrow().notify.clone();
    map.spawn(wake_members(Rc::downgrade(&room), notify, map.clone()));
    Ok((bound, room))
}

/// `SECS` of a timeout option: a positive number of seconds.
fn seconds(option: &str, value: Option<String>) -> Result<Duration, String> {
    let value = value.ok_or_else(|| format!("{option} needs a value ({USAGE})"))?;
    match value.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs < 1e9 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!(
            "invalid {option} {value:?} (expected a positive number of seconds)"
        )),
    }
}

fn parse_args() -> Result<(std::net::SocketAddr, Config), String> {
    let mut address = None;
    let mut config = Config {
        stall: DEFAULT_STALL,
        idle: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stall-timeout" => config.stall = seconds(&arg, args.next())?,
            "--idle-timeout" => config.idle = Some(seconds(&arg, args.next())?),
            option if option.starts_with("--") => {
                return Err(format!("unknown option {option:?} ({USAGE})"))
            }
            _ if address.is_none() => address = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?} ({USAGE})")),
        }
    }
    let address = support::parse_inet(address.as_deref().unwrap_or("127.0.0.1:8080"))?;
    Ok((address, config))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let (address, config) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => return support::fail(PROGRAM, e),
    };
    let room = match start(address, config) {
        Ok((bound, room)) => {
            support::announce(bound);
            room
        }
        Err(e) => return support::fail(PROGRAM, e),
    };
    let map = asyncore::socket_map();
    let served = map.run_until(support::signal()).await;
    // Nobody is read any more; each member gets its lines, then a close at a line boundary.
    room.borrow_mut().closing = true;
    let result = served.and(map.shutdown(GRACE).await);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail(PROGRAM, e),
    }
}
