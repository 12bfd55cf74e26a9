//! Migration, step 4 of 4: the echo server in plain Tokio, no dispatchers left.
//!
//! ```text
//! cargo run --release --example native_echo_server [ADDR]   # default 127.0.0.1:8080
//! ```
//!
//! The same program as `echo_server` (and step 3), the Tokio way: the map becomes the runtime,
//! each `EchoHandler` becomes a task that owns its `TcpStream`, and "wait for readable, then
//! `handle_read`" becomes `read_buf(..).await`. It is also the native baseline that
//! `benches/echo_load/` measures the crate against, so it is written the way a Tokio user
//! would write it: one current-thread runtime, a task per connection, one reused buffer.

mod support;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// As in `echo_server`: a full accept queue drops SYNs, which come back a second later.
const BACKLOG: u32 = 1024;
/// `EchoHandler`'s `recv(SIZE)`.
const SIZE: usize = 64 * 1024;

/// `EchoHandler`: `handle_read` and `handle_write` in one loop. `write_all` waits for the
/// socket to drain, which is what `writable()` returning "buffer not empty" did.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    // Reused for every read; `read_buf` fills its spare capacity without zeroing it.
    let mut buffer = Vec::with_capacity(SIZE);
    loop {
        buffer.clear();
        if stream.read_buf(&mut buffer).await? == 0 {
            // End of file, and nothing is owed (each read is written back before the next):
            // `handle_read_eof` then `handle_close`. Dropping the stream closes it.
            return Ok(());
        }
        stream.write_all(&buffer).await?;
    }
}

/// `EchoServer.start`: `create_socket`, `set_reuse_addr`, `bind`, `listen`.
fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(address)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {address}: {e}")))?;
    socket.listen(BACKLOG)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let address = match support::server_address("native_echo_server", "127.0.0.1:8080")
        .and_then(|a| support::parse_inet(&a))
    {
        Ok(address) => address,
        Err(e) => return support::fail("native_echo_server", e),
    };
    let listener = match listen(address).and_then(|l| Ok((l.local_addr()?, l))) {
        Ok((bound, listener)) => {
            support::announce(bound);
            listener
        }
        Err(e) => return support::fail("native_echo_server", e),
    };
    // The map: every connection's task, so that a signal can close them all.
    let mut connections = JoinSet::new();
    let signal = support::signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // `handle_accepted` + `map.add(conn, EchoHandler)`.
                Ok((stream, peer)) => {
                    tracing::info!("conn_made: client_address={peer}");
                    connections.spawn(async move {
                        if let Err(e) = echo(stream).await {
                            tracing::debug!("connection {peer}: {e}");
                        }
                        tracing::info!("conn_closed: client_address={peer}");
                    });
                }
                // Out of descriptors or a peer that gave up: log, pause, accept again.
                Err(e) => {
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so that the set does not grow with every client.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut signal => break,
        }
    }
    // `close_all`: dropping each task drops its stream, which closes the connection.
    connections.shutdown().await;
    ExitCode::SUCCESS
}
