//! The recipe's three dispatchers: `forwarder`, `receiver` and `sender`, as in Python.

use std::cell::RefCell;
use std::io;
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

pub struct Forwarder {
    pub remote: Address,
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
