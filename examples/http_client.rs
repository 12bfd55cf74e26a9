//! The `http_client` of Python's asyncore documentation (seeds 001 and 003): connect, send a
//! `GET` request, copy the raw response to stdout, and end when the server closes the
//! connection and the map is empty.
//!
//! `https://` URLs speak TLS on the same dispatcher: the channel starts TLS right after
//! `connect`, and `handle_read`/`handle_write` carry plaintext as before. The server's
//! certificate must be signed by one of the system's trusted roots, or, with `--ca FILE`, by
//! the certificates of that PEM file only (a private CA), and must name the URL's host. A
//! server that closes without TLS's close_notify (Python's `http.server` on an ssl-wrapped
//! socket does) has sent the whole response only if the body has its `Content-Length`: then
//! the response counts as complete, otherwise the truncation is the program's error.
//!
//! ```text
//! cargo run --example http_client -- http://127.0.0.1:8000/
//! cargo run --example http_client -- https://example.com/
//! cargo run --example http_client -- --ca ca.pem https://localhost:8443/
//! ```

mod support;

use std::cell::RefCell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use asyncore::{tls, Address, Channel, Dispatcher, Family, InterestScope};
use bytes::{Buf, Bytes};

/// The error that ended the client, if one did: the program's one line on stderr.
type Failure = Rc<RefCell<Option<io::Error>>>;

struct HttpClient {
    buffer: Bytes,
    failure: Failure,
    length: Length,
}

impl HttpClient {
    fn start(url: &Url, ca: Option<&str>, failure: &Failure) -> io::Result<()> {
        let Url {
            host, port, path, ..
        } = url;
        let address = resolve(host, *port)?;
        let mut channel = Channel::create_socket(Family::of(&address))?;
        channel.connect(&address)?;
        if url.tls {
            let config = match ca {
                Some(file) => tls::client_config_with_ca(file)?,
                None => tls::client_config()?,
            };
            channel.start_tls_client(Arc::new(config), host)?;
        }
        let buffer = Bytes::from(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"));
        asyncore::add(
            channel,
            HttpClient {
                buffer,
                failure: failure.clone(),
                length: Length::default(),
            },
        )?;
        Ok(())
    }
}

/// What the response says of its length, and how much of its body came: enough to tell a
/// complete response from a cut one when a TLS server closes without close_notify.
#[derive(Default)]
struct Length {
    /// The response's head, until its blank line.
    head: Vec<u8>,
    /// `Content-Length`, once the head is complete (`None` inside: none given).
    content_length: Option<Option<usize>>,
    body: usize,
}

impl Length {
    fn received(&mut self, data: &[u8]) {
        if self.content_length.is_some() {
            self.body += data.len();
            return;
        }
        self.head.extend_from_slice(data);
        let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&self.head[..end]);
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        });
        self.body = self.head.len() - end - 4;
        self.content_length = Some(length);
        self.head = Vec::new();
    }

    /// The whole body came, as its `Content-Length` said.
    fn complete(&self) -> bool {
        matches!(self.content_length, Some(Some(length)) if self.body >= length)
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
        self.length.received(&data);
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
        // A TLS server that closed without close_notify after the whole body is done.
        if !(tls::is_truncation(&error) && self.length.complete()) {
            *self.failure.borrow_mut() = Some(error);
        }
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

/// A URL split into what the client needs.
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

/// `http[s]://host[:port]/path`.
fn parse_url(url: &str) -> Result<Url, String> {
    let bad =
        |why: &str| format!("invalid URL {url:?}: {why} (expected http[s]://host[:port]/path)");
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(bad("only http:// and https:// are supported")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host, port.parse().map_err(|_| bad("bad port"))?)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// `[--ca FILE] URL`, in any order → (URL, CA file).
fn parse_args(args: &[String]) -> Result<(String, Option<String>), String> {
    const USAGE: &str = "usage: http_client [--ca FILE] URL";
    let (mut url, mut ca) = (None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => match args.next() {
                Some(file) if ca.is_none() => ca = Some(file.clone()),
                _ => return Err(USAGE.to_string()),
            },
            _ if url.is_none() && !arg.starts_with("--") => url = Some(arg.clone()),
            _ => return Err(USAGE.to_string()),
        }
    }
    Ok((url.ok_or(USAGE)?, ca))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    support::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, ca) = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(e) => return support::fail("http_client", e),
    };
    let url = match parse_url(&url) {
        Ok(url) => url,
        Err(e) => return support::fail("http_client", e),
    };
    if ca.is_some() && !url.tls {
        return support::fail("http_client", "--ca is for https:// URLs");
    }
    let failure = Failure::default();
    if let Err(e) = HttpClient::start(&url, ca.as_deref(), &failure) {
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
