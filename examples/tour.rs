//! A guided tour of the reactor: the echo server of Python's asyncore documentation, run one
//! lock-step pass at a time (`Map::poll`, asyncore's `poll()`), with scripted clients acting
//! between passes. Each pass is printed as a table: which channel wanted what (its
//! `readable()`/`writable()`), which readiness the poll found, which callbacks ran, and the
//! lines of the Python program that did the same thing.
//!
//! ```text
//! cargo run --example tour
//! ```
//!
//! The crate docs' chapter "How a readiness reactor works" (`asyncore::guide`) explains what
//! the tables show; `RUST_LOG=asyncore=trace cargo run --example echo_server` shows the same
//! steps in free-running mode, and `cargo run --example top` shows a map live.

mod support;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use asyncore::{
    Address, Channel, ChannelId, Dispatcher, Event, Family, Interest, Map, Pass, SendBuffer,
};

/// The Python program, as asyncore's documentation has it (and `migration_step1_asyncore.py`
/// in this repository), numbered so the tables can point at its lines.
const PYTHON: &[&str] = &[
    "class EchoHandler(asyncore.dispatcher_with_send):",
    "    def handle_read(self):",
    "        data = self.recv(8192)",
    "        if data:",
    "            self.send(data)",
    "",
    "class EchoServer(asyncore.dispatcher):",
    "    def __init__(self, host, port):",
    "        asyncore.dispatcher.__init__(self)",
    "        self.create_socket()",
    "        self.set_reuse_addr()",
    "        self.bind((host, port))",
    "        self.listen(5)",
    "",
    "    def handle_accepted(self, sock, addr):",
    "        print('Incoming connection from %s' % repr(addr))",
    "        handler = EchoHandler(sock)",
    "",
    "server = EchoServer('localhost', 8080)",
    "asyncore.loop()",
];

/// `asyncore.dispatcher_with_send` + `handle_read`, lines 1-5.
struct EchoHandler {
    out: SendBuffer,
}

impl Dispatcher for EchoHandler {
    fn writable(&self, channel: &Channel) -> bool {
        self.out.writable(channel) // dispatcher_with_send: only while out_buffer holds data
    }
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(8192)?; // line 3
        if !data.is_empty() {
            self.out.send(channel, data)?; // lines 4-5
        }
        Ok(())
    }
    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        self.out.handle_write(channel)
    }
    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close(); // asyncore's default handle_close logs "unhandled close event", then closes
        Ok(())
    }
}

/// `EchoServer`, lines 7-17.
struct EchoServer;

impl Dispatcher for EchoServer {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        sock: Channel,
        addr: Address,
    ) -> io::Result<()> {
        said(format!("Incoming connection from {addr}")); // line 16: print(...)
        let handler = EchoHandler {
            out: SendBuffer::new(),
        };
        channel.map().expect("in a map").add(sock, handler)?; // line 17
        Ok(())
    }
}

thread_local! {
    /// What the server printed during a pass, shown under the pass's table.
    static SAID: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn said(line: String) {
    SAID.with_borrow_mut(|said| said.push(line));
}

/// The Python lines that did what the reactor did for one channel in one pass: one per
/// callback that ran, or what `readable()`/`writable()` answered.
fn python_for(dispatcher: &str, wanted: Option<Interest>, events: &[Event]) -> Vec<String> {
    let server = dispatcher == "EchoServer";
    let mut said = Vec::new();
    for event in events {
        said.push(match event {
            Event::Accept => "handle_accept(): accept(), then handle_accepted() 15-17".to_string(),
            Event::Read => "handle_read() 2-5: data = self.recv(8192); self.send(data)".to_string(),
            Event::Write => "handle_write(): dispatcher_with_send sends out_buffer".to_string(),
            Event::ReadEof => "recv() got b'' (asyncore: handle_close() at once)".to_string(),
            Event::Close => "handle_close(): close(), the channel leaves the map".to_string(),
            other => format!("{}()", other.callback()),
        });
    }
    if said.is_empty() {
        said.push(match wanted {
            Some(want) if server => {
                format!("readable() True: listening ({want:?}); writable() is not asked")
            }
            Some(want) if want.is_write() => {
                format!("readable() True, writable() True: out_buffer holds data ({want:?})")
            }
            Some(want) => format!("readable() True, writable() False: out_buffer empty ({want:?})"),
            None => "readable() and writable() both False".to_string(),
        });
    }
    said
}

/// Prints one pass as a table.
fn show(number: usize, what: &str, pass: &Pass, names: &BTreeMap<ChannelId, String>) {
    println!("\npass {number}: {what}");
    println!(
        "  {:<16} {:<11} {:<6} {:<16} in the Python program",
        "channel", "wanted", "ready", "callback run"
    );
    let mut ids: Vec<ChannelId> = pass.wanted.iter().map(|(id, _)| *id).collect();
    ids.extend(pass.events.iter().map(|(id, _)| *id));
    ids.sort();
    ids.dedup();
    for id in ids {
        let name = names.get(&id).map_or("?", String::as_str);
        let wanted = pass.wanted.iter().find(|(c, _)| *c == id).map(|(_, w)| *w);
        let ready = pass.ready.iter().find(|(c, _)| *c == id).map(|(_, r)| *r);
        let events: Vec<Event> = pass
            .events
            .iter()
            .filter(|(c, _)| *c == id)
            .map(|(_, e)| *e)
            .collect();
        let python = python_for(name, wanted, &events);
        for (row, python) in python.iter().enumerate() {
            let callback = events.get(row).map_or("-", |e| e.callback());
            if row == 0 {
                println!(
                    "  {:<16} {:<11} {:<6} {:<16} {python}",
                    format!("{id} {name}"),
                    wanted.map_or("-".to_string(), |w| format!("{w:?}")),
                    ready.map_or("-".to_string(), |r| format!("{r:?}")),
                    callback,
                );
            } else {
                println!("  {:<16} {:<11} {:<6} {callback:<16} {python}", "", "", "");
            }
        }
    }
    if pass.ready.is_empty() {
        println!("  (nothing was ready: the poll waited its whole timeout, as select() would)");
    }
    for line in SAID.with_borrow_mut(std::mem::take) {
        println!("  the server printed: {line}");
    }
}

/// The tour's state: the map, its channels' names, the pass count.
struct Tour {
    map: Map,
    names: BTreeMap<ChannelId, String>,
    passes: usize,
}

impl Tour {
    /// One lock-step pass, printed.
    async fn pass(&mut self, what: &str, timeout: Duration) -> io::Result<Pass> {
        for id in self.map.ids() {
            self.names.entry(id).or_insert_with(|| short(&self.map, id));
        }
        let pass = self.map.poll(timeout).await?;
        for id in self.map.ids() {
            self.names.entry(id).or_insert_with(|| short(&self.map, id));
        }
        self.passes += 1;
        show(self.passes, what, &pass, &self.names);
        Ok(pass)
    }
}

fn short(map: &Map, id: ChannelId) -> String {
    let full = map.dispatcher_type(id).unwrap_or("?");
    full.rsplit("::").next().unwrap_or(full).to_string()
}

/// A client: a plain blocking socket, acting between passes.
fn client(address: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(address)?; // the kernel completes it: the listener is listening
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

fn read_echo(stream: &mut TcpStream, len: usize) -> io::Result<String> {
    let mut echo = vec![0; len];
    stream.read_exact(&mut echo)?;
    Ok(String::from_utf8_lossy(&echo).into_owned())
}

async fn tour() -> io::Result<()> {
    println!("The echo server of Python's asyncore documentation:\n");
    for (number, line) in PYTHON.iter().enumerate() {
        println!("  {:>2} | {line}", number + 1);
    }
    println!(
        "\nasyncore.loop() repeats poll(): it asks every channel readable() and writable(),\n\
         select()s on the sockets that want something, then runs the read events, then the\n\
         write events. Here the same server runs on this crate one pass at a time (Map::poll),\n\
         while scripted clients act between the passes."
    );

    let map = Map::new();
    let mut listener = Channel::create_socket(Family::Inet)?; // line 10
    listener.set_reuse_addr()?; // line 11
    listener.bind("127.0.0.1:0")?; // line 12 (port 0: any free port)
    listener.listen(5)?; // line 13
    let Address::Inet(address) = listener.local_addr()? else {
        return Err(io::Error::other("not an internet address"));
    };
    map.add(listener, EchoServer)?; // line 19
    println!("\nThe server listens on {address}.");
    let mut tour = Tour {
        map,
        names: BTreeMap::new(),
        passes: 0,
    };
    let wait = Duration::from_secs(10);

    tour.pass("no client yet", Duration::from_millis(100))
        .await?;

    let mut a = client(address)?;
    tour.pass("client A connected", wait).await?;

    a.write_all(b"hello")?;
    tour.pass("client A sent \"hello\"", wait).await?;
    println!("    client A reads back {:?}", read_echo(&mut a, 5)?);

    let mut b = client(address)?;
    b.write_all(b"spam")?;
    tour.pass("client B connected and sent \"spam\"", wait)
        .await?;
    tour.pass(
        "(B's channel joined the map after the last pass began)",
        wait,
    )
    .await?;
    println!("    client B reads back {:?}", read_echo(&mut b, 4)?);

    drop(a);
    tour.pass("client A hung up", wait).await?;

    drop(b);
    tour.pass("client B hung up", wait).await?;

    println!(
        "\nOnly the listener is left. asyncore.loop() would go on forever; the tour closes it\n\
         (close_all), and an empty map ends a loop here as in asyncore.\n\n\
         In free-running mode (Map::run) there are no passes: each channel is a Tokio task\n\
         that asks its own readable()/writable(), waits for exactly that readiness, and runs\n\
         its callbacks as soon as it comes. RUST_LOG=asyncore=trace tells the same story per\n\
         channel: `wants READ`, `ready READ`, `callback=\"handle_read\"`."
    );
    tour.map.close_all();
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    match tour().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail("tour", e),
    }
}
