//! TLS echo: this crate's `examples/echo_server --tls-cert CERT --tls-key KEY` (its
//! handler unchanged, the listener starting TLS on every accepted connection) against a native
//! tokio-rustls echo server (a task per connection, `read_buf` into a reused 64 KiB buffer,
//! `write_all`), same rustls, same *ring* provider, same certificate, both on a current-thread
//! runtime, under one load generator of tokio-rustls clients.
//!
//! ```text
//! cargo bench --bench tls_echo                 # messages per second, interleaved rounds
//! cargo bench --bench tls_echo -- callgrind    # user-space instructions per message
//! cargo bench --bench tls_echo -- quick        # one short round of each (a smoke run)
//! cargo bench --bench tls_echo -- c64 4KiB     # only the points whose names contain these
//! ```
//!
//! Both servers are child processes (`benches/support/child.rs`), so that each can run under
//! `valgrind --tool=callgrind`: the example's release build, and this bench binary started
//! again with `--serve CERT KEY`. Each point is measured crate, native, crate, native… and the
//! table shows medians over the rounds and the ratio crate / native: messages per second, and
//! the server's CPU time per message (`/proc/PID/task/*/schedstat`, read at both ends of the
//! window, as `echo_load` does). C = 1 pins the servers and the generator to CPU 0 (as
//! `echo_load` does; waking the other vCPU costs more than the echo). The callgrind mode zeroes
//! the server's counters after a warm-up (handshakes done), runs a fixed number of rounds and
//! divides the instructions by the messages; at C = 1 the generator pauses 1 ms after each
//! echo, so that each message is one wake-up of the server (see `benches/README.md`). The
//! `handshake` point is a new connection per message: connect, handshake, one 64 B echo,
//! close_notify; its figures are per connection.

#[path = "support/child.rs"]
mod child;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use child::{cpu_ns, example, pin, Callgrind, Server};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

const PAUSE: Duration = Duration::from_millis(1);
const SERVERS: [&str; 2] = ["crate", "native"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--serve") {
        let (cert, key) = (&args[at + 1], &args[at + 2]);
        if let Err(e) = native::run(Path::new(cert), Path::new(key)) {
            eprintln!("tls_echo server: {e}");
            std::process::exit(1);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let callgrind = args.iter().any(|a| a == "callgrind");
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--") && !matches!(*a, "quick" | "callgrind"))
        .collect();
    if let Err(e) = bench(quick, callgrind, &filters) {
        eprintln!("tls_echo: {e}");
        std::process::exit(1);
    }
}

#[derive(Clone, Copy)]
enum Point {
    Echo { conns: usize, size: usize },
    Handshake { workers: usize },
}

impl Point {
    fn name(self) -> String {
        match self {
            Point::Echo { conns, size } if size >= 1024 => format!("c{conns} {}KiB", size / 1024),
            Point::Echo { conns, size } => format!("c{conns} {size}B"),
            Point::Handshake { workers } => format!("handshake ({workers} workers)"),
        }
    }
    fn pinned(self) -> bool {
        matches!(self, Point::Echo { conns: 1, .. })
    }
}

/// C = 64 at 4 KiB and 64 KiB (one record, and four) and the handshake rate are the points
/// with targets; 64 B shows the reactor's share with little cryptography, alone (C = 1) and
/// with company.
fn points() -> Vec<Point> {
    vec![
        Point::Echo { conns: 1, size: 64 },
        Point::Echo {
            conns: 64,
            size: 64,
        },
        Point::Echo {
            conns: 64,
            size: 4 * 1024,
        },
        Point::Echo {
            conns: 64,
            size: 64 * 1024,
        },
        Point::Handshake { workers: 8 },
    ]
}

fn bench(quick: bool, callgrind: bool, filters: &[&str]) -> io::Result<()> {
    let certs = certs::Certs::new()?;
    let out = std::env::temp_dir().join(format!("tls_echo_callgrind.{}", std::process::id()));
    if callgrind {
        std::fs::create_dir_all(&out)?;
    }
    let servers: Vec<Server> = SERVERS
        .iter()
        .map(|kind| start_server(kind, &certs, callgrind.then_some(out.as_path())))
        .collect::<io::Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = certs.client_config()?;
    let rounds = if quick {
        1
    } else if callgrind {
        2
    } else {
        5
    };
    let mut text = if callgrind {
        format!(
            "tls_echo callgrind: user-space instructions of the server per message (handshake: \
             per connection), {rounds} round(s), C=1 with a {PAUSE:?} pause after each echo; \
             ratio = crate / native\n\n| point | messages | crate (asyncore + TLS) | native \
             (tokio-rustls) | ratio |\n|---|---|---|---|---|\n"
        )
    } else {
        format!(
            "tls_echo: messages per second (handshake: connections per second) and the \
             server's CPU µs per message, medians of {rounds} interleaved round(s); ratio = \
             crate / native\n\n| point | rate crate (asyncore + TLS) | rate native \
             (tokio-rustls) | ratio | CPU µs/msg crate | CPU µs/msg native | ratio \
             |\n|---|---|---|---|---|---|---|\n"
        )
    };
    let selected = |p: &Point| {
        filters
            .iter()
            .all(|f| p.name().replace(' ', "").contains(f))
    };
    for point in points().into_iter().filter(selected) {
        pin_all(point, &servers, "0")?;
        // Per server: instructions per message, or messages per second; CPU per message.
        let mut figures = [Vec::new(), Vec::new()];
        let mut cpu = [Vec::new(), Vec::new()];
        let mut messages = 0;
        for _ in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let figure = if callgrind {
                    let (warm_up, measured) = match point {
                        Point::Echo { conns: 1, .. } => (100, if quick { 200 } else { 1000 }),
                        Point::Echo { size, .. } if size >= 64 * 1024 => {
                            (2, if quick { 4 } else { 10 })
                        }
                        Point::Echo { .. } => (5, if quick { 10 } else { 40 }),
                        Point::Handshake { .. } => (5, if quick { 10 } else { 40 }),
                    };
                    let (n, instructions) =
                        runtime.block_on(counted(server, &client, point, warm_up, measured))?;
                    messages = n;
                    instructions as f64 / n as f64
                } else {
                    let window = if quick {
                        Duration::from_millis(300)
                    } else {
                        Duration::from_secs(1)
                    };
                    let (rate, cpu_per_message) =
                        runtime.block_on(timed(server, &client, point, window))?;
                    cpu[i].push(cpu_per_message);
                    rate
                };
                figures[i].push(figure);
            }
        }
        pin_all(point, &servers, "0-1")?;
        let [ours, native] = figures.map(|v| median(&v));
        let _ = if callgrind {
            writeln!(
                text,
                "| {} | {messages} | {ours:.0} | {native:.0} | {:.2} |",
                point.name(),
                ours / native
            )
        } else {
            let [cpu_ours, cpu_native] = cpu.map(|v| median(&v));
            writeln!(
                text,
                "| {} | {ours:.0} | {native:.0} | {:.2} | {cpu_ours:.2} | {cpu_native:.2} | {:.2} |",
                point.name(),
                ours / native,
                cpu_ours / cpu_native
            )
        };
    }
    for server in servers {
        server.stop()?;
    }
    let _ = std::fs::remove_dir_all(&out);
    print!("{text}");
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn pin_all(point: Point, servers: &[Server], cpus: &str) -> io::Result<()> {
    if point.pinned() {
        pin(std::process::id(), cpus)?;
        for server in servers {
            pin(server.pid, cpus)?;
        }
    }
    Ok(())
}

// ----- the load -----

type Client = Arc<rustls::ClientConfig>;
type Stream = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(address: SocketAddr, client: &Client) -> io::Result<Stream> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    tokio_rustls::TlsConnector::from(client.clone())
        .connect(name, tcp)
        .await
}

/// One echo of `message` (its first bytes changed, so that a stale echo shows).
async fn echo(
    stream: &mut Stream,
    message: &mut [u8],
    back: &mut [u8],
    round: u64,
) -> io::Result<()> {
    message[..8].copy_from_slice(&round.to_le_bytes());
    stream.write_all(message).await?;
    stream.flush().await?;
    stream.read_exact(back).await?;
    if back != message {
        return Err(io::Error::other("the echo differs from the message"));
    }
    Ok(())
}

/// A whole connection for the handshake point: connect, handshake, one echo, close_notify,
/// the server's close.
async fn one_connection(address: SocketAddr, client: &Client, round: u64) -> io::Result<()> {
    let mut stream = connect(address, client).await?;
    let mut message = vec![7u8; 64];
    let mut back = vec![0u8; 64];
    echo(&mut stream, &mut message, &mut back, round).await?;
    stream.shutdown().await?;
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await; // the server's close (or its truncation)
    Ok(())
}

/// Messages (or connections) per second over `window`, after a warm-up, and the server's CPU
/// time per message (µs) in that window.
async fn timed(
    server: &Server,
    client: &Client,
    point: Point,
    window: Duration,
) -> io::Result<(f64, f64)> {
    let address = server.address;
    let warm_up = Duration::from_millis(300);
    let (workers, size) = match point {
        Point::Echo { conns, size } => (conns, size),
        Point::Handshake { workers } => (workers, 0),
    };
    let started = Instant::now();
    let (start, end) = (started + warm_up, started + warm_up + window);
    let mut tasks = Vec::new();
    let local = tokio::task::LocalSet::new();
    for w in 0..workers {
        let client = client.clone();
        tasks.push(local.spawn_local(async move {
            let mut counted = 0u64;
            let mut round = w as u64 * 1_000_000_000;
            if size == 0 {
                while Instant::now() < end {
                    one_connection(address, &client, round).await?;
                    round += 1;
                    if (start..end).contains(&Instant::now()) {
                        counted += 1;
                    }
                }
                return io::Result::Ok(counted);
            }
            let mut stream = connect(address, &client).await?;
            let mut message = vec![7u8; size];
            let mut back = vec![0u8; size];
            while Instant::now() < end {
                echo(&mut stream, &mut message, &mut back, round).await?;
                round += 1;
                if (start..end).contains(&Instant::now()) {
                    counted += 1;
                }
            }
            stream.shutdown().await?;
            Ok(counted)
        }));
    }
    let cpu_ns = local.spawn_local({
        let pid = server.pid;
        async move {
            tokio::time::sleep_until(start.into()).await;
            let before = cpu_ns(pid)?;
            tokio::time::sleep_until(end.into()).await;
            io::Result::Ok(cpu_ns(pid)? - before)
        }
    });
    let (total, cpu_ns) = local
        .run_until(async {
            let mut total = 0;
            for task in tasks {
                total += task.await.map_err(io::Error::other)??;
            }
            let cpu_ns = cpu_ns.await.map_err(io::Error::other)??;
            io::Result::Ok((total, cpu_ns))
        })
        .await?;
    let per_message = cpu_ns as f64 / 1000.0 / total.max(1) as f64;
    Ok((total as f64 / window.as_secs_f64(), per_message))
}

/// Instructions the server spent on `measured` rounds per worker, after `warm_up` rounds (and
/// every handshake of the echo points) outside the count: (messages, instructions).
async fn counted(
    server: &Server,
    client: &Client,
    point: Point,
    warm_up: usize,
    measured: usize,
) -> io::Result<(u64, u64)> {
    let address = server.address;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let (workers, size) = match point {
                Point::Echo { conns, size } => (conns, size),
                Point::Handshake { workers } => (workers, 0),
            };
            let pause = point.pinned().then_some(PAUSE);
            // Phase 1: connect and warm up; phase 2 (after the counters are zeroed): measure.
            let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
            let done = Arc::new(tokio::sync::Barrier::new(workers + 1));
            let mut tasks = Vec::new();
            for w in 0..workers {
                let (client, barrier, done) = (client.clone(), barrier.clone(), done.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let mut round = w as u64 * 1_000_000_000;
                    if size == 0 {
                        for _ in 0..warm_up {
                            one_connection(address, &client, round).await?;
                            round += 1;
                        }
                        barrier.wait().await;
                        barrier.wait().await;
                        for _ in 0..measured {
                            one_connection(address, &client, round).await?;
                            round += 1;
                        }
                        done.wait().await;
                        return io::Result::Ok(());
                    }
                    let mut stream = connect(address, &client).await?;
                    let mut message = vec![7u8; size];
                    let mut back = vec![0u8; size];
                    for _ in 0..warm_up {
                        echo(&mut stream, &mut message, &mut back, round).await?;
                        round += 1;
                    }
                    barrier.wait().await;
                    barrier.wait().await;
                    for _ in 0..measured {
                        echo(&mut stream, &mut message, &mut back, round).await?;
                        round += 1;
                        if let Some(pause) = pause {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    done.wait().await;
                    stream.shutdown().await?;
                    Ok(())
                }));
            }
            barrier.wait().await;
            server.callgrind("-z")?;
            barrier.wait().await;
            done.wait().await;
            let instructions = server.callgrind_dump()?;
            for task in tasks {
                task.await.map_err(io::Error::other)??;
            }
            Ok(((workers * measured) as u64, instructions))
        })
        .await
}

// ----- the servers, as child processes -----

/// The server `kind` (under callgrind with `callgrind`): `examples/echo_server --tls-cert
/// CERT --tls-key KEY` for the crate, this bench binary again (`--serve CERT KEY`) for the
/// native one.
fn start_server(
    kind: &'static str,
    certs: &certs::Certs,
    callgrind: Option<&Path>,
) -> io::Result<Server> {
    let (program, args) = if kind == "crate" {
        let args = [
            OsStr::new("--tls-cert"),
            certs.cert.as_os_str(),
            OsStr::new("--tls-key"),
            certs.key.as_os_str(),
            OsStr::new("127.0.0.1:0"),
        ];
        (example("echo_server")?, args.to_vec())
    } else {
        let args = [
            OsStr::new("--serve"),
            certs.cert.as_os_str(),
            certs.key.as_os_str(),
        ];
        (std::env::current_exe()?, args.to_vec())
    };
    let callgrind = callgrind.map(|dir| Callgrind {
        dir,
        counting: true,
    });
    Server::start(kind, kind, &program, &args, callgrind)
}

mod native {
    //! The native server, `--serve CERT KEY`: a task per connection with tokio-rustls.

    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use asyncore::tls;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub(super) fn run(cert: &Path, key: &Path) -> io::Result<()> {
        let config = Arc::new(tls::server_config(cert, key)?);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(serve(config))
    }

    async fn serve(config: Arc<tls::ServerConfig>) -> io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {}", listener.local_addr()?);
            let _ = out.flush();
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let serve = async {
            loop {
                let (tcp, _) = listener.accept().await?;
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::with_capacity(64 * 1024);
                    loop {
                        buf.clear();
                        match stream.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {
                                if stream.write_all(&buf).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
            #[allow(unreachable_code)]
            io::Result::Ok(())
        };
        tokio::select! {
            served = serve => served,
            _ = asyncore::shutdown_signal() => Ok(()),
        }
    }
}

mod certs {
    //! A CA and a certificate for `localhost`, made for the run and removed after it.

    use std::io;
    use std::path::PathBuf;
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    pub(super) struct Certs {
        dir: PathBuf,
        pub(super) ca: PathBuf,
        pub(super) cert: PathBuf,
        pub(super) key: PathBuf,
    }

    impl Certs {
        pub(super) fn new() -> io::Result<Certs> {
            let bad = |e: rcgen::Error| io::Error::other(e.to_string());
            let dir = std::env::temp_dir().join(format!("tls_echo_certs.{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(DnType::CommonName, "tls_echo CA");
            ca.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let ca_key = KeyPair::generate().map_err(bad)?;
            let ca_pem = ca.self_signed(&ca_key).map_err(bad)?.pem();
            let issuer = Issuer::new(ca, ca_key);
            let leaf = CertificateParams::new(vec!["localhost".to_string()]).map_err(bad)?;
            let key = KeyPair::generate().map_err(bad)?;
            let cert_pem = leaf.signed_by(&key, &issuer).map_err(bad)?.pem();
            let certs = Certs {
                ca: dir.join("ca.pem"),
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
                dir,
            };
            std::fs::write(&certs.ca, ca_pem)?;
            std::fs::write(&certs.cert, cert_pem)?;
            std::fs::write(&certs.key, key.serialize_pem())?;
            Ok(certs)
        }

        pub(super) fn client_config(&self) -> io::Result<Arc<tokio_rustls::rustls::ClientConfig>> {
            Ok(Arc::new(asyncore::tls::client_config_with_ca(&self.ca)?))
        }
    }

    impl Drop for Certs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
