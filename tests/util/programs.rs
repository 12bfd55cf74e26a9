//! Running the example programs as a user would: locate the binary, start it, read its
//! `listening on` line, signal it, and wait for it, every wait bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::LIMIT;

/// The path of example `name`, next to the test binaries. `cargo test --test NAME` builds no
/// examples, and an example whose own source changed since is not rebuilt by it either (a
/// binary newer than the test proves nothing), so cargo is asked once per test process and
/// example: a no-op when the example is up to date.
pub fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let path = deps.parent().unwrap().join("examples").join(name);
    // Held while building: tests of one process that start the same example wait for one build.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|known| known == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--example", name]);
        // What cargo set for this test's own run (its package, its manifest, ...): build
        // scripts that watch these variables (ring's does) would see them change between this
        // build and the next from a shell, and rebuild everything after them both times.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_for_crate = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*key);
            if set_for_crate {
                build.env_remove(&*key);
            }
        }
        let status = build.status().unwrap();
        assert!(
            status.success() && path.exists(),
            "cannot build example {name}"
        );
        built.push(name.to_string());
    }
    path
}

/// A running server program; killed if the test ends without stopping it.
pub struct Program {
    pub child: Child,
    pub address: SocketAddr,
    stdout: mpsc::Receiver<String>,
}

impl Program {
    /// Starts `command` and waits for its `listening on IP:PORT` line.
    pub fn start(mut command: Command) -> Program {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let first = stdout.recv_timeout(LIMIT).expect("no `listening on` line");
        let address = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Program {
            address: address.parse().unwrap(),
            child,
            stdout,
        }
    }

    /// The next line the program prints on stdout.
    pub fn next_line(&self) -> String {
        self.stdout.recv_timeout(LIMIT).expect("no line on stdout")
    }

    /// Sends `signal` (e.g. "TERM") and waits for the exit; returns the status and stderr.
    pub fn stop(mut self, signal: &str) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
        let status = wait(&mut self.child);
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit, at most LIMIT.
pub fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the program did not exit in time"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` to completion (bounded); returns status, stdout, stderr.
pub fn run(mut command: Command) -> (ExitStatus, Vec<u8>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).unwrap();
        buf
    });
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    let status = wait(&mut child);
    (status, reader.join().unwrap(), stderr)
}

/// Whether a usable `python3` is on the PATH (tests with a Python peer skip without it).
pub fn python3() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("import asyncore")
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs example `name` with `args` and checks the error rule of examples/README.md: a failing
/// status, nothing on stdout, and exactly one stderr line, `NAME: ...`, containing `expect`.
pub fn assert_fails_in_one_line(name: &str, args: &[&str], expect: &str) {
    let mut command = Command::new(example(name));
    command.args(args);
    let (status, stdout, stderr) = run(command);
    assert!(!status.success(), "{name} {args:?}");
    assert!(stdout.is_empty(), "{name} {args:?}: {stdout:?}");
    assert_eq!(stderr.lines().count(), 1, "{name} {args:?}: {stderr}");
    assert!(
        stderr.starts_with(&format!("{name}: ")) && stderr.contains(expect),
        "{name} {args:?}: {stderr}"
    );
}

/// The bad arguments every TCP server taking `[ADDR]` must refuse in one line: garbage, an
/// extra argument, an address in use, an address this host does not have.
pub fn assert_server_errors_are_one_line(name: &str) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    for (args, expect) in [
        (vec!["nonsense"], "invalid address"),
        (vec!["127.0.0.1:0", "extra"], "unexpected argument"),
        (vec![in_use.as_str()], "Address already in use"),
        (vec!["192.0.2.1:80"], "192.0.2.1:80"),
    ] {
        assert_fails_in_one_line(name, &args, expect);
    }
}
