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
//! by id, and reads take up to 64 KiB instead of 4 KiB.

mod support;

use std::cell::RefCell;
use std::io;
use std::process::ExitCode;
use std::rc::Rc;

use asyncore::{Address, Channel, ChannelId, Dispatcher, Family};
use bytes::{Buf, BytesMut};

const READ_SIZE: usize = 64 * 1024;

/// What a receiver and its sender share (in Python, attributes of the receiver).
#[derive(Default)]
struct Buffers {
    from_remote: BytesMut,
    to_remote: BytesMut,
    receiver: Option<ChannelId>,
    sender: Option<ChannelId>,
}

struct Forwarder {
    remote: Address,
}

impl Dispatcher for Forwarder {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        conn: Channel,
        _: Address,
    ) -> io::Result<()> {
        let map = channel.map().expect("a forwarder is in a map");
        let buffers = Rc::new(RefCell::new(Buffers::default()));
        let receiver = map.add(conn, Receiver(buffers.clone()))?;
        let mut remote = Channel::create_socket(Family::of(&self.remote))?;
        remote.connect(&self.remote)?;
        let sender = map.add(remote, Sender(buffers.clone()))?;
        let mut b = buffers.borrow_mut();
        b.receiver = Some(receiver);
        b.sender = Some(sender);
        Ok(())
    }
}

/// The client's connection.
struct Receiver(Rc<RefCell<Buffers>>);

impl Dispatcher for Receiver {
    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let read = channel.recv(READ_SIZE)?;
        self.0.borrow_mut().to_remote.extend_from_slice(&read);
        Ok(())
    }

    fn writable(&self, _: &Channel) -> bool {
        !self.0.borrow().from_remote.is_empty()
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let mut b = self.0.borrow_mut();
        let sent = channel.send(&b.from_remote)?;
        b.from_remote.advance(sent);
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        close_both(channel, self.0.borrow().sender);
        Ok(())
    }
}

/// The connection to the remote end.
struct Sender(Rc<RefCell<Buffers>>);

impl Dispatcher for Sender {
    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let read = channel.recv(READ_SIZE)?;
        self.0.borrow_mut().from_remote.extend_from_slice(&read);
        Ok(())
    }

    fn writable(&self, _: &Channel) -> bool {
        !self.0.borrow().to_remote.is_empty()
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let mut b = self.0.borrow_mut();
        let sent = channel.send(&b.to_remote)?;
        b.to_remote.advance(sent);
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        close_both(channel, self.0.borrow().receiver);
        Ok(())
    }
}

/// `self.close(); self.other.close()`.
fn close_both(channel: &mut Channel, other: Option<ChannelId>) {
    let map = channel.map();
    channel.close();
    if let (Some(map), Some(other)) = (map, other) {
        map.close_channel(other);
    }
}

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
