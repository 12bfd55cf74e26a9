//! Certificates made at test time (rcgen), as rustls configurations and as PEM files for the
//! example programs and Python's `ssl`, in a directory of their own (`util::TempPath`, removed
//! with the `Certs`).

#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::sync::Arc;

use asyncore::tls::{self, ClientConfig, ServerConfig};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::util::TempPath;

/// A test CA, a server certificate it signed for `localhost`, 127.0.0.1 and ::1, an expired
/// one, and a second CA that signed nothing the server uses: all as PEM files in a fresh
/// directory.
pub struct Certs {
    pub dir: TempPath,
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate (the chain: itself, signed by the CA) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A certificate for the same names, signed by the CA, that expired in 2001.
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    /// Another CA's certificate: a client that trusts only it rejects the server.
    pub other_ca: PathBuf,
}

pub const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl Certs {
    pub fn new() -> Certs {
        let dir = TempPath::new("certs");
        std::fs::create_dir(&dir).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };

        let (ca_pem, issuer) = ca("asyncore test CA");
        let (other_ca_pem, _) = ca("another test CA");
        let (cert_pem, key_pem) = leaf(&issuer, None);
        let (expired_pem, expired_key_pem) = leaf(&issuer, Some((2000, 2001)));
        Certs {
            ca: write("ca.pem", ca_pem),
            cert: write("cert.pem", cert_pem),
            key: write("key.pem", key_pem),
            expired_cert: write("expired.pem", expired_pem),
            expired_key: write("expired-key.pem", expired_key_pem),
            other_ca: write("other-ca.pem", other_ca_pem),
            dir,
        }
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::new(tls::server_config(&self.cert, &self.key).unwrap())
    }

    pub fn server_config_alpn(&self, protocols: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = tls::server_config(&self.cert, &self.key).unwrap();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    pub fn expired_server_config(&self) -> Arc<ServerConfig> {
        Arc::new(tls::server_config(&self.expired_cert, &self.expired_key).unwrap())
    }

    /// A client that trusts the test CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(tls::client_config_with_ca(&self.ca).unwrap())
    }

    pub fn client_config_alpn(&self, protocols: &[&[u8]]) -> Arc<ClientConfig> {
        let mut config = tls::client_config_with_ca(&self.ca).unwrap();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A client that trusts only the other CA.
    pub fn untrusting_client_config(&self) -> Arc<ClientConfig> {
        Arc::new(tls::client_config_with_ca(&self.other_ca).unwrap())
    }

    pub fn path(&self, p: &Path) -> String {
        p.to_str().unwrap().to_string()
    }
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A server certificate for [`NAMES`], valid from..until the given years if given.
fn leaf(issuer: &Issuer<'static, KeyPair>, years: Option<(i32, i32)>) -> (String, String) {
    let mut params =
        CertificateParams::new(NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    if let Some((from, until)) = years {
        params.not_before = date_time_ymd(from, 1, 1);
        params.not_after = date_time_ymd(until, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}
