//! Migration, step 3 of 4: half dispatchers, half native tasks.
//!
//! ```text
//! cargo run --example migration_step3_mixed [ADDR]
//! ```
//!
//! The listener is now a native Tokio accept loop, added to the map as a member task so that
//! asyncore's lifetime rule still holds (the map is not empty while it runs). Each accepted
//! `TcpStream` is adopted into the map as step 2's `EchoHandler`, unchanged. The next piece to
//! move would be the handler itself: step 4.

mod support;

use std::io;
use std::process::ExitCode;

use asyncore::{Channel, Dispatcher};
use bytes::{Buf, BytesMut};
use tokio::net::TcpListener;

#[derive(Default)]
struct EchoHandler {
    out_buffer: BytesMut,
}

impl Dispatcher for EchoHandler {
    fn writable(&self, _: &Channel) -> bool {
        !self.out_buffer.is_empty()
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(8192)?;
        if !data.is_empty() {
            self.out_buffer.extend_from_slice(&data);
            self.handle_write(channel)?;
        }
        Ok(())
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = channel.send(&self.out_buffer)?;
        self.out_buffer.advance(sent);
        Ok(())
    }
}

/// The native accept loop: a member of the map, stopped by its shutdown token.
fn start(address: std::net::SocketAddr) -> io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {address}: {e}")))?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let bound = listener.local_addr()?;
    let map = asyncore::socket_map();
    let members = map.clone();
    let stop = map.shutdown_token();
    map.spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stop.cancelled() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    if let Err(e) = members.add(Channel::from_tcp(stream), EchoHandler::default()) {
                        tracing::error!("cannot serve a connection: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    support::serve("migration_step3_mixed", "127.0.0.1:8080", start).await
}
