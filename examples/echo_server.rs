//! Seed 000's asyncore echo server: an `EchoServer` that accepts, and an `EchoHandler` per
//! connection that writes back whatever it reads.
//!
//! ```text
//! cargo run --release --example echo_server [ADDR]      # default 127.0.0.1:8080
//! cargo run --release --example echo_server -- --interest-scope shared [ADDR]
//! cargo run --release --example echo_server -- --tls-cert cert.pem --tls-key key.pem [ADDR]
//! ```
//!
//! With `--tls-cert FILE --tls-key FILE` every connection speaks TLS: the server starts TLS on
//! each accepted channel, and the handler, unchanged, reads and writes plaintext.
//!
//! Changes from the seed, all for load: the backlog is 1024, not 5 (a full accept queue drops
//! SYNs, which come back a second later); reads take up to 128 KiB, not 1 KiB (a read larger
//! than what is waiting comes back short, which tells the reactor the socket is drained);
//! `handle_read` sends at once what the socket takes, as `dispatcher_with_send` does, instead of
//! waiting for the next writable event; and a handler that still owes bytes does not read more
//! (the seed's buffer grows without bound when the peer sends faster than it reads). `recv`
//! reads into a buffer the thread's channels share, and a handler keeps only what the socket did
//! not take, as a slice of what it read (no copy): an idle connection holds no buffer at all.
//! One addition the command-line contract asks for: a handler whose peer has finished sending
//! flushes what it still owes before it closes (`handle_read_eof`, which asyncore lacks).
//!
//! Both dispatchers declare `InterestScope::Own`: their `readable()` and `writable()` read only
//! their own fields, so the map need not ask them again after other channels' callbacks.
//! `--interest-scope shared` gives them asyncore's rule instead (asked after every batch of
//! callbacks on the map), which is what `benches/echo_load` compares.

mod support;

use std::io;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use asyncore::{Address, Channel, Dispatcher, InterestScope};
use bytes::{Buf, Bytes};
use tracing::{debug, info};

const BACKLOG: u32 = 1024;
const SIZE: usize = 128 * 1024;

/// `--interest-scope`, when given: it replaces what the dispatchers declare.
static SCOPE_OPTION: OnceLock<InterestScope> = OnceLock::new();

/// `--idle-timeout SECS`: a connection that sends nothing for this long is closed (off by
/// default). Built on the channel's deadline: each read sets it again.
static IDLE_TIMEOUT: OnceLock<std::time::Duration> = OnceLock::new();

/// Sets (again) the idle deadline of a connection, if there is one.
fn still_alive(channel: &mut Channel) {
    if let Some(idle) = IDLE_TIMEOUT.get() {
        channel.set_timeout(*idle);
    }
}

/// `declared`, unless the command line chose a scope for every dispatcher.
fn scope(declared: InterestScope) -> InterestScope {
    SCOPE_OPTION.get().copied().unwrap_or(declared)
}

struct EchoHandler {
    client_address: Address,
    unsent: Bytes, // We don't have anything to write, to start with
    closing: bool,
}

impl Dispatcher for EchoHandler {
    fn interest_scope(&self) -> InterestScope {
        scope(InterestScope::Own) // readable() and writable() read only self.unsent
    }

    fn readable(&self, _: &Channel) -> bool {
        self.unsent.is_empty() // Happy to read once we owe nothing (back-pressure)
    }

    fn writable(&self, _: &Channel) -> bool {
        !self.unsent.is_empty() // But we might not have anything to send all the time
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(SIZE)?;
        still_alive(channel);
        if data.is_empty() {
            debug!("got null data");
        } else {
            // sth to send back now: send what the socket takes at once, as dispatcher_with_send
            // does, and keep only the rest for handle_write.
            let sent = channel.send(&data)?;
            self.unsent = data.slice(sent..);
        }
        Ok(())
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = channel.send(&self.unsent)?;
        self.unsent.advance(sent);
        if self.closing && self.unsent.is_empty() {
            channel.close();
        }
        Ok(())
    }

    fn handle_read_eof(&mut self, channel: &mut Channel) -> io::Result<()> {
        // The client is done sending; send back what is still owed, then close.
        self.closing = true;
        if self.unsent.is_empty() {
            channel.close();
        }
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        info!("conn_closed: client_address={}", self.client_address);
        channel.close();
        Ok(())
    }

    fn handle_timeout(&mut self, channel: &mut Channel) -> io::Result<()> {
        info!("idle_timeout: client_address={}", self.client_address);
        channel.close();
        Ok(())
    }
}

struct EchoServer {
    tls: Option<Arc<asyncore::tls::ServerConfig>>,
}

impl EchoServer {
    fn start(
        address: std::net::SocketAddr,
        tls: Option<Arc<asyncore::tls::ServerConfig>>,
    ) -> io::Result<Address> {
        let mut channel = Channel::create_socket(support::family_of(&address))?;
        channel.set_reuse_addr()?;
        channel.bind(address)?; // server_bind
        channel.listen(BACKLOG)?; // server_activate
        debug!("listen: backlog={BACKLOG}");
        let bound = channel.local_addr()?;
        // Each handler's state changes only in its own callbacks, so the safety net for a
        // forgotten wake has nothing to find, and its timer would cost every wake-up.
        asyncore::socket_map().set_interest_audit(None);
        asyncore::add(channel, EchoServer { tls })?;
        Ok(bound)
    }

    fn verify_request(&self, _conn: &Channel, _client_address: &Address) -> bool {
        true
    }

    fn process_request(
        &self,
        channel: &Channel,
        mut conn: Channel,
        client_address: Address,
    ) -> io::Result<()> {
        info!("conn_made: client_address={client_address}");
        if let Some(config) = &self.tls {
            conn.start_tls_server(config.clone())?; // the reactor runs the handshake
        }
        still_alive(&mut conn);
        let handler = EchoHandler {
            client_address,
            unsent: Bytes::new(),
            closing: false,
        };
        channel
            .map()
            .expect("the server is in a map")
            .add(conn, handler)?;
        Ok(())
    }
}

impl Dispatcher for EchoServer {
    fn interest_scope(&self) -> InterestScope {
        scope(InterestScope::Own) // a listener's readable() is always true
    }

    fn handle_accept(&mut self, channel: &mut Channel) -> io::Result<()> {
        if let Some((conn, client_address)) = channel.accept()? {
            if self.verify_request(&conn, &client_address) {
                self.process_request(channel, conn, client_address)?;
            }
        }
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let [tls_cert, tls_key] = support::TLS_OPTIONS;
    let options = [
        ("--interest-scope", "own|shared"),
        ("--idle-timeout", "SECS"),
        tls_cert,
        tls_key,
    ];
    let mut tls = None;
    let address = support::server_options("echo_server", "127.0.0.1:8080", &options).and_then(
        |(address, values)| {
            tls = support::tls_config(values[2].as_deref(), values[3].as_deref())?;
            if let Some(idle) = &values[1] {
                let idle = support::parse_seconds("--idle-timeout", idle)?;
                let _ = IDLE_TIMEOUT.set(idle);
            }
            let chosen = match values[0].as_deref() {
                None => return Ok(address),
                Some("own") => InterestScope::Own,
                Some("shared") => InterestScope::Shared,
                Some(other) => {
                    return Err(format!(
                        "invalid --interest-scope {other:?} (expected own or shared)"
                    ))
                }
            };
            let _ = SCOPE_OPTION.set(chosen);
            Ok(address)
        },
    );
    // Serve until a signal, then give every handler a moment to send back what it owes.
    support::serve_on("echo_server", address, |address| {
        EchoServer::start(address, tls)
    })
    .await
}
