//! The chat room in plain Tokio, written the obvious way: the baseline `benches/chat_room.rs`
//! measures `chat_server` against.
//!
//! ```text
//! cargo run --release --example native_chat_server [ADDR]   # default 127.0.0.1:8080
//! ```
//!
//! One `tokio::sync::broadcast` channel is the room; each connection is a task that reads
//! lines (`read_until`) and sends each into the channel, and relays what the channel brings
//! from the others with `write_all`. One current-thread runtime, as `chat_server`'s map.
//!
//! What the obvious way gives up, unlike `chat_server`: a member that falls more than
//! [`CAPACITY`] lines behind loses lines (`RecvError::Lagged`) instead of slowing the senders;
//! each member's task holds the line it is writing; at a signal the program exits without
//! draining anything.

mod support;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;

/// Lines the room keeps for a member that is behind; further behind, it loses lines.
pub const CAPACITY: usize = 1024;
/// The longest line relayed; a longer one closes its sender.
const MAX_LINE: u64 = 1024 * 1024;
const BACKLOG: u32 = 1024;

type Room = broadcast::Sender<(u64, Bytes)>;

async fn member(stream: TcpStream, id: u64, room: Room) {
    let mut lines = room.subscribe();
    let (reader, mut writer) = stream.into_split();
    let relay = async move {
        loop {
            match lines.recv().await {
                Ok((from, line)) if from != id => {
                    if writer.write_all(&line).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    };
    let listen = async move {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(n) if n > 0 && line.last() == Some(&b'\n') => {
                    let _ = room.send((id, Bytes::copy_from_slice(&line)));
                }
                _ => return, // end of file, an error, or a line too long
            }
        }
    };
    tokio::select! {
        _ = relay => {}
        _ = listen => {}
    }
}

fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    const PROGRAM: &str = "native_chat_server";
    let address = match support::server_address(PROGRAM, "127.0.0.1:8080")
        .and_then(|a| support::parse_inet(&a))
    {
        Ok(address) => address,
        Err(e) => return support::fail(PROGRAM, e),
    };
    let listener = match bind(address).and_then(|l| l.local_addr().map(|a| (l, a))) {
        Ok((listener, bound)) => {
            support::announce(bound);
            listener
        }
        Err(e) => return support::fail(PROGRAM, format!("{address}: {e}")),
    };
    let (room, _) = broadcast::channel(CAPACITY);
    let accept = async {
        let mut next = 0u64;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    next += 1;
                    tokio::spawn(member(stream, next, room.clone()));
                }
                // EMFILE and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = support::signal() => {}
    }
    ExitCode::SUCCESS
}
