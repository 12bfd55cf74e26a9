//! A UDP echo server: one datagram dispatcher that sends every datagram it receives back to its
//! sender, unchanged (empty datagrams too), in order.
//!
//! ```text
//! cargo run --release --example udp_echo_server [ADDR]      # default 127.0.0.1:8080
//! ```
//!
//! What Python's asyncore users wrote, with one addition: a reply the socket cannot take now
//! (a full send buffer) waits in a queue for the next write event instead of being lost, and
//! the server stops reading while that queue is full.

mod support;

use std::collections::VecDeque;
use std::io;
use std::process::ExitCode;

use asyncore::{Address, Channel, Dispatcher, InterestScope};
use bytes::Bytes;
use tracing::warn;

/// Every UDP datagram fits (the IPv4 limit is 65507 bytes of payload, IPv6's 65527).
const MAX_DATAGRAM: usize = 65535;
/// Replies held while the socket's send buffer is full, before the server stops reading.
const MAX_PENDING: usize = 1024;

#[derive(Default)]
struct EchoHandler {
    pending: VecDeque<(Bytes, Address)>,
}

impl Dispatcher for EchoHandler {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // its own queue of replies
    }

    fn readable(&self, _: &Channel) -> bool {
        self.pending.len() < MAX_PENDING
    }

    fn writable(&self, _: &Channel) -> bool {
        !self.pending.is_empty()
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let (data, sender) = channel.recvfrom(MAX_DATAGRAM)?;
        self.pending.push_back((data, sender));
        self.handle_write(channel)
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        while let Some((data, sender)) = self.pending.front() {
            match channel.sendto(data, sender) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => warn!("reply dropped: {e}"),
            }
            self.pending.pop_front();
        }
        Ok(())
    }

    fn handle_error(&mut self, _: &mut Channel, error: io::Error) {
        // One bad datagram must not take the server down: log it and keep serving.
        warn!("{error}");
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

fn start(address: &str) -> io::Result<Address> {
    let address = support::parse_inet(address).map_err(io::Error::other)?;
    let mut channel = Channel::create_datagram_socket(support::family_of(&address))?;
    channel.bind(address)?;
    let bound = channel.local_addr()?;
    asyncore::add(channel, EchoHandler::default())?;
    Ok(bound)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let bound = match support::server_address("udp_echo_server", "127.0.0.1:8080")
        .map_err(io::Error::other)
        .and_then(|address| start(&address))
    {
        Ok(bound) => bound,
        Err(e) => return support::fail("udp_echo_server", e),
    };
    support::announce(&bound);
    let served = asyncore::socket_map().run_until(support::signal()).await;
    asyncore::close_all();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail("udp_echo_server", e),
    }
}
