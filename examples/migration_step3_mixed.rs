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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let address = match support::server_address("migration_step3_mixed", "127.0.0.1:8080")
        .and_then(|a| support::parse_inet(&a))
    {
        Ok(address) => address,
        Err(e) => return support::fail("migration_step3_mixed", e),
    };
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => return support::fail("migration_step3_mixed", format!("bind {address}: {e}")),
    };
    match listener.local_addr() {
        Ok(bound) => support::announce(bound),
        Err(e) => return support::fail("migration_step3_mixed", e),
    }
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
    let served = map.run_until(support::signal()).await;
    match served.and(map.shutdown(support::GRACE).await) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => support::fail("migration_step3_mixed", e),
    }
}
