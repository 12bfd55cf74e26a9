//! asyncore's `EchoClient`: one connection per message; each sends its message, reads until
//! as many bytes came back, prints `MSG -> ECHO` and closes. The program ends when the map is
//! empty, as `asyncore.loop()` does.
//!
//! ```text
//! cargo run --example echo_client -- 127.0.0.1:8080 hello world
//! ```

mod support;

use std::cell::RefCell;
use std::io;
use std::process::ExitCode;
use std::rc::Rc;

use asyncore::{Address, Channel, Dispatcher, Family, InterestScope};
use bytes::{Buf, Bytes, BytesMut};

/// The first failure of any client: the program's one line on stderr.
type Failure = Rc<RefCell<Option<String>>>;

struct EchoClient {
    message: Bytes,
    buffer: Bytes, // what is still to be sent
    echo: BytesMut,
    failure: Failure,
}

impl EchoClient {
    fn start(address: &Address, data: &str, failure: &Failure) -> io::Result<()> {
        let mut channel = Channel::create_socket(Family::of(address))?;
        channel.connect(address)?;
        let message = Bytes::copy_from_slice(data.as_bytes());
        let client = EchoClient {
            buffer: message.clone(),
            message,
            echo: BytesMut::new(),
            failure: failure.clone(),
        };
        asyncore::add(channel, client)?;
        Ok(())
    }

    fn done(&self) -> bool {
        self.echo.len() >= self.message.len()
    }

    fn fail(&self, why: String) {
        self.failure.borrow_mut().get_or_insert(why);
    }
}

impl Dispatcher for EchoClient {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // its own message buffer
    }

    fn writable(&self, _: &Channel) -> bool {
        !self.buffer.is_empty()
    }

    fn handle_connect(&mut self, channel: &mut Channel) -> io::Result<()> {
        if self.message.is_empty() {
            println!(" -> ");
            channel.close();
        }
        Ok(())
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = channel.send(&self.buffer)?;
        self.buffer.advance(sent);
        Ok(())
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(8192)?;
        self.echo.extend_from_slice(&data);
        if self.done() {
            let show = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            println!("{} -> {}", show(&self.message), show(&self.echo));
            channel.close();
        }
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        if !self.done() {
            self.fail(format!(
                "connection to {} closed after {} of {} bytes came back",
                channel.addr().map(ToString::to_string).unwrap_or_default(),
                self.echo.len(),
                self.message.len()
            ));
        }
        channel.close();
        Ok(())
    }

    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        self.fail(error.to_string());
        channel.close();
    }
}

/// `IP:PORT`, or `HOST:PORT` resolved (first address).
fn resolve(address: &str) -> Result<Address, String> {
    use std::net::ToSocketAddrs;
    let bad = |why: String| format!("invalid address {address:?}: {why}");
    let first = address
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next();
    first
        .map(Address::Inet)
        .ok_or_else(|| bad("no address found".into()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((address, messages)) = args.split_first().filter(|(_, m)| !m.is_empty()) else {
        return support::fail("echo_client", "usage: echo_client ADDR MSG [MSG...]");
    };
    let address = match resolve(address) {
        Ok(address) => address,
        Err(e) => return support::fail("echo_client", e),
    };
    let failure = Failure::default();
    for message in messages {
        if let Err(e) = EchoClient::start(&address, message, &failure) {
            return support::fail("echo_client", e);
        }
    }
    if let Err(e) = asyncore::run().await {
        return support::fail("echo_client", e);
    }
    match failure.take() {
        Some(why) => support::fail("echo_client", why),
        None => ExitCode::SUCCESS,
    }
}
