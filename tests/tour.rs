//! `examples/tour.rs`: the echo server of Python's asyncore documentation in lock-step passes,
//! with scripted clients. The tour runs to the end, and its tables tell the story the crate
//! docs' guide describes: accept, read, end of file and close, each beside its Python lines.

mod util;

use std::process::Command;

#[test]
fn the_tour_tells_the_story_pass_by_pass() {
    let (status, stdout, stderr) =
        util::programs::run(Command::new(util::programs::example("tour")));
    assert!(status.success(), "{stderr}");
    let out = String::from_utf8(stdout).unwrap();
    // The Python program, numbered.
    assert!(out.contains(" 3 |         data = self.recv(8192)"), "{out}");
    // Seven passes, each a table.
    assert_eq!(out.matches("in the Python program").count(), 7, "{out}");
    let pass = |n: usize| -> &str {
        let start = out
            .find(&format!("\npass {n}:"))
            .unwrap_or_else(|| panic!("no pass {n}: {out}"));
        let rest = &out[start + 1..];
        &rest[..rest.find("\n\n").unwrap_or(rest.len())]
    };
    assert!(pass(1).contains("nothing was ready"), "{}", pass(1));
    let accepted = pass(2);
    assert!(
        accepted.contains("#1 EchoServer    READ        READ   handle_accept"),
        "{accepted}"
    );
    assert!(
        accepted.contains("the server printed: Incoming connection from 127.0.0.1:"),
        "{accepted}"
    );
    let read = pass(3);
    assert!(
        read.contains("EchoHandler   READ        READ   handle_read      handle_read() 2-5"),
        "{read}"
    );
    assert!(out.contains("client A reads back \"hello\""), "{out}");
    assert!(out.contains("client B reads back \"spam\""), "{out}");
    for n in [6, 7] {
        let closed = pass(n);
        assert!(
            closed.contains("handle_read_eof")
                && closed.contains("handle_close     handle_close(): close()"),
            "{closed}"
        );
    }
    assert!(stderr.is_empty(), "{stderr}");
}
