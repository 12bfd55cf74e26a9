//! The command line: `smtp_server [--command-timeout SECS] [--data-timeout SECS]
//! [--tls-cert FILE --tls-key FILE] [ADDR]`.
//!
//! Options come before or after the address, as `--name VALUE` or `--name=VALUE`. Anything
//! else is an error in one line (printed by `main`), with the usage.

use std::time::Duration;

/// The usage line shown with every command-line error.
pub const USAGE: &str =
    "smtp_server [--command-timeout SECS] [--data-timeout SECS] [--tls-cert FILE --tls-key FILE] [ADDR]";

/// The address served without an `ADDR` argument.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8025";

/// The longest timeout accepted: a day. Longer ones are surely a mistake, and a bound keeps
/// every deadline far from `Instant`'s range.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// How long the server waits for the client (RFC 5321 4.5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for the next command (and after `DATA`'s message, the next one): RFC 5321's
    /// server timeout, 5 minutes. Only a whole command line restarts it.
    pub command: Duration,
    /// Waiting for the next piece of a message after `354`: RFC 5321's data block timeout,
    /// 3 minutes. Any bytes of the message restart it.
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            command: Duration::from_secs(5 * 60),
            data: Duration::from_secs(3 * 60),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// `ADDR`, not yet parsed ([`DEFAULT_ADDRESS`] without one).
    pub address: String,
    pub timeouts: Timeouts,
    /// `--tls-cert` and `--tls-key`: the certificate chain and key that `STARTTLS` serves
    /// (both or neither; checked by whoever reads the files).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let mut address = None;
    let mut timeouts = Timeouts::default();
    let (mut tls_cert, mut tls_key) = (None, None);
    while let Some(arg) = args.next() {
        if !arg.starts_with('-') || arg == "-" {
            if address.is_some() {
                return Err(format!("unexpected argument {arg:?} (usage: {USAGE})"));
            }
            address = Some(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let slot = match name {
            "--command-timeout" => Slot::Seconds(&mut timeouts.command),
            "--data-timeout" => Slot::Seconds(&mut timeouts.data),
            "--tls-cert" => Slot::File(&mut tls_cert),
            "--tls-key" => Slot::File(&mut tls_key),
            _ => return Err(format!("unknown option {name:?} (usage: {USAGE})")),
        };
        let Some(value) = inline.or_else(|| args.next()) else {
            let what = match slot {
                Slot::Seconds(_) => "SECS",
                Slot::File(_) => "FILE",
            };
            return Err(format!("option {name} needs a value ({what})"));
        };
        match slot {
            Slot::File(file) => *file = Some(value),
            Slot::Seconds(timeout) => {
                *timeout = seconds(&value).ok_or_else(|| {
                    format!("invalid {name} {value:?} (expected seconds, more than 0 and at most {MAX_TIMEOUT_SECS})")
                })?
            }
        }
    }
    Ok(Options {
        address: address.unwrap_or_else(|| DEFAULT_ADDRESS.to_string()),
        timeouts,
        tls_cert,
        tls_key,
    })
}

/// Where an option's value goes.
enum Slot<'a> {
    Seconds(&'a mut Duration),
    File(&'a mut Option<String>),
}

/// A positive number of seconds, fractions allowed (`300`, `0.5`), at most a day.
fn seconds(value: &str) -> Option<Duration> {
    let secs: f64 = value.parse().ok()?;
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return None; // also NaN
    }
    Some(Duration::from_secs_f64(secs)).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Options, String> {
        parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn defaults_and_address() {
        assert_eq!(
            parsed(&[]),
            Ok(Options {
                address: DEFAULT_ADDRESS.into(),
                timeouts: Timeouts::default(),
                tls_cert: None,
                tls_key: None,
            })
        );
        assert_eq!(Timeouts::default().command, Duration::from_secs(300));
        assert_eq!(Timeouts::default().data, Duration::from_secs(180));
        assert_eq!(parsed(&["[::1]:25"]).unwrap().address, "[::1]:25");
    }

    #[test]
    fn options_in_both_forms_and_any_place() {
        let options = parsed(&["--data-timeout=2.5", "0.0.0.0:25", "--command-timeout", "7"]);
        assert_eq!(
            options,
            Ok(Options {
                address: "0.0.0.0:25".into(),
                timeouts: Timeouts {
                    command: Duration::from_secs(7),
                    data: Duration::from_millis(2500),
                },
                tls_cert: None,
                tls_key: None,
            })
        );
        let options = parsed(&["--tls-cert", "c.pem", "--tls-key=k.pem"]).unwrap();
        assert_eq!(
            (options.tls_cert.as_deref(), options.tls_key.as_deref()),
            (Some("c.pem"), Some("k.pem"))
        );
        // The last of a repeated option counts.
        let options = parsed(&["--data-timeout=1", "--data-timeout=2"]).unwrap();
        assert_eq!(options.timeouts.data, Duration::from_secs(2));
    }

    #[test]
    fn errors() {
        for (args, expect) in [
            (&["--frob"][..], "unknown option \"--frob\""),
            (&["--frob=1"], "unknown option \"--frob\""),
            (&["-h"], "unknown option \"-h\""),
            (
                &["--command-timeout"],
                "option --command-timeout needs a value",
            ),
            (&["--data-timeout", "x"], "invalid --data-timeout \"x\""),
            (&["--data-timeout", "0"], "invalid --data-timeout \"0\""),
            (
                &["--data-timeout", "1e-12"],
                "invalid --data-timeout \"1e-12\"",
            ),
            (&["--data-timeout", "-3"], "invalid --data-timeout \"-3\""),
            (&["--data-timeout", "inf"], "invalid --data-timeout \"inf\""),
            (
                &["--data-timeout", "86401"],
                "invalid --data-timeout \"86401\"",
            ),
            (&["a:1", "b:2"], "unexpected argument \"b:2\""),
            (&["--tls-cert"], "option --tls-cert needs a value (FILE)"),
        ] {
            let error = parsed(args).unwrap_err();
            assert!(error.starts_with(expect), "{args:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        assert!(parsed(&["--data-timeout", "86400"]).is_ok());
    }
}
