//! # How a readiness reactor works
//!
//! A server with thousands of connections cannot give each one a thread that blocks in
//! `recv`. A *reactor* serves them all from one thread: it asks the operating system which
//! sockets can make progress right now, and runs the code of exactly those. The question is
//! about *readiness* ("a `recv` on this socket would not block now"), not about data: the
//! callback that runs does the I/O itself. Python's asyncore is such a reactor, built on
//! `select`; this crate is one built on Tokio. This chapter shows one round of it, then how the
//! crate's free-running mode differs, then where Tokio's readiness cache comes in.
//! `cargo run --example tour` runs the echo server of asyncore's documentation through the
//! same steps, one table per round.
//!
//! ## One pass
//!
//! asyncore's `poll()`, and [`Map::poll`](crate::Map::poll) here, make one *pass* over the
//! map, in three steps:
//!
//! ```text
//!                ┌─────────────────────────── one pass ────────────────────────────┐
//!                │                                                                 │
//!  the map       │  1. ASK              2. WAIT                3. DISPATCH          │
//!  ───────────   │  each channel:       select()/epoll on      every read event,    │
//!  #1 listener   │  readable()?    ──▶  the sockets that  ──▶  then every write     │
//!  #2 handler    │  writable()?         want something,        event, then urgent   │
//!  #3 handler    │                      until one is ready     data, in id order    │
//!                │  → wanted            → ready                → callbacks run      │
//!                └─────────────────────────────────────────────────────────────────┘
//!
//!  Pass { wanted: [(#1, READ), (#2, READ), (#3, READ|WRITE)],
//!         ready:  [(#2, READ), (#3, WRITE)],
//!         events: [(#2, Read), (#3, Write)] }
//! ```
//!
//! 1. **Ask.** Every channel says what it waits for: `readable()` and `writable()` become an
//!    [`Interest`](crate::Interest). A listener never waits to write; an echo handler waits to
//!    write only while it holds output. Interest is asked anew before every pass, because it
//!    changes with the dispatcher's state.
//! 2. **Wait.** The reactor hands the sockets and their interests to the kernel and sleeps
//!    until at least one of them is ready, or the timeout passes. What comes back is the
//!    readiness of each socket ([`Ready`](crate::Ready)).
//! 3. **Dispatch.** Readiness becomes callbacks, in asyncore's order: a ready listener runs
//!    `handle_accept`, a ready connection `handle_read` (or first `handle_connect`, if its
//!    connect just completed), a writable one `handle_write`. A callback that sees end of
//!    file or a reset leads to `handle_close` right after it.
//!
//! The readiness is *level-triggered*: a socket with unread data is reported ready in every
//! pass until a callback drains it. A handler that reads only part of what is there is simply
//! called again in the next pass.
//!
//! [`Pass`](crate::Pass) is that round written down; the tour prints it as a table beside the
//! Python lines that did the same thing:
//!
//! ```text
//! pass 3: client A sent "hello"
//!   channel          wanted      ready  callback run     in the Python program
//!   #1 EchoServer    READ        -      -                readable() True: listening (READ) …
//!   #2 EchoHandler   READ        READ   handle_read      handle_read() 2-5: data = self.recv(8192) …
//! ```
//!
//! A pass costs time in proportion to the whole map (every channel is asked, every socket
//! looked at), however few are ready. That is asyncore's price, and why
//! [`Map::run`](crate::Map::run) does not make passes.
//!
//! ## Free-running mode: a task per channel
//!
//! [`Map::run`](crate::Map::run) makes each channel a Tokio task that goes through the same
//! three steps *on its own*:
//!
//! ```text
//!  channel #2:  ask → wait ······(READ)····→ handle_read → ask → wait ····→ …
//!  channel #3:  ask → wait ···········(WRITE)···········→ handle_write → ask → …
//!  the sweep:                      after each batch of callbacks: ask the
//!                                  `Shared` channels again, wake those that changed
//! ```
//!
//! There is no global pass: a channel that waits costs nothing until its readiness comes,
//! and a channel is asked again after its own callbacks, not before everyone's. What asyncore
//! got for free by asking everyone before every `select` (a dispatcher whose `writable()`
//! reads a buffer another dispatcher fills) is kept by the interest sweep for channels with
//! [`InterestScope::Shared`](crate::InterestScope::Shared), and is the dispatcher's business
//! with [`InterestScope::Own`](crate::InterestScope::Own) ([interest and shared
//! state](crate#interest-and-shared-state)). Within one wake-up, a channel's events come in
//! asyncore's order (read, write, urgent); across channels, in the order Tokio wakes them,
//! not by id.
//!
//! With `RUST_LOG=asyncore=trace`, each channel's story is told in its own span, as a pass
//! would tell it:
//!
//! ```text
//! TRACE channel{id=#2 fd=10 dispatcher=EchoHandler peer=127.0.0.1:53312}: wants READ
//! TRACE channel{id=#2 fd=10 dispatcher=EchoHandler peer=127.0.0.1:53312}: ready READ
//! TRACE channel{id=#2 fd=10 dispatcher=EchoHandler peer=127.0.0.1:53312}: callback="handle_read"
//! TRACE channel{id=#2 fd=10 dispatcher=EchoHandler peer=127.0.0.1:53312}: wants READ
//! ```
//!
//! ## Where Tokio's readiness cache comes in
//!
//! Tokio's I/O driver registers each socket with the kernel once (epoll on Linux, kqueue on
//! the BSDs and macOS), *edge-triggered*: the kernel reports a change of readiness once, not
//! on every wait. The driver writes what it learns into the socket's readiness word and wakes
//! the task waiting for that direction. The word stays set until an operation proves the
//! readiness gone:
//!
//! ```text
//!  kernel ──(data arrived, reported once)──▶ I/O driver ──sets──▶ fd 10's readiness: READ
//!                                               │ wakes                 │
//!                                               ▼                       │ read by
//!  channel #2's task: poll_read_ready ◀─────────────────────────────────┘
//!                     handle_read → recv() short, or WouldBlock ──clears──▶ readiness: -
//! ```
//!
//! - The channel's *wait* is `poll_read_ready`/`poll_write_ready` on that word: it returns at
//!   once while the word is set, and registers the task for a wake-up when it is not.
//! - The cache is what makes edge-triggered epoll behave level-triggered, as asyncore
//!   expects: a handler that did not drain the socket leaves the readiness set, and its task
//!   runs again without a new report from the kernel.
//! - A lock-step pass reads the same cache instead of calling `select`: it lets the driver
//!   deliver what is pending (one yield), then looks at every wanted channel's word.
//! - The clear has to be exact: with the state observed *before* the operation, so that data
//!   that arrived meanwhile is not forgotten ([when readiness clears](crate#when-readiness-clears)).
//!
//! ## Watching it yourself
//!
//! - `cargo run --example tour`: the passes of an echo server, beside its Python lines.
//! - `RUST_LOG=asyncore=trace cargo run --example echo_server`: free-running, per channel.
//! - `cargo run --example top -- --demo`: a map live, with a spinning and a stalled channel;
//!   [`Map::snapshot`](crate::Map::snapshot) and [`MapHandle::snapshot`](crate::MapHandle::snapshot)
//!   give the same view to your own code.
//! - `RUSTFLAGS="--cfg tokio_unstable" cargo run --example console --features console`, then
//!   `tokio-console`: each channel a named Tokio task (`channel #2 EchoHandler
//!   127.0.0.1:53312`).
