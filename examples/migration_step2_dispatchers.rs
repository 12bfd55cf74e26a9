//! Migration, step 2 of 4: step 1's Python, line for line, on this crate.
//!
//! ```text
//! cargo run --example migration_step2_dispatchers [ADDR]
//! ```
//!
//! `dispatcher_with_send` becomes a handler that keeps its unsent output and is writable only
//! while there is some (asyncore's `writable()` default of true would spin).

mod support;

use std::io;
use std::process::ExitCode;

use asyncore::{Address, Channel, Dispatcher};
use bytes::{Buf, BytesMut};

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

struct EchoServer;

impl EchoServer {
    fn start(address: std::net::SocketAddr) -> io::Result<Address> {
        let mut channel = Channel::create_socket(support::family_of(&address))?;
        channel.set_reuse_addr()?;
        channel.bind(address)?;
        channel.listen(128)?;
        let bound = channel.local_addr()?;
        asyncore::add(channel, EchoServer)?;
        Ok(bound)
    }
}

impl Dispatcher for EchoServer {
    fn handle_accepted(
        &mut self,
        channel: &mut Channel,
        sock: Channel,
        _addr: Address,
    ) -> io::Result<()> {
        channel
            .map()
            .expect("in a map")
            .add(sock, EchoHandler::default())?;
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    support::serve(
        "migration_step2_dispatchers",
        "127.0.0.1:8080",
        EchoServer::start,
    )
    .await
}
