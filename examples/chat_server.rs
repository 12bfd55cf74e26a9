//! A chat room on asynchat: every complete line a client sends goes to every other client,
//! unchanged, newline included.
//!
//! ```text
//! cargo run --release --example chat_server [ADDR]      # default 127.0.0.1:8080
//! ```
//!
//! Each connection is an [`AsyncChat`] with terminator `b"\n"`; a partial line waits in its
//! chat until the newline arrives, and is dropped if the client leaves first. The room is the
//! list of connection ids the listener and the connections share; a line is pushed to each
//! other member through [`Map::with`](asyncore::Map::with), as one `Bytes` shared by all, and
//! the reactor sends it on that member's next write event.
//!
//! Two limits asynchat lacks: a line longer than the chat's maximum record (64 KiB) closes
//! its sender, and a member that does not read (more than [`SLOW`] bytes waiting for it) is
//! dropped rather than allowed to make the server grow.

mod support;

use std::cell::RefCell;
use std::io;
use std::process::ExitCode;
use std::rc::Rc;

use asyncore::chat::{AsyncChat, Chat, ChatHandler};
use asyncore::{Address, Channel, ChannelId, Dispatcher, InterestScope};
use tracing::{debug, info};

const BACKLOG: u32 = 1024;

/// Output waiting for one member beyond which it is dropped.
const SLOW: usize = 1024 * 1024;

/// The connection ids of the room's members.
type Room = Rc<RefCell<Vec<ChannelId>>>;

struct Member {
    id: ChannelId,
    room: Room,
    address: Address,
}

impl ChatHandler for Member {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // reads nothing but this member's chat
    }

    fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        let line = chat.take_data();
        let map = channel.map().expect("a member is in a map");
        // Copied out: a member dropped during delivery leaves the room (Drop below).
        let others: Vec<ChannelId> = (self.room.borrow().iter().copied())
            .filter(|&id| id != self.id)
            .collect();
        for id in others {
            let delivered = map.with::<AsyncChat<Member>, _>(id, |other, other_channel| {
                other.chat_mut().push_line(line.clone());
                if other.chat().queued_bytes() > SLOW {
                    info!("dropping slow client {}", other.handler().address);
                    other_channel.close();
                }
            });
            if let Err(e) = delivered {
                debug!("no delivery to {id}: {e}");
            }
        }
        Ok(())
    }

    fn handle_close(&mut self, _: &mut Chat, channel: &mut Channel) -> io::Result<()> {
        info!("client left: {}", self.address);
        channel.close();
        Ok(())
    }
}

impl Drop for Member {
    // Runs however the connection ends (handle_close, an error, a slow-client drop, shutdown).
    fn drop(&mut self) {
        self.room.borrow_mut().retain(|&id| id != self.id);
    }
}

struct ChatServer {
    room: Room,
}

impl Dispatcher for ChatServer {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // a listener: it always wants to accept
    }

    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        conn: Channel,
        address: Address,
    ) -> io::Result<()> {
        info!("client joined: {address}");
        let id = conn.id();
        let member = Member {
            id,
            room: self.room.clone(),
            address,
        };
        let map = channel.map().expect("the server is in a map");
        self.room.borrow_mut().push(id);
        map.add(conn, AsyncChat::new(member, b"\n"))?;
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }
}

fn start(address: std::net::SocketAddr) -> io::Result<Address> {
    let mut channel = Channel::create_socket(support::family_of(&address))?;
    channel.set_reuse_addr()?;
    channel.bind(address)?;
    channel.listen(BACKLOG)?;
    let bound = channel.local_addr()?;
    asyncore::add(
        channel,
        ChatServer {
            room: Room::default(),
        },
    )?;
    Ok(bound)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    support::serve("chat_server", "127.0.0.1:8080", start).await
}
