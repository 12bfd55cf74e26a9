//! TLS for channels, with [rustls](https://docs.rs/rustls/0.23): configurations, the upgrade of
//! a connection, the errors it reports, and the hand-over of a TLS connection to native code.
//!
//! A channel speaks TLS from the moment [`Channel::start_tls`](crate::Channel::start_tls) (or
//! [`start_tls_server`](crate::Channel::start_tls_server),
//! [`start_tls_client`](crate::Channel::start_tls_client)) is called: on a connection just
//! accepted, on one still connecting, or in the middle of a plaintext conversation (STARTTLS).
//! The dispatcher keeps its callbacks, and `recv`/`send` carry plaintext; the reactor drives
//! the handshake and moves the records. The crate docs' [TLS section](crate#tls) tells the
//! whole story; this module holds what it needs:
//!
//! - configurations: [`server_config`] (a certificate chain and key from PEM files),
//!   [`client_config`] (the system's trusted roots), [`client_config_with_ca`] (a private CA),
//!   all on the [`crypto_provider`] this crate is built with; any rustls configuration works;
//! - [`Upgrade`]: which side to play, and the plaintext still owed before the first record;
//! - errors: [`is_truncation`] and [`rustls_error`] to tell a failure's kind;
//! - [`TlsStream`](crate::TlsStream): a TLS connection taken out of a map for native Tokio code
//!   ([`NativeStream::Tls`](crate::NativeStream::Tls)).
//!
//! # Example
//!
//! Both ends of a socket pair speak TLS, one as the server, the other as the client, with a
//! self-signed certificate made on the spot (rcgen):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! use std::{cell::RefCell, io, rc::Rc, sync::Arc};
//! use asyncore::{tls, Channel, Dispatcher, Map};
//!
//! let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).map_err(io::Error::other)?;
//! let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
//! let server_config = Arc::new(tls::server_config_from_pem(cert.as_bytes(), key.as_bytes())?);
//! let mut roots = tls::rustls::RootCertStore::empty();
//! roots.add(made.cert.der().clone()).map_err(io::Error::other)?;
//! let client_config = Arc::new(tls::client_config_with_roots(roots));
//!
//! /// Says hello once the handshake is done; keeps the answer.
//! struct Client { answer: Rc<RefCell<Vec<u8>>> }
//! impl Dispatcher for Client {
//!     fn writable(&self, _: &Channel) -> bool { false }
//!     fn handle_tls_ready(&mut self, channel: &mut Channel) -> io::Result<()> {
//!         assert!(channel.peer_certificates().is_some());
//!         channel.send(b"hello")?;
//!         Ok(())
//!     }
//!     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
//!         self.answer.borrow_mut().extend_from_slice(&channel.recv(100)?);
//!         if self.answer.borrow().len() == 5 {
//!             channel.map().expect("in a map").close_all();
//!         }
//!         Ok(())
//!     }
//! }
//!
//! /// Answers in upper case.
//! struct Server;
//! impl Dispatcher for Server {
//!     fn writable(&self, _: &Channel) -> bool { false }
//!     fn handle_read(&mut self, channel: &mut Channel) -> io::Result<()> {
//!         let data = channel.recv(100)?;
//!         channel.send(&data.to_ascii_uppercase())?;
//!         Ok(())
//!     }
//! }
//!
//! let (a, b) = tokio::net::UnixStream::pair()?;
//! let (mut server, mut client) = (Channel::from_unix(a), Channel::from_unix(b));
//! server.start_tls_server(server_config)?;
//! client.start_tls_client(client_config, "localhost")?;
//! let answer = Rc::new(RefCell::new(Vec::new()));
//! let map = Map::new();
//! map.add(server, Server)?;
//! map.add(client, Client { answer: answer.clone() })?;
//! map.run().await?;
//! assert_eq!(&answer.borrow()[..], b"HELLO");
//! # Ok(()) }
//! ```
//!
//! # Crypto provider
//!
//! rustls is built with its *ring* provider. *ring* builds with a C compiler alone; the other
//! choice, aws-lc-rs, needs CMake (and NASM on some targets) and compiles a large C library,
//! which costs minutes on a small build machine. Both implement the same TLS 1.2 and 1.3 cipher
//! suites. A configuration built by hand with `ServerConfig::builder()` uses rustls's process
//! default, which is *ring* as long as no other crate in the program turns on aws-lc-rs;
//! [`crypto_provider`] names it explicitly.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use rustls;
pub use rustls::pki_types;
pub use rustls::{ClientConfig, ServerConfig};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How a channel starts TLS: as the server or as the client, and what plaintext it still owes
/// the peer before the first TLS record. Given to [`Channel::start_tls`](crate::Channel::start_tls).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let client_config = std::sync::Arc::new(asyncore::tls::client_config_with_roots(asyncore::tls::rustls::RootCertStore::empty()));
/// use asyncore::tls::Upgrade;
///
/// let upgrade = Upgrade::client(client_config, "mail.example.com")?;
/// # let _ = upgrade;
/// # Ok(()) }
/// ```
pub struct Upgrade {
    pub(crate) side: Side,
    pub(crate) plaintext_first: Bytes,
}

pub(crate) enum Side {
    Server(Arc<ServerConfig>),
    Client(Arc<ClientConfig>, ServerName<'static>),
}

impl Upgrade {
    /// Plays the server: waits for the peer's `ClientHello`.
    pub fn server(config: Arc<ServerConfig>) -> Upgrade {
        Upgrade {
            side: Side::Server(config),
            plaintext_first: Bytes::new(),
        }
    }

    /// Plays the client: sends a `ClientHello` for `server_name` (a DNS name, or an IP
    /// address), which the server's certificate must match. Python's `server_hostname`.
    ///
    /// # Errors
    /// `InvalidInput` when `server_name` is neither a DNS name nor an IP address.
    pub fn client(config: Arc<ClientConfig>, server_name: &str) -> io::Result<Upgrade> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid TLS server name {server_name:?}: not a DNS name or IP address"),
            )
        })?;
        Ok(Upgrade {
            side: Side::Client(config, name),
            plaintext_first: Bytes::new(),
        })
    }

    /// Plaintext the channel sends before the first TLS record: output the dispatcher had
    /// queued, but not sent, when it decided to upgrade (the "220 Ready to start TLS" of a
    /// STARTTLS server). Calls add up, in order. [`Chat::start_tls`](crate::chat::Chat::start_tls)
    /// passes the chat's queued output this way.
    pub fn plaintext_first(mut self, data: impl Into<Bytes>) -> Upgrade {
        let data = data.into();
        if self.plaintext_first.is_empty() {
            self.plaintext_first = data;
        } else if !data.is_empty() {
            let mut joined = Vec::with_capacity(self.plaintext_first.len() + data.len());
            joined.extend_from_slice(&self.plaintext_first);
            joined.extend_from_slice(&data);
            self.plaintext_first = joined.into();
        }
        self
    }

    /// Which side this upgrade plays.
    pub fn is_server(&self) -> bool {
        matches!(self.side, Side::Server(_))
    }
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Upgrade");
        match &self.side {
            Side::Server(_) => d.field("side", &"server"),
            Side::Client(_, name) => d.field("side", &"client").field("server_name", name),
        };
        d.field("plaintext_first", &self.plaintext_first.len())
            .finish()
    }
}

/// The cryptography rustls runs on in this crate: *ring* (see the [module docs](self)).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from PEM files: `cert_chain` holds the server's certificate first,
/// then any intermediates; `key` its private key (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and 1.3, no
/// client certificates. Python's `SSLContext.load_cert_chain(certfile, keyfile)`.
///
/// Set ALPN protocols (`alpn_protocols`) or other fields on the result before wrapping it in
/// an `Arc`.
///
/// # Errors
/// `NotFound`, `PermissionDenied`, … for a file that cannot be read; `InvalidData` for a file
/// without a certificate or key, or a key that does not match the certificate. Each message
/// names the file.
pub fn server_config(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> io::Result<ServerConfig> {
    let (cert_path, key_path) = (cert_chain.as_ref(), key.as_ref());
    let certs = read_file(cert_path)?;
    let key_pem = read_file(key_path)?;
    let chain = certificates(&certs, &cert_path.display().to_string())?;
    let key = private_key(&key_pem, &key_path.display().to_string())?;
    build_server_config(
        chain,
        key,
        &format!("{} and {}", cert_path.display(), key_path.display()),
    )
}

/// A server configuration from PEM text already in memory (see [`server_config`]).
///
/// # Errors
/// `InvalidData`, as [`server_config`].
pub fn server_config_from_pem(cert_chain: &[u8], key: &[u8]) -> io::Result<ServerConfig> {
    let chain = certificates(cert_chain, "certificate chain")?;
    let key = private_key(key, "private key")?;
    build_server_config(chain, key, "the certificate chain and key")
}

fn build_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    what: &str,
) -> io::Result<ServerConfig> {
    ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid_data(format!("TLS protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid_data(format!("{what}: {e}")))
}

/// A client configuration that trusts the system's root certificates (what
/// `rustls-native-certs` finds: `SSL_CERT_FILE`/`SSL_CERT_DIR` if set, else the system store,
/// e.g. `/etc/ssl/certs`). Python's `ssl.create_default_context()`.
///
/// # Errors
/// `NotFound` when the system store holds no usable certificate (install `ca-certificates`,
/// or use [`client_config_with_ca`]).
pub fn client_config() -> io::Result<ClientConfig> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => format!(": {e}"),
            None => String::new(),
        };
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no trusted root certificates found in the system store{why} (install \
                 ca-certificates, set SSL_CERT_FILE, or give a CA file)"
            ),
        ));
    }
    Ok(client_config_with_roots(roots))
}

/// A client configuration that trusts the certificates of the PEM file `ca` (a private CA)
/// and nothing else. Python's `create_default_context(cafile=...)`.
///
/// # Errors
/// An unreadable file, one without certificates, or a certificate rustls cannot use as a root
/// (`InvalidData`), named in the message.
pub fn client_config_with_ca(ca: impl AsRef<Path>) -> io::Result<ClientConfig> {
    let path = ca.as_ref();
    let pem = read_file(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&pem, &path.display().to_string())? {
        roots
            .add(cert)
            .map_err(|e| invalid_data(format!("{}: {e}", path.display())))?;
    }
    Ok(client_config_with_roots(roots))
}

/// A client configuration (TLS 1.2 and 1.3, no client certificate) that trusts `roots`.
pub fn client_config_with_roots(roots: rustls::RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn certificates(pem: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_data(format!("{what}: {e}")))?;
    if chain.is_empty() {
        return Err(invalid_data(format!(
            "{what}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" sections)"
        )));
    }
    Ok(chain)
}

fn private_key(pem: &[u8], what: &str) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => invalid_data(format!(
            "{what}: no private key found (expected PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA \
             PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")"
        )),
        e => invalid_data(format!("{what}: {e}")),
    })
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Whether `error` reports a truncated TLS stream: the peer closed the connection without
/// `close_notify`, so the data before may be incomplete. Python hides this by default
/// (`suppress_ragged_eofs=True`: a truncation reads as end of file); here `recv` returns it as
/// an error (kind `UnexpectedEof`), which reaches `handle_error`. A protocol that knows where
/// its data ends (an HTTP response with `Content-Length`) may treat it as end of file.
pub fn is_truncation(error: &io::Error) -> bool {
    find::<Truncated>(error).is_some()
}

/// The rustls error behind `error`, if a TLS failure caused it (a certificate that is not
/// trusted, has expired or names another host; an alert from the peer; a message that is not
/// TLS): match on it to tell the cases apart. The `io::Error` itself has kind `InvalidData`
/// and a message that says what happened in words.
///
/// ```
/// # #![allow(dead_code)]
/// use asyncore::tls::{rustls, rustls_error};
/// # fn check(error: &std::io::Error) {
/// if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) =
///     rustls_error(error)
/// {
///     eprintln!("the server's certificate is not signed by a CA we trust");
/// }
/// # }
/// ```
pub fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    find::<TlsFailure>(error).map(|failure| &failure.cause)
}

/// Walks `error`'s chain of sources for a `T`.
fn find<T: StdError + 'static>(error: &io::Error) -> Option<&T> {
    let mut next: Option<&(dyn StdError + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(io) = current.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        next = current.source();
    }
    None
}

/// The end of a TLS stream without `close_notify` ([`is_truncation`]).
#[derive(Debug)]
pub(crate) struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "TLS stream truncated: the peer closed the connection without close_notify, so what \
             came before may be incomplete",
        )
    }
}

impl StdError for Truncated {}

pub(crate) fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, Truncated)
}

/// A rustls error, with what the channel was doing and a plain-words gloss.
#[derive(Debug)]
pub(crate) struct TlsFailure {
    during_handshake: bool,
    peer: Option<String>,
    cause: rustls::Error,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.during_handshake {
            "TLS handshake"
        } else {
            "TLS session"
        })?;
        if let Some(peer) = &self.peer {
            write!(f, " with {peer}")?;
        }
        f.write_str(" failed: ")?;
        if let Some(gloss) = gloss(&self.cause) {
            write!(f, "{gloss} ({})", self.cause)
        } else {
            write!(f, "{}", self.cause)
        }
    }
}

impl StdError for TlsFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.cause)
    }
}

/// An `io::Error` (kind `InvalidData`) for a rustls failure.
pub(crate) fn failure(
    cause: rustls::Error,
    during_handshake: bool,
    peer: Option<&str>,
) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        TlsFailure {
            during_handshake,
            peer: peer.map(str::to_string),
            cause,
        },
    )
}

/// The peer closed the connection before the handshake finished.
pub(crate) fn closed_during_handshake(peer: Option<&str>) -> io::Error {
    let with = peer.map(|p| format!(" with {p}")).unwrap_or_default();
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("TLS handshake{with} failed: the peer closed the connection during the handshake"),
    )
}

/// What a rustls error means, in words, for the common cases.
fn gloss(error: &rustls::Error) -> Option<&'static str> {
    use rustls::{CertificateError as C, Error as E};
    Some(match error {
        E::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "the peer's certificate is not signed by a trusted authority",
            C::Expired | C::ExpiredContext { .. } => "the peer's certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the peer's certificate is not valid yet"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the peer's certificate is for another host name"
            }
            C::Revoked => "the peer's certificate was revoked",
            C::BadSignature => "the peer's certificate has a bad signature",
            C::BadEncoding => "the peer's certificate cannot be parsed",
            _ => "the peer's certificate was refused",
        },
        E::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            match alert {
                A::BadCertificate
                | A::UnknownCA
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::CertificateRevoked
                | A::UnsupportedCertificate => "the peer refused our certificate",
                A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => {
                    "the peer found no protocol version or cipher suite in common"
                }
                A::NoApplicationProtocol => "the peer supports none of our ALPN protocols",
                A::CloseNotify => "the peer closed the connection during the handshake",
                _ => "the peer sent a fatal alert",
            }
        }
        E::InvalidMessage(_) => {
            "the peer sent something that is not TLS (plaintext where a record was expected: \
             bytes sent before the handshake, or another protocol)"
        }
        E::PeerIncompatible(_) => "the peer's TLS is incompatible with ours",
        E::NoApplicationProtocol => "the peer supports none of our ALPN protocols",
        E::DecryptError => "a record failed to decrypt (corrupted or forged)",
        E::NoCertificatesPresented => "the peer presented no certificate",
        _ => return None,
    })
}
