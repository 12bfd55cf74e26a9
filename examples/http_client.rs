//! The `http_client` of Python's asyncore documentation (seeds 001 and 003): connect, send a
//! `GET` request, copy the raw response to stdout, and end when the server closes the
//! connection and the map is empty.
//!
//! ```text
//! cargo run --example http_client -- http://127.0.0.1:8000/
//! ```

mod support;

use std::cell::RefCell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;

use asyncore::{Address, Channel, Dispatcher, Family, InterestScope};
use bytes::{Buf, Bytes};

/// The error that ended the client, if one did: the program's one line on stderr.
type Failure = Rc<RefCell<Option<io::Error>>>;

struct HttpClient {
    buffer: Bytes,
    failure: Failure,
}

impl HttpClient {
    fn start(host: &str, port: u16, path: &str, failure: &Failure) -> io::Result<()> {
        let address = resolve(host, port)?;
        let mut channel = Channel::create_socket(Family::of(&address))?;
        channel.connect(&address)?;
        let buffer = Bytes::from(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"));
        asyncore::add(
            channel,
            HttpClient {
                buffer,
                failure: failure.clone(),
            },
        )?;
        Ok(())
    }
}

impl Dispatcher for HttpClient {
    fn interest_scope(&self) -> InterestScope {
        InterestScope::Own // its own request buffer
    }

    fn handle_connect(&mut self, _: &mut Channel) -> io::Result<()> {
        Ok(())
    }

    fn handle_close(&mut self, channel: &mut Channel) -> io::Result<()> {
        channel.close();
        Ok(())
    }

    fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
        let data = channel.recv(8192)?;
        // A blocking write to stdout, as the Python's print(): fine for a command-line tool.
        io::stdout().write_all(&data)
    }

    fn writable(&self, _: &Channel) -> bool {
        !self.buffer.is_empty()
    }

    fn handle_write(&mut self, channel: &mut Channel) -> io::Result<()> {
        let sent = channel.send(&self.buffer)?;
        self.buffer.advance(sent);
        Ok(())
    }

    fn handle_error(&mut self, channel: &mut Channel, error: io::Error) {
        *self.failure.borrow_mut() = Some(error);
        channel.close();
    }
}

/// The first address of `host:port`.
fn resolve(host: &str, port: u16) -> io::Result<Address> {
    use std::net::ToSocketAddrs;
    let what = format!("{host}:{port}");
    let mut found = (host, port)
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    let first = found.next().map(Address::Inet);
    first
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{what}: no address found")))
}

/// `http://host[:port]/path` → (host, port, path).
fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let bad = |why: &str| format!("invalid URL {url:?}: {why} (expected http://host[:port]/path)");
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host, port.parse().map_err(|_| bad("bad port"))?)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url] = args.as_slice() else {
        return support::fail("http_client", "usage: http_client URL");
    };
    let (host, port, path) = match parse_url(url) {
        Ok(parts) => parts,
        Err(e) => return support::fail("http_client", e),
    };
    let failure = Failure::default();
    if let Err(e) = HttpClient::start(&host, port, &path, &failure) {
        return support::fail("http_client", e);
    }
    if let Err(e) = asyncore::run().await {
        return support::fail("http_client", e);
    }
    let _ = io::stdout().flush();
    match failure.take() {
        Some(e) => support::fail("http_client", e),
        None => ExitCode::SUCCESS,
    }
}
