//! Socket addresses and families: what `bind`, `connect` and `accept` speak.
//!
//! asyncore passes addresses around as Python tuples (`(host, port)`) or path strings (`AF_UNIX`).
//! Here one enum, [`Address`], covers TCP over IPv4 and IPv6 and Unix stream sockets, and the
//! [`ToAddress`] trait lets `bind`/`connect` take whatever is most natural at the call site:
//! a `SocketAddr`, `"127.0.0.1:8080"`, `("localhost", 80)` or a `Path`.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The address family of a channel's socket: asyncore's `socket.AF_INET`, `AF_INET6`, `AF_UNIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`): TCP, or UDP for a datagram channel.
    Inet,
    /// IPv6 (`AF_INET6`): TCP, or UDP for a datagram channel.
    Inet6,
    /// Unix sockets (`AF_UNIX`), stream or datagram.
    Unix,
}

impl Family {
    /// The family an address belongs to.
    pub fn of(address: &Address) -> Family {
        match address {
            Address::Inet(SocketAddr::V4(_)) => Family::Inet,
            Address::Inet(SocketAddr::V6(_)) => Family::Inet6,
            Address::Unix(_) | Address::Unnamed => Family::Unix,
        }
    }

    pub(crate) fn domain(self) -> socket2::Domain {
        match self {
            Family::Inet => socket2::Domain::IPV4,
            Family::Inet6 => socket2::Domain::IPV6,
            Family::Unix => socket2::Domain::UNIX,
        }
    }
}

/// A socket address: an IP address and port, or a Unix socket path.
///
/// An accepted Unix connection usually comes from an unbound client socket, whose address is
/// [`Address::Unnamed`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix socket bound to a path in the file system.
    Unix(PathBuf),
    /// A Unix socket without a name (an unbound client, one end of a socket pair).
    Unnamed,
}

impl Address {
    /// The IP socket address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(addr) => Some(*addr),
            _ => None,
        }
    }

    /// The path, if this is a named Unix socket address.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            Address::Unix(path) => Some(path),
            _ => None,
        }
    }

    pub(crate) fn to_sockaddr(&self) -> io::Result<socket2::SockAddr> {
        match self {
            Address::Inet(addr) => Ok((*addr).into()),
            Address::Unix(path) => socket2::SockAddr::unix(path),
            Address::Unnamed => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an unnamed Unix address cannot be bound or connected to",
            )),
        }
    }

    pub(crate) fn from_sockaddr(addr: &socket2::SockAddr) -> Address {
        if let Some(inet) = addr.as_socket() {
            Address::Inet(inet)
        } else if let Some(path) = addr.as_pathname() {
            Address::Unix(path.to_path_buf())
        } else {
            Address::Unnamed
        }
    }

    pub(crate) fn from_unix(addr: &std::os::unix::net::SocketAddr) -> Address {
        match addr.as_pathname() {
            Some(path) => Address::Unix(path.to_path_buf()),
            None => Address::Unnamed,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(addr) => addr.fmt(f),
            Address::Unix(path) => path.display().fmt(f),
            Address::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Inet(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Self {
        Address::Unix(path.to_path_buf())
    }
}

/// Anything `bind` and `connect` accept as an address.
///
/// The channel's [`Family`] decides how text is read: for `Family::Unix` a string is a path; for
/// the IP families it is `"ip:port"` or `"host:port"`. Host names are resolved with the system
/// resolver, synchronously, as Python's `connect((host, port))` does; the first address of the
/// channel's family is used. For a resolver that does not block the thread, resolve first (with
/// `tokio::net::lookup_host`) and pass the `SocketAddr`.
pub trait ToAddress {
    /// Turns `self` into an address of `family`.
    ///
    /// # Errors
    /// `InvalidInput` when the text is no address of that family, or the name does not resolve to
    /// one; the message names what was given.
    fn to_address(&self, family: Family) -> io::Result<Address>;
}

impl ToAddress for Address {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        check_family(self.clone(), family, || self.to_string())
    }
}

impl ToAddress for SocketAddr {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        check_family(Address::Inet(*self), family, || self.to_string())
    }
}

impl ToAddress for (IpAddr, u16) {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        SocketAddr::from(*self).to_address(family)
    }
}

impl ToAddress for (&str, u16) {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        resolve(*self, family, &format!("{}:{}", self.0, self.1))
    }
}

impl ToAddress for str {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        if family == Family::Unix {
            return Ok(Address::Unix(PathBuf::from(self)));
        }
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return addr.to_address(family);
        }
        resolve(self, family, self)
    }
}

impl ToAddress for String {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        self.as_str().to_address(family)
    }
}

impl ToAddress for Path {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        check_family(Address::Unix(self.to_path_buf()), family, || {
            self.display().to_string()
        })
    }
}

impl ToAddress for PathBuf {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        self.as_path().to_address(family)
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self, family: Family) -> io::Result<Address> {
        (**self).to_address(family)
    }
}

/// `shown` is only called for the error: `sendto` converts its address on every datagram.
fn check_family(
    address: Address,
    family: Family,
    shown: impl FnOnce() -> String,
) -> io::Result<Address> {
    let actual = Family::of(&address);
    if actual == family {
        Ok(address)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "address {} is {actual:?}, but the socket is {family:?}",
                shown()
            ),
        ))
    }
}

fn resolve(query: impl ToSocketAddrs, family: Family, shown: &str) -> io::Result<Address> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let candidates = query
        .to_socket_addrs()
        .map_err(|e| invalid(format!("invalid address {shown:?}: {e}")))?;
    let mut found_other = false;
    for addr in candidates {
        let address = Address::Inet(addr);
        if Family::of(&address) == family {
            return Ok(address);
        }
        found_other = true;
    }
    Err(invalid(if found_other {
        format!("{shown:?} has no {family:?} address")
    } else {
        format!("{shown:?} resolved to no address")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_addresses_follow_the_family() {
        assert_eq!(
            "127.0.0.1:80".to_address(Family::Inet).unwrap(),
            Address::Inet("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            "/tmp/s".to_address(Family::Unix).unwrap(),
            Address::Unix("/tmp/s".into())
        );
        let wrong = "[::1]:80".to_address(Family::Inet).unwrap_err();
        assert_eq!(wrong.kind(), io::ErrorKind::InvalidInput);
        assert!(wrong.to_string().contains("Inet6"), "{wrong}");
        let garbage = "not an address".to_address(Family::Inet).unwrap_err();
        assert!(garbage.to_string().contains("not an address"), "{garbage}");
    }

    #[test]
    fn names_resolve_to_the_requested_family() {
        let v4 = ("localhost", 8080).to_address(Family::Inet).unwrap();
        assert_eq!(v4.as_inet().unwrap().port(), 8080);
        assert!(v4.as_inet().unwrap().is_ipv4());
    }
}
