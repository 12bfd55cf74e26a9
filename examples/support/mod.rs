//! What every example program shares: the command-line contract of `shared/spec/examples.md`
//! (one clear line on stderr and a non-zero exit on error, `tracing` only when `RUST_LOG` asks).

#![allow(dead_code)] // each example uses part of it

use std::fmt::Display;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG`; nothing without it.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
}

/// Prints `program: error` as one line on stderr and returns a failing exit code.
pub fn fail(program: &str, error: impl Display) -> ExitCode {
    eprintln!("{program}: {error}");
    ExitCode::FAILURE
}

/// The optional single address argument of a server, or `default`.
pub fn server_address(program: &str, default: &str) -> Result<String, String> {
    address_argument(program, default, std::env::args().skip(1).collect())
}

/// [`server_address`] from `args` (the program's arguments less those already taken).
fn address_argument(program: &str, default: &str, args: Vec<String>) -> Result<String, String> {
    let mut args = args.into_iter();
    let address = args.next().unwrap_or_else(|| default.to_string());
    match args.next() {
        None => Ok(address),
        Some(extra) => Err(format!(
            "unexpected argument {extra:?} (usage: {program} [ADDR])"
        )),
    }
}

/// Prints the contract's `listening on IP:PORT` line and flushes it.
pub fn announce(address: impl Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {address}");
    let _ = stdout.flush();
}

/// Parses `ADDR` as `IP:PORT` with a clear error.
pub fn parse_inet(address: &str) -> Result<std::net::SocketAddr, String> {
    address
        .parse()
        .map_err(|_| format!("invalid address {address:?} (expected IP:PORT, e.g. 127.0.0.1:8080)"))
}

/// The address family of an IP socket address.
pub fn family_of(address: &std::net::SocketAddr) -> asyncore::Family {
    if address.is_ipv4() {
        asyncore::Family::Inet
    } else {
        asyncore::Family::Inet6
    }
}

/// How long a server's shutdown waits for its handlers to flush.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Completes on SIGINT or SIGTERM (or never, after logging, if signals cannot be watched).
pub async fn signal() {
    if let Err(e) = asyncore::shutdown_signal().await {
        tracing::error!("cannot watch for signals: {e}");
        std::future::pending::<()>().await;
    }
}

/// A server's whole life on this thread's default map, as the contract wants it: the `[ADDR]`
/// argument (`default` without one), `start` (which binds, listens and adds its listener and
/// returns the bound address), the `listening on` line, service until SIGINT or SIGTERM, then a
/// graceful shutdown. Any error is one line on stderr and a failing exit code.
pub async fn serve<A: Display>(
    program: &str,
    default: &str,
    start: impl FnOnce(SocketAddr) -> std::io::Result<A>,
) -> ExitCode {
    serve_args(program, default, std::env::args().skip(1).collect(), start).await
}

/// [`serve`] with the program's arguments given (those it took itself removed).
pub async fn serve_args<A: Display>(
    program: &str,
    default: &str,
    args: Vec<String>,
    start: impl FnOnce(SocketAddr) -> std::io::Result<A>,
) -> ExitCode {
    let address = match address_argument(program, default, args).and_then(|a| parse_inet(&a)) {
        Ok(address) => address,
        Err(e) => return fail(program, e),
    };
    match start(address) {
        Ok(bound) => announce(bound),
        Err(e) => return fail(program, e),
    }
    let map = asyncore::socket_map();
    let served = map.run_until(signal()).await;
    let result = served.and(map.shutdown(GRACE).await);
    let _ = std::io::stdout().flush(); // what the handlers printed
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(program, e),
    }
}

/// A server's TLS options, `--tls-cert FILE --tls-key FILE` (both or neither), taken out of its
/// arguments: the configuration they name, and the other arguments.
pub fn tls_server_arguments(
    program: &str,
) -> Result<
    (
        Option<std::sync::Arc<asyncore::tls::ServerConfig>>,
        Vec<String>,
    ),
    String,
> {
    let usage = || format!("usage: {program} [--tls-cert FILE --tls-key FILE] [ADDR]");
    let (mut cert, mut key, mut rest) = (None, None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--tls-cert" => &mut cert,
            "--tls-key" => &mut key,
            _ => {
                rest.push(arg);
                continue;
            }
        };
        match args.next() {
            Some(file) if slot.is_none() => *slot = Some(file),
            _ => return Err(usage()),
        }
    }
    let config = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(std::sync::Arc::new(
            asyncore::tls::server_config(&cert, &key).map_err(|e| e.to_string())?,
        )),
        _ => {
            return Err(format!(
                "--tls-cert and --tls-key go together ({})",
                usage()
            ))
        }
    };
    Ok((config, rest))
}
