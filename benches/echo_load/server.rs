//! The servers under test: which programs, with which arguments, and the process limits the
//! idle points need; the child processes themselves are `benches/support/child.rs`'s.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::child::example;
pub(crate) use crate::child::{pin, Callgrind, Server};

// ---------------------------------------------------------------------------------------------
// What runs

/// A server under test: its program, its arguments, and how the tables name it.
#[derive(Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) label: &'static str,
    /// `label` as a file name (callgrind dumps).
    pub(crate) slug: &'static str,
    pub(crate) program: Program,
    /// Arguments before the address.
    pub(crate) args: &'static [&'static str],
}

#[derive(Clone, Copy)]
pub(crate) enum Program {
    /// The release build of an example of this crate.
    Example(&'static str),
    /// A script next to this file, run by the Python of [`python`].
    Python(&'static str),
}

/// The crate's `echo_server`: its dispatchers declare `InterestScope::Own`.
pub(crate) const ECHO: Spec = Spec {
    label: "echo_server",
    slug: "echo_server",
    program: Program::Example("echo_server"),
    args: &[],
};

/// The same server with asyncore's rule (`InterestScope::Shared`, the crate's default).
pub(crate) const ECHO_SHARED: Spec = Spec {
    label: "echo_server --interest-scope shared",
    slug: "echo_server_shared",
    program: Program::Example("echo_server"),
    args: &["--interest-scope", "shared"],
};

pub(crate) const NATIVE: Spec = Spec {
    label: "native_echo_server",
    slug: "native_echo_server",
    program: Program::Example("native_echo_server"),
    args: &[],
};

/// The echo server of Python's asyncore documentation, on `poll(2)`.
pub(crate) const PYTHON: Spec = Spec {
    label: "Python asyncore (use_poll=True)",
    slug: "python_asyncore",
    program: Program::Python("asyncore_echo_server.py"),
    args: &[],
};

/// A Python that still ships asyncore (3.11 or older): `ECHO_LOAD_PYTHON`, else `python3.11`,
/// resolved to its executable (no launcher script between the bench and the process it
/// measures). `None` without one.
pub(crate) fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let python = std::env::var("ECHO_LOAD_PYTHON").unwrap_or_else(|_| "python3.11".into());
            let output = Command::new(python)
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import sys, asyncore; print(sys.executable)",
                ])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())?;
            let path = String::from_utf8(output.stdout).ok()?;
            Some(PathBuf::from(path.trim()))
        })
        .as_deref()
}

/// Starts the server `spec` describes (under callgrind with `callgrind`) on `127.0.0.1:0`.
pub(crate) fn start(spec: &Spec, callgrind: Option<Callgrind<'_>>) -> io::Result<Server> {
    let (binary, script) = match spec.program {
        Program::Example(example_name) => (example(example_name)?, None),
        Program::Python(script) => {
            let python = python().ok_or_else(|| {
                io::Error::other("no Python with asyncore (set ECHO_LOAD_PYTHON)")
            })?;
            let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("benches/echo_load")
                .join(script);
            (python.to_path_buf(), Some(script))
        }
    };
    let mut args: Vec<&OsStr> = script.iter().map(|s| s.as_os_str()).collect();
    args.extend(spec.args.iter().map(OsStr::new));
    args.push(OsStr::new("127.0.0.1:0"));
    Server::start(spec.label, spec.slug, &binary, &args, callgrind)
}

/// How many file descriptors process `pid` has open.
pub(crate) fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Raises this process's limit on open files to at least `needed` (children inherit it): the
/// soft limit up to the hard one, and the hard one too if need be (which takes root or
/// `CAP_SYS_RESOURCE`; otherwise the error says what to raise).
pub(crate) fn raise_open_files(needed: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    let wanted = libc::rlimit {
        rlim_cur: needed,
        rlim_max: limit.rlim_max.max(needed),
    };
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::other(format!(
            "cannot raise the open-file limit from {} (hard {}) to {needed}: {e}; run \
             `ulimit -n {needed}` as root first",
            limit.rlim_cur, limit.rlim_max
        )));
    }
    Ok(())
}
