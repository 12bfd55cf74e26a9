//! `examples/port_forwarder`, the classic asyncore recipe ported line for line, as a black box:
//! real clients through it to a real remote end, both directions, byte for byte.

mod util;

use std::process::Command;

use util::programs::{assert_fails_in_one_line, example, Program};

/// Four clients at once, 1 MiB each, both ways, byte for byte; then a clean exit on SIGTERM.
#[test]
fn forwards_both_ways_byte_for_byte() {
    const CLIENTS: usize = 4;
    let (remote, remote_thread) = util::complement_server(CLIENTS);
    let remote = remote.to_string();
    let mut command = Command::new(example("port_forwarder"));
    command.args(["127.0.0.1:0", &remote]);
    let forwarder = Program::start(command);
    let address = forwarder.address;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..1u32 << 20)
                    .map(|i| (i * 31 + client as u32) as u8)
                    .collect();
                let expected: Vec<u8> = data.iter().map(|b| !b).collect();
                assert!(util::exchange(address, data) == expected, "client {client}");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let (status, stderr) = forwarder.stop("TERM");
    assert!(status.success(), "{stderr}");
    remote_thread.join().unwrap();
}

#[test]
fn bad_arguments_are_one_line_errors() {
    assert_fails_in_one_line("port_forwarder", &[], "usage");
    assert_fails_in_one_line("port_forwarder", &["127.0.0.1:0"], "usage");
    assert_fails_in_one_line(
        "port_forwarder",
        &["127.0.0.1:0", "nonsense"],
        "invalid address",
    );
}
