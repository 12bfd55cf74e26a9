//! What every example program shares: the command-line contract of examples/README.md
//! (one clear line on stderr and a non-zero exit on error, `tracing` only when `RUST_LOG` asks),
//! a listening channel, and the echo handler of `dispatcher_with_send`.

#![allow(dead_code)] // each example uses part of it

use std::fmt::Display;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG`; nothing without it. Colour only
/// when stderr is a terminal (and `NO_COLOR` is not set): a log redirected to a file or a pipe
/// gets plain text, not escape codes.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(colour())
            .init();
    }
}

/// Whether log lines on stderr may carry colour: stderr is a terminal and `NO_COLOR` is unset
/// or empty.
pub fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints `program: error` as one line on stderr and returns a failing exit code.
pub fn fail(program: &str, error: impl Display) -> ExitCode {
    eprintln!("{program}: {error}");
    ExitCode::FAILURE
}

/// The optional single address argument of a server, or `default`.
pub fn server_address(program: &str, default: &str) -> Result<String, String> {
    server_options(program, default, &[]).map(|(address, _)| address)
}

/// A server's command line, `[--NAME VALUE]... [ADDR]`: the address (`default` without one)
/// and the value of each option of `options`, given as `(NAME, what VALUE may be)`, in order
/// (`None` for one not given). An unknown option, a missing value or a second address is an
/// error naming the usage.
pub fn server_options(
    program: &str,
    default: &str,
    options: &[(&str, &str)],
) -> Result<(String, Vec<Option<String>>), String> {
    let usage: String = options
        .iter()
        .map(|(name, value)| format!("[{name} {value}] "))
        .collect();
    let usage = format!("usage: {program} {usage}[ADDR]");
    let mut values = vec![None; options.len()];
    let mut address = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if let Some(i) = options.iter().position(|(name, _)| *name == arg) {
            let value = args
                .next()
                .ok_or_else(|| format!("option {arg} needs a value ({usage})"))?;
            values[i] = Some(value);
        } else if arg.starts_with("--") {
            return Err(format!("unknown option {arg:?} ({usage})"));
        } else if address.is_none() {
            address = Some(arg);
        } else {
            return Err(format!("unexpected argument {arg:?} ({usage})"));
        }
    }
    Ok((address.unwrap_or_else(|| default.to_string()), values))
}

/// Parses the value of a `--NAME SECS` option: seconds above 0, fractions allowed, at most a
/// day.
pub fn parse_seconds(option: &str, value: &str) -> Result<std::time::Duration, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "invalid {option} {value:?} (expected seconds, above 0 and at most 86400)"
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

/// A listening channel on `address` (asyncore's `create_socket`, `set_reuse_addr`, `bind`,
/// `listen`), and the address it is bound to.
pub fn listener(
    address: SocketAddr,
    backlog: u32,
) -> std::io::Result<(asyncore::Channel, asyncore::Address)> {
    let mut channel = asyncore::Channel::create_socket(family_of(&address))?;
    channel.set_reuse_addr()?;
    channel.bind(address)?;
    channel.listen(backlog)?;
    let bound = channel.local_addr()?;
    Ok((channel, bound))
}

/// asyncore's `dispatcher_with_send` as an echo handler: it writes back what it reads through
/// a [`SendBuffer`](asyncore::SendBuffer), and stops reading while that buffer is paused (its
/// peer does not read what it is sent).
#[derive(Default)]
pub struct EchoHandler {
    out: asyncore::SendBuffer,
}

impl asyncore::Dispatcher for EchoHandler {
    fn interest_scope(&self) -> asyncore::InterestScope {
        asyncore::InterestScope::Own // readable() and writable() read only its buffer
    }
    fn readable(&self, _: &asyncore::Channel) -> bool {
        !self.out.is_paused()
    }
    fn writable(&self, channel: &asyncore::Channel) -> bool {
        self.out.writable(channel)
    }
    fn buffered(&self, _: &asyncore::Channel) -> asyncore::Buffered {
        self.out.buffered()
    }
    fn handle_read(&mut self, channel: &mut asyncore::Channel) -> std::io::Result<()> {
        let data = channel.recv(64 * 1024)?;
        self.out.send(channel, data)
    }
    fn handle_write(&mut self, channel: &mut asyncore::Channel) -> std::io::Result<()> {
        self.out.handle_write(channel)
    }
    fn handle_close(&mut self, channel: &mut asyncore::Channel) -> std::io::Result<()> {
        channel.close();
        Ok(())
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
    serve_on(program, server_address(program, default), start).await
}

/// [`serve`] on an address the program read from its command line itself (with
/// [`server_options`]), or the one-line error that reading it gave.
pub async fn serve_on<A: Display>(
    program: &str,
    address: Result<String, String>,
    start: impl FnOnce(SocketAddr) -> std::io::Result<A>,
) -> ExitCode {
    let address = match address.and_then(|a| parse_inet(&a)) {
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

/// The options of a server that may speak TLS, for [`server_options`]: the certificate chain
/// and the private key, PEM files, given both or neither.
pub const TLS_OPTIONS: [(&str, &str); 2] = [("--tls-cert", "FILE"), ("--tls-key", "FILE")];

/// The server configuration that the values of [`TLS_OPTIONS`] name, `None` without them; an
/// error when only one is given or the files do not make a configuration.
pub fn tls_config(
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<Option<std::sync::Arc<asyncore::tls::ServerConfig>>, String> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => asyncore::tls::server_config(cert, key)
            .map(|config| Some(std::sync::Arc::new(config)))
            .map_err(|e| e.to_string()),
        _ => Err("--tls-cert and --tls-key go together".to_string()),
    }
}
