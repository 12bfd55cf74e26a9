//! An echo server to watch in tokio-console: every channel is a Tokio task, and built with
//! `--cfg tokio_unstable` each task carries the channel's name (`channel #2 EchoHandler
//! 127.0.0.1:53312`), so the console's task list reads as the map does.
//!
//! ```text
//! RUSTFLAGS="--cfg tokio_unstable" cargo run --example console --features console [ADDR]
//! tokio-console                       # in another terminal: cargo install --locked tokio-console
//! python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", 8080)); s.sendall(b"hi"); print(s.recv(2))'
//! ```
//!
//! The console lists one task per channel (the listener and each connection) plus the map's
//! own tasks (the interest sweep, the requests of handles). A connection's task is idle while
//! it waits for readiness and busy while its callbacks run; its poll count is the number of
//! times the reactor woke it. `RUST_LOG=asyncore=trace` adds the reactor's own lines on stderr
//! (`wants READ`, `ready READ`, `callback="handle_read"`).
//!
//! The `console` feature brings in console-subscriber; `--cfg tokio_unstable` turns on Tokio's
//! task instrumentation (and its task builder, which names the tasks). Without the flag this
//! program says so and exits: nothing would reach the console.

mod support;

use std::io;
use std::process::ExitCode;

use asyncore::{Address, Channel, Dispatcher, InterestScope, Map};
use support::EchoHandler;

struct EchoServer;

impl Dispatcher for EchoServer {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own
    }
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        sock: Channel,
        _: Address,
    ) -> io::Result<()> {
        channel
            .map()
            .expect("in a map")
            .add(sock, EchoHandler::default())?;
        Ok(())
    }
}

fn start(map: &Map, address: std::net::SocketAddr) -> io::Result<Address> {
    let (listener, bound) = support::listener(address, 128)?;
    map.add(listener, EchoServer)?;
    Ok(bound)
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully. The map is made here and
/// dropped before `main` returns: with Tokio's task instrumentation on, a map whose tasks
/// were dropped with the thread's locals, at exit, would enter spans when the subscriber's
/// own thread locals are already gone.
async fn serve() -> io::Result<()> {
    let address = support::server_address("console", "127.0.0.1:8080")
        .and_then(|a| support::parse_inet(&a))
        .map_err(io::Error::other)?;
    let map = Map::new();
    support::announce(start(&map, address)?);
    map.run_until(support::signal()).await?;
    map.shutdown(support::GRACE).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if !cfg!(tokio_unstable) {
        return support::fail(
            "console",
            "built without --cfg tokio_unstable, so Tokio reports no tasks to tokio-console; run \
             RUSTFLAGS=\"--cfg tokio_unstable\" cargo run --example console --features console",
        );
    }
    // The console's layer, and a `fmt` layer filtered by RUST_LOG (default: errors only).
    console_subscriber::init();
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail("console", e),
    }
}
