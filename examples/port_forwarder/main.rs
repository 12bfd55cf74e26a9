//! The classic asyncore port forwarder, ported line for line: a `forwarder` listens, and for each
//! client a `receiver` (the client's connection) and a `sender` (a new connection to the remote
//! end) pass bytes both ways through two buffers they share.
//!
//! ```text
//! cargo run --release --example port_forwarder LISTEN_ADDR REMOTE_ADDR
//! ```
//!
//! Each side's `writable()` reads a buffer that the *other* side's `handle_read` fills, the shape
//! that asyncore's rule (interest is asked before every poll) makes work. The dispatchers keep
//! the default [`InterestScope::Shared`](asyncore::InterestScope::Shared), so the map asks them
//! again after every batch of callbacks and the port needs no wake calls: it is the Python
//! program's logic, unchanged. (A new program would declare `InterestScope::Own` and call
//! `Map::wake` for the other side after filling its buffer.)
//!
//! What differs from the Python recipe, for a Rust reader: the shared buffers are an
//! `Rc<RefCell<_>>` instead of attributes of the receiver, a side closes the other through the map
//! by id, and reads take up to 64 KiB instead of 4 KiB. The dispatchers are in `forwarder.rs`,
//! which the crate's tests run as they are.

#[path = "../support/mod.rs"]
mod support;

mod forwarder;

use std::process::ExitCode;

use asyncore::Address;
use forwarder::Forwarder;

fn arguments() -> Result<(String, Address), String> {
    let usage = "usage: port_forwarder LISTEN_ADDR REMOTE_ADDR";
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(remote), None) = (args.next(), args.next(), args.next()) else {
        return Err(usage.to_string());
    };
    let remote = Address::Inet(support::parse_inet(&remote)?);
    Ok((listen, remote))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let (listen, remote) = match arguments() {
        Ok(arguments) => arguments,
        Err(e) => return support::fail("port_forwarder", e),
    };
    support::serve_on("port_forwarder", Ok(listen), |address| {
        let (server, bound) = support::listener(address, 128)?;
        asyncore::add(server, Forwarder { remote })?;
        Ok(bound)
    })
    .await
}
