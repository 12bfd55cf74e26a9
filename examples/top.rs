//! `top` for the reactor: a chat room server (asynchat: each line a client sends goes to every
//! other client) and, on the same screen, its map, live: one row per channel, what it waits
//! for, what readiness it last saw, its callbacks and bytes per second, its queued output, how
//! long it has been quiet; spinning and stalled channels marked; the map's totals on top.
//!
//! ```text
//! cargo run --example top [ADDR] [--demo]      # default 127.0.0.1:8080
//! nc 127.0.0.1 8080                            # in other terminals: type lines
//! ```
//!
//! Keys: `s` sorts by activity (callbacks per second), then by bytes queued, then by id; `q`
//! (or Esc, or Ctrl-C) quits, after a graceful shutdown of the server.
//!
//! The table fits the terminal: each column is as wide as its widest cell, and when that is
//! too wide, long peers (IPv6, socket paths) lose their middle to a `…` (an IPv4 address and
//! its port stay whole), long dispatcher names their end, and then the byte rates, the time
//! since the last callback, the callback rate and the readiness give way, in that order.
//!
//! `--demo` adds two channels that show what the marks mean: a writer whose `writable()` is
//! always true with nothing to write (asyncore's classic busy loop: `spinning`, and a `WARN`
//! line if `RUST_LOG` asks for it) and an echo handler whose peer sends but never reads (its
//! output queue fills, it stops reading, and no callback runs: `stalled`).
//!
//! How it is built: the map runs on the main thread; the screen runs on a thread of its own and
//! asks the map for a [`MapSnapshot`] once a second through a [`MapHandle`]
//! (`handle.snapshot().await`), the way any monitor in another thread would. Rates come from
//! two snapshots in a row. The log (`RUST_LOG`) goes to stderr: redirect it
//! (`2>top.log`) to keep it off the screen.

mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{
    Address, Channel, ChannelId, ChannelSnapshot, ChannelState, Dispatcher, InterestScope,
    MapHandle, MapSnapshot,
};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use tokio_util::sync::CancellationToken;

use support::EchoHandler;

// ---------------------------------------------------------------------------------------------
// The server: a chat room on asynchat

type Members = Rc<RefCell<BTreeSet<ChannelId>>>;

/// One member of the room: each line it sends goes to every other member.
struct Member {
    members: Members,
}

impl ChatHandler for Member {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // readable() reads only the chat; others push through Map::with
    }

    fn readable(&self, chat: &Chat, _: &Channel) -> bool {
        !chat.is_paused() // stop reading from a member who does not read what the room says
    }

    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let line = chat.take_line();
        let map = channel.map().expect("in a map");
        let from = channel.id();
        let others: Vec<ChannelId> = self
            .members
            .borrow()
            .iter()
            .copied()
            .filter(|id| *id != from)
            .collect();
        for other in others {
            let said = [format!("{from}: ").as_bytes(), &line].concat();
            let _ = map
                .with::<AsyncChat<Member>, _>(other, |member, _| member.chat_mut().push_line(said));
        }
        Ok(())
    }

    fn handle_close(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        self.members.borrow_mut().remove(&channel.id());
        channel.close();
        Ok(())
    }
}

struct Room {
    members: Members,
}

impl Dispatcher for Room {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own
    }

    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        sock: Channel,
        _: Address,
    ) -> io::Result<()> {
        let member = Member {
            members: self.members.clone(),
        };
        let id = channel
            .map()
            .expect("in a map")
            .add(sock, AsyncChat::new(member, b"\n"))?;
        self.members.borrow_mut().insert(id);
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

fn start(address: std::net::SocketAddr) -> io::Result<Address> {
    let (listener, bound) = support::listener(address, 128)?;
    let members = Members::default();
    asyncore::add(listener, Room { members })?;
    Ok(bound)
}

// ---------------------------------------------------------------------------------------------
// --demo: a spinning channel and a stalled one

/// asyncore's defaults: always writable, and a `handle_write` with nothing to write.
struct Spinner;

impl Dispatcher for Spinner {
    fn readable(&self, _: &Channel) -> bool {
        false
    }
    fn handle_write(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }
}

/// Adds the demo's channels; returns the peers, which must live as long as the server.
fn demo() -> io::Result<Vec<std::os::unix::net::UnixStream>> {
    let (spinning, spinner_peer) = std::os::unix::net::UnixStream::pair()?;
    spinning.set_nonblocking(true)?;
    asyncore::add(
        Channel::from_unix(tokio::net::UnixStream::from_std(spinning)?),
        Spinner,
    )?;
    let (stalled, mut sender) = std::os::unix::net::UnixStream::pair()?;
    stalled.set_nonblocking(true)?;
    let channel = Channel::from_unix(tokio::net::UnixStream::from_std(stalled)?);
    channel.socket()?.set_send_buffer_size(8 * 1024)?;
    asyncore::add(channel, EchoHandler::default())?;
    // The peer sends what the socket takes, and never reads the echo.
    sender.set_nonblocking(true)?;
    let burst = vec![b'.'; 64 * 1024];
    for _ in 0..8 {
        match sender.write(&burst) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(vec![spinner_peer, sender])
}

// ---------------------------------------------------------------------------------------------
// The screen

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Activity,
    Queued,
    Id,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Activity => Sort::Queued,
            Sort::Queued => Sort::Id,
            Sort::Id => Sort::Activity,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Sort::Activity => "activity",
            Sort::Queued => "bytes queued",
            Sort::Id => "id",
        }
    }
}

/// One channel's row: its snapshot and its rates since the previous snapshot.
struct Line<'a> {
    channel: &'a ChannelSnapshot,
    callbacks: Option<f64>,
    received: Option<f64>,
    sent: Option<f64>,
}

fn lines<'a>(now: &'a MapSnapshot, before: Option<&MapSnapshot>, sort: Sort) -> Vec<Line<'a>> {
    let seconds = before
        .map(|before| {
            now.taken
                .saturating_duration_since(before.taken)
                .as_secs_f64()
        })
        .filter(|seconds| *seconds > 0.0);
    let mut lines: Vec<Line<'a>> = now
        .channels
        .iter()
        .map(|channel| {
            let earlier = before.and_then(|before| before.channel(channel.id));
            let rate = |now: u64, then: fn(&ChannelSnapshot) -> u64| {
                let seconds = seconds?;
                let then = earlier.map_or(0, then);
                Some(now.saturating_sub(then) as f64 / seconds)
            };
            Line {
                channel,
                callbacks: rate(channel.callbacks, |c| c.callbacks),
                received: rate(channel.bytes_received, |c| c.bytes_received),
                sent: rate(channel.bytes_sent, |c| c.bytes_sent),
            }
        })
        .collect();
    match sort {
        Sort::Activity => lines.sort_by(|a, b| {
            b.callbacks
                .unwrap_or(0.0)
                .total_cmp(&a.callbacks.unwrap_or(0.0))
                .then(a.channel.id.cmp(&b.channel.id))
        }),
        Sort::Queued => lines.sort_by(|a, b| {
            b.channel
                .buffered
                .total()
                .cmp(&a.channel.buffered.total())
                .then(a.channel.id.cmp(&b.channel.id))
        }),
        Sort::Id => lines.sort_by_key(|line| line.channel.id),
    }
    lines
}

/// A count or a rate in four characters: `812`, `9.4K`, `387K`, `12M` (`K` is `base`).
fn compact(n: f64, base: f64) -> String {
    let mut value = n;
    let mut unit = "";
    for next in ["K", "M", "G", "T"] {
        if value.round() < 1000.0 {
            break;
        }
        value /= base;
        unit = next;
    }
    if unit.is_empty() || value >= 9.95 {
        format!("{value:.0}{unit}")
    } else {
        format!("{value:.1}{unit}")
    }
}

fn count(n: f64) -> String {
    compact(n, 1000.0)
}

fn bytes(n: f64) -> String {
    compact(n, 1024.0)
}

fn rate(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_string(), format)
}

/// A time in four characters at most: `42s`, `17m`, `5h`, `3d`.
fn quiet_for(time: Duration) -> String {
    let seconds = time.as_secs();
    match seconds {
        0..100 => format!("{seconds}s"),
        100..6000 => format!("{}m", seconds / 60),
        6000..360_000 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

const HEADINGS: [&str; 12] = [
    "ID",
    "DISPATCHER",
    "STATE",
    "PEER",
    "WANTS",
    "READY",
    "CB/S",
    "IN/S",
    "OUT/S",
    "QUEUED",
    "IDLE",
    "MARK",
];
const DISPATCHER: usize = 1;
const PEER: usize = 3;
/// Columns left out, in this order, when the table is wider than the terminal: the byte
/// rates, then the time since the last callback, the callback rate, the readiness.
const LEFT_OUT_FIRST: [&[usize]; 4] = [&[7, 8], &[10], &[6], &[5]];
/// The narrowest a dispatcher's name gets (longer ones end in `…`).
const DISPATCHER_WIDTH: usize = 10;
/// The narrowest a peer gets when the table is too wide: an IPv4 address with its port.
/// Longer peers (IPv6, socket paths) lose their middle to a `…`.
const PEER_WIDTH: usize = 21;

/// The columns that fit `room` terminal columns, and their widths: each as wide as its widest
/// cell, then, while the table is too wide, long peers elided to [`PEER_WIDTH`], the
/// dispatcher's name shortened down to [`DISPATCHER_WIDTH`], columns left out
/// ([`LEFT_OUT_FIRST`]).
fn fit(cells: &[[String; 12]], room: usize) -> (Vec<usize>, [usize; 12]) {
    let mut widths = HEADINGS.map(str::len);
    for row in cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut shown: Vec<usize> = (0..HEADINGS.len()).collect();
    // One column of space between two columns.
    let width = |shown: &[usize], widths: &[usize; 12]| -> usize {
        shown.iter().map(|&c| widths[c]).sum::<usize>() + shown.len() - 1
    };
    if width(&shown, &widths) > room {
        widths[PEER] = widths[PEER].min(PEER_WIDTH);
    }
    let name = widths[DISPATCHER];
    let mut left_out = LEFT_OUT_FIRST.iter();
    loop {
        let others = width(&shown, &widths) - widths[DISPATCHER];
        let space = room.saturating_sub(others);
        if space >= name.min(DISPATCHER_WIDTH) {
            widths[DISPATCHER] = name.min(space);
            break;
        }
        match left_out.next() {
            Some(columns) => shown.retain(|c| !columns.contains(c)),
            None => {
                widths[DISPATCHER] = name.min(DISPATCHER_WIDTH);
                break;
            }
        }
    }
    (shown, widths)
}

/// `text` in `width` columns: whole if it fits, else its start and a `…`.
fn elide_end(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let start: String = text.chars().take(width.saturating_sub(1)).collect();
    start + "…"
}

/// `text` in `width` columns: whole if it fits, else its start, a `…` and its end (a peer
/// keeps its port).
fn elide_middle(text: &str, width: usize) -> String {
    let length = text.chars().count();
    if length <= width {
        return text.to_string();
    }
    let tail = width.saturating_sub(1) / 2;
    let head = width.saturating_sub(1) - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(length - tail).collect();
    start + "…" + &end
}

/// The cells of a channel's row, in [`HEADINGS`] order.
fn cells(line: &Line<'_>, listening_on: &str) -> [String; 12] {
    let channel = line.channel;
    let mark = if channel.spinning {
        "spinning"
    } else if channel.stalled {
        "stalled"
    } else {
        ""
    };
    let queued = match channel.buffered.output {
        Some(out) if channel.buffered.paused => format!("{} P", bytes(out as f64)),
        Some(out) => bytes(out as f64),
        None => "?".to_string(),
    };
    let peer = match &channel.peer {
        // asyncore's `addr` of a listener is the address given to bind (port 0 stays 0).
        _ if channel.state == ChannelState::Accepting => listening_on.to_string(),
        Some(peer) => peer.to_string(),
        None => "-".to_string(),
    };
    [
        channel.id.to_string(),
        channel.dispatcher_name(),
        channel.state.name().to_string(),
        peer,
        format!("{:?}", channel.interest),
        format!("{:?}", channel.ready),
        rate(line.callbacks, count),
        rate(line.received, bytes),
        rate(line.sent, bytes),
        queued,
        channel.idle.map_or_else(|| "-".to_string(), quiet_for),
        mark.to_string(),
    ]
}

fn draw(frame: &mut Frame<'_>, view: &View<'_>) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let now = view.now;
    let totals = &now.totals;
    let rates = view.before.map(|before| now.rates_since(before));
    let title = format!(
        "asyncore top: chat room listening on {}, sorted by {}",
        view.address,
        view.sort.name()
    );
    let figures = [
        format!("channels {}", totals.channels),
        format!("members {}", totals.members),
        format!("callbacks/s {}", rate(rates.map(|r| r.callbacks), count)),
        format!("in {}/s", rate(rates.map(|r| r.bytes_received), bytes)),
        format!("out {}/s", rate(rates.map(|r| r.bytes_sent), bytes)),
        format!("queued {}", bytes(totals.output_queued as f64)),
        format!("spinning {}", totals.spinning),
        format!("stalled {}", totals.stalled),
    ];
    // A narrow terminal gets the totals on two lines, never a figure cut in two.
    let mut header = vec![title];
    let mut line = String::new();
    for figure in figures {
        if !line.is_empty() && line.len() + 2 + figure.len() > usize::from(head.width) {
            header.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push_str("  ");
        }
        line.push_str(&figure);
    }
    header.push(line);
    frame.render_widget(Paragraph::new(header.join("\n")), head);

    let channel_lines = lines(now, view.before, view.sort);
    let texts: Vec<[String; 12]> = channel_lines
        .iter()
        .map(|line| cells(line, view.address))
        .collect();
    let (shown, widths) = fit(&texts, usize::from(body.width));
    let heading = Row::new(shown.iter().map(|&c| HEADINGS[c]))
        .style(Style::new().add_modifier(Modifier::REVERSED));
    let rows = channel_lines.iter().zip(texts).map(|(line, texts)| {
        let style = if line.channel.spinning {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else if line.channel.stalled {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        let row = shown.iter().map(|&c| {
            let text = match c {
                DISPATCHER => elide_end(&texts[c], widths[c]),
                PEER => elide_middle(&texts[c], widths[c]),
                _ => texts[c].clone(),
            };
            Cell::from(text)
        });
        Row::new(row.collect::<Vec<_>>()).style(style)
    });
    let constraints = shown.iter().map(|&c| Constraint::Length(widths[c] as u16));
    let table = Table::new(rows, constraints)
        .header(heading)
        .column_spacing(1)
        .block(Block::new().borders(Borders::TOP));
    frame.render_widget(table, body);
    frame.render_widget(
        Paragraph::new("s: sort (activity, bytes queued, id)   q: quit"),
        foot,
    );
}

struct View<'a> {
    now: &'a MapSnapshot,
    before: Option<&'a MapSnapshot>,
    sort: Sort,
    address: &'a str,
}

/// The screen's thread: a snapshot a second, keys in between. Returns when the user quits,
/// the server stops (`quit` cancelled by a signal) or the map is gone; cancels `quit` either
/// way.
fn screen(handle: MapHandle, address: String, quit: CancellationToken) -> io::Result<()> {
    let _quit = quit.clone().drop_guard();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> io::Result<()> {
        let mut before: Option<MapSnapshot> = None;
        let mut sort = Sort::Activity;
        loop {
            let now = runtime.block_on(async {
                tokio::select! {
                    now = handle.snapshot() => now.ok(),
                    () = quit.cancelled() => None,
                }
            });
            let Some(now) = now else {
                return Ok(()); // the server stopped, or the map is gone
            };
            let next = Instant::now() + Duration::from_secs(1);
            let mut fresh = true;
            loop {
                if std::mem::take(&mut fresh) {
                    terminal.draw(|frame| {
                        draw(
                            frame,
                            &View {
                                now: &now,
                                before: before.as_ref(),
                                sort,
                                address: &address,
                            },
                        )
                    })?;
                }
                if quit.is_cancelled() {
                    return Ok(());
                }
                // Short waits, so that a server stopped by a signal is noticed soon.
                let left = next
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                if left.is_zero() {
                    break;
                }
                if !event::poll(left)? {
                    continue;
                }
                if let Event::Key(key) = event::read()? {
                    if key.kind != KeyEventKind::Press {
                        continue;
                    }
                    match key.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(())
                        }
                        KeyCode::Char('s') => {
                            sort = sort.next();
                            fresh = true;
                        }
                        _ => {}
                    }
                }
            }
            before = Some(now);
        }
    })();
    ratatui::restore();
    result
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    use std::io::IsTerminal;
    support::init_tracing();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let demo_mode = args.iter().any(|a| a == "--demo");
    args.retain(|a| a != "--demo");
    let address = match args.as_slice() {
        [] => "127.0.0.1:8080".to_string(),
        [one] => one.clone(),
        [_, extra, ..] => {
            return support::fail(
                "top",
                format!("unexpected argument {extra:?} (usage: top [ADDR] [--demo])"),
            )
        }
    };
    if !io::stdout().is_terminal() {
        return support::fail("top", "stdout is not a terminal: top draws a screen");
    }
    let address = match support::parse_inet(&address) {
        Ok(address) => address,
        Err(e) => return support::fail("top", e),
    };
    let bound = match start(address) {
        Ok(bound) => bound,
        Err(e) => return support::fail("top", e),
    };
    let _peers = match demo_mode.then(demo).transpose() {
        Ok(peers) => peers,
        Err(e) => return support::fail("top", e),
    };
    let map = asyncore::socket_map();
    let quit = CancellationToken::new();
    let screen = {
        let handle = map.handle();
        let quit = quit.clone();
        let address = bound.to_string();
        std::thread::spawn(move || screen(handle, address, quit))
    };
    let stop = quit.clone();
    let served = map
        .run_until(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = support::signal() => {}
            }
        })
        .await;
    let result = served.and(map.shutdown(support::GRACE).await);
    // The screen thread sees this within 100 ms (or the user quit it already); either way it
    // restores the terminal before the exit.
    quit.cancel();
    let shown = screen.join();
    match (result, shown) {
        (Err(e), _) => support::fail("top", e),
        (Ok(()), Ok(Ok(()))) => ExitCode::SUCCESS,
        (Ok(()), Ok(Err(e))) => support::fail("top", e),
        (Ok(()), Err(_)) => support::fail("top", "the screen thread panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as wide as rows get with IPv4 peers.
    fn widest_row() -> [String; 12] {
        [
            "#10000",
            "AsyncChat<Member>",
            "unconnected",
            "255.255.255.255:65535",
            "READ|WRITE",
            "READ|WRITE",
            "999K",
            "9.9M",
            "999M",
            "999K P",
            "99m",
            "spinning",
        ]
        .map(String::from)
    }

    #[test]
    fn every_column_fits_110_columns_with_whole_ipv4_peers() {
        let (shown, widths) = fit(&[widest_row()], 110);
        assert_eq!(shown.len(), HEADINGS.len());
        assert_eq!(widths[PEER], PEER_WIDTH);
        let used: usize = shown.iter().map(|&c| widths[c]).sum::<usize>() + shown.len() - 1;
        assert!(used <= 110, "{used}");
        assert!(widths[DISPATCHER] >= DISPATCHER_WIDTH);
    }

    #[test]
    fn eighty_columns_leave_out_the_byte_rates_first() {
        let (shown, widths) = fit(&[widest_row()], 80);
        let headings: Vec<&str> = shown.iter().map(|&c| HEADINGS[c]).collect();
        assert!(!headings.contains(&"IN/S") && !headings.contains(&"OUT/S"));
        assert!(headings.contains(&"PEER") && headings.contains(&"MARK"));
        assert_eq!(widths[PEER], PEER_WIDTH);
        let used: usize = shown.iter().map(|&c| widths[c]).sum::<usize>() + shown.len() - 1;
        assert!(used <= 80, "{used}");
    }

    #[test]
    fn long_peers_lose_their_middle_and_keep_their_port() {
        let ipv6 = "[2001:db8:85a3:8d3:1319:8a2e:370:7348]:443";
        let mut row = widest_row();
        row[PEER] = ipv6.to_string();
        let (_, widths) = fit(&[row], 110);
        assert_eq!(widths[PEER], PEER_WIDTH);
        let shown = elide_middle(ipv6, widths[PEER]);
        assert_eq!(shown.chars().count(), PEER_WIDTH);
        assert!(
            shown.starts_with("[2001:db8:") && shown.ends_with(":7348]:443"),
            "{shown}"
        );
        assert!(shown.contains('…'));
        // With room to spare, the whole address.
        let (_, wide) = fit(&[widest_row().map(|_| String::new())], 150);
        assert!(wide[PEER] >= "PEER".len());
        assert_eq!(elide_middle(ipv6, 60), ipv6);
        assert_eq!(elide_end("AsyncChat<Member>", 10), "AsyncChat…");
    }

    #[test]
    fn figures_are_short() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1000.0), "1.0K");
        assert_eq!(bytes(1_040_000.0), "1.0M");
        assert_eq!(count(387_482.0), "387K");
        assert_eq!(bytes(114_790.0), "112K");
        assert_eq!(bytes(12.0 * 1024.0 * 1024.0), "12M");
        assert_eq!(quiet_for(Duration::from_secs(42)), "42s");
        assert_eq!(quiet_for(Duration::from_secs(1020)), "17m");
    }
}
