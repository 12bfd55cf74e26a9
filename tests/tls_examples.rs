//! The example programs over TLS, with Python's `ssl` as the real peer and certificates made
//! at test time: `http_client` fetches `https://` URLs from Python's `http.server` on an
//! ssl-wrapped socket (with `--ca`, and with the system's roots, which do not know the test
//! CA), and says in one line why it refuses an untrusted, expired or misnamed certificate;
//! `echo_server --tls-cert FILE --tls-key FILE` echoes to Python `ssl` clients.

mod tls_util;
mod util;

use std::process::Command;

use tls_util::Certs;
use util::programs::{assert_fails_in_one_line, example, run, Program};

/// Python's `http.server` serving `certs.dir` over TLS with `cert`/`key`, bound to `host`.
fn https_server(
    certs: &Certs,
    cert: &std::path::Path,
    key: &std::path::Path,
    host: &str,
) -> Program {
    let script = r#"
import http.server, os, ssl, sys
directory, cert, key, host = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=directory, **kwargs)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((host, 0), Quiet)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening on %s:%d" % (host, server.server_address[1]), flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
"#;
    let mut command = Command::new("python3");
    command.args([
        "-c",
        script,
        &certs.path(&certs.dir),
        &certs.path(cert),
        &certs.path(key),
        host,
    ]);
    Program::start(command)
}

fn http_client(args: &[&str]) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut command = Command::new(example("http_client"));
    command.args(args);
    run(command)
}

/// `http_client --ca CA https://...` against Python's `http.server` over TLS: the raw
/// response, whole, and a clean exit, though the server closes without close_notify (its
/// `Content-Length` shows the body complete); by name and by IP address.
#[test]
fn http_client_fetches_over_https_from_python() {
    let certs = Certs::new();
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(certs.dir.join("page.txt"), &body).unwrap();
    let server = https_server(&certs, &certs.cert, &certs.key, "127.0.0.1");
    let port = server.address.port();
    let ca = certs.path(&certs.ca);
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}/page.txt");
        let (status, stdout, stderr) = http_client(&["--ca", &ca, &url]);
        assert!(status.success(), "{url}: {stderr}");
        assert!(stderr.is_empty(), "{stderr}");
        let text = String::from_utf8_lossy(&stdout);
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text:.200}");
        assert!(
            text.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{text:.300}"
        );
        assert!(
            stdout.ends_with(&body),
            "the body came whole ({} bytes out)",
            stdout.len()
        );
    }
    // A missing file is the server's 404, not the client's error.
    let (status, stdout, _) =
        http_client(&["--ca", &ca, &format!("https://localhost:{port}/nothing")]);
    assert!(status.success());
    assert!(stdout.starts_with(b"HTTP/1.0 404"));
}

/// Certificates the client must refuse, each with its reason in the one error line: a CA it
/// does not trust (the system's roots, without `--ca`; another CA's file with it), an
/// expired certificate, a certificate for another host.
#[test]
fn http_client_refuses_bad_certificates_in_one_line() {
    let certs = Certs::new();
    std::fs::write(certs.dir.join("page.txt"), b"secret").unwrap();
    let ca = certs.path(&certs.ca);
    let other = certs.path(&certs.other_ca);
    let good = https_server(&certs, &certs.cert, &certs.key, "127.0.0.1");
    let url = format!("https://localhost:{}/page.txt", good.address.port());
    assert_fails_in_one_line(
        "http_client",
        &[&url],
        "the peer's certificate is not signed by a trusted authority",
    );
    assert_fails_in_one_line(
        "http_client",
        &["--ca", &other, &url],
        "not signed by a trusted authority",
    );

    let expired = https_server(&certs, &certs.expired_cert, &certs.expired_key, "127.0.0.1");
    let url = format!("https://localhost:{}/page.txt", expired.address.port());
    assert_fails_in_one_line(
        "http_client",
        &["--ca", &ca, &url],
        "the peer's certificate has expired",
    );

    // 127.0.0.2 is loopback too, but the certificate names 127.0.0.1, ::1 and localhost.
    let elsewhere = https_server(&certs, &certs.cert, &certs.key, "127.0.0.2");
    let url = format!("https://127.0.0.2:{}/page.txt", elsewhere.address.port());
    assert_fails_in_one_line(
        "http_client",
        &["--ca", &ca, &url],
        "TLS handshake with 127.0.0.2 failed: the peer's certificate is for another host name",
    );
}

/// Bad arguments and files are one line too.
#[test]
fn http_client_tls_arguments_are_checked() {
    let certs = Certs::new();
    let ca = certs.path(&certs.ca);
    let missing = certs.path(&certs.dir.join("missing.pem"));
    let key = certs.path(&certs.key);
    for (args, expect) in [
        (vec!["--ca"], "usage"),
        (vec!["--ca", &ca], "usage"),
        (
            vec!["--ca", &ca, "http://localhost/"],
            "--ca is for https:// URLs",
        ),
        (vec!["--ca", &missing, "https://localhost/"], "missing.pem"),
        (
            vec!["--ca", &key, "https://localhost/"],
            "no certificate found",
        ),
        (vec!["https://localhost:99999/"], "bad port"),
    ] {
        assert_fails_in_one_line("http_client", &args, expect);
    }
}

/// `echo_server --tls-cert FILE --tls-key FILE`: the same contract over TLS. A Python `ssl`
/// client gets its bytes back (1 B to 1 MiB), and `unwrap()` (close_notify both ways) ends
/// the connection cleanly; two clients at once; SIGTERM ends the server with status 0.
#[test]
fn echo_server_serves_python_ssl_clients() {
    let certs = Certs::new();
    let mut command = Command::new(example("echo_server"));
    command.args([
        "--tls-cert",
        &certs.path(&certs.cert),
        "--tls-key",
        &certs.path(&certs.key),
        "127.0.0.1:0",
    ]);
    let server = Program::start(command);
    let script = r#"
import socket, ssl, sys, threading
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)

def client(name, results):
    with socket.create_connection((host, port), timeout=10) as raw:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        for size in (1, 100, 16384, 100000, 1 << 20):
            data = bytes((i * 7 + size) % 251 for i in range(size))
            got = bytearray()
            # Send in slices and read back as we go, so that neither side's buffers fill up.
            for at in range(0, size, 65536):
                s.sendall(data[at:at + 65536])
                want = min(size, at + 65536)
                while len(got) < want:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise SystemExit(name + ": closed early")
                    got += chunk
            assert bytes(got) == data, (name, size)
        version = s.version()
        s.unwrap()  # close_notify, then the server's
        results.append(name + " " + version)

def run(name, results):
    try:
        client(name, results)
    except BaseException as e:
        results.append(name + " failed: " + repr(e))

results = []
threads = [threading.Thread(target=run, args=(n, results)) for n in ("a", "b")]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(sorted(results)))
"#;
    let mut python = Command::new("python3");
    python.args([
        "-c",
        script,
        "127.0.0.1",
        &server.address.port().to_string(),
        &certs.path(&certs.ca),
    ]);
    let (status, stdout, stderr) = run(python);
    assert!(status.success(), "python: {stderr}");
    assert_eq!(String::from_utf8(stdout).unwrap(), "a TLSv1.3\nb TLSv1.3\n");
    let (status, stderr) = server.stop("TERM");
    assert!(status.success(), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// The TLS options' errors are one line, as every other error of the program.
#[test]
fn echo_server_tls_options_are_checked() {
    let certs = Certs::new();
    let (cert, key) = (certs.path(&certs.cert), certs.path(&certs.key));
    let missing = certs.path(&certs.dir.join("missing.pem"));
    for (args, expect) in [
        (
            vec!["--tls-cert", cert.as_str()],
            "--tls-cert and --tls-key go together",
        ),
        (
            vec!["--tls-key", key.as_str(), "127.0.0.1:0"],
            "--tls-cert and --tls-key go together",
        ),
        (vec!["--tls-cert"], "usage"),
        (
            vec![
                "--tls-cert",
                missing.as_str(),
                "--tls-key",
                key.as_str(),
                "127.0.0.1:0",
            ],
            "missing.pem",
        ),
        (
            vec![
                "--tls-cert",
                key.as_str(),
                "--tls-key",
                key.as_str(),
                "127.0.0.1:0",
            ],
            "no certificate found",
        ),
        (
            vec![
                "--tls-cert",
                cert.as_str(),
                "--tls-key",
                cert.as_str(),
                "127.0.0.1:0",
            ],
            "no private key found",
        ),
    ] {
        assert_fails_in_one_line("echo_server", &args, expect);
    }
}
