//! Hostile clients against the built server, with its memory and descriptors read from /proc.

mod common;

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use common::{poll_events, Client, ServeProcess, HANGUP, READ_TIMEOUT};

#[test]
fn a_flood_that_never_reads_stays_small_leaves_others_alone_and_is_closed() {
    let server = ServeProcess::start(&["--robot", "echo", "--send-timeout", "2"]);
    let mut other = Client::connect(server.addr);
    assert_eq!(other.ask("ann", "before"), "before");
    let before = server.rss_bytes();

    let flooder = Client::connect(server.addr);
    let stream = flooder.stream().try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let batch = b"bob::flooding and never reading a single reply\n".repeat(2000);
    let (mut sent, mut closed) = (0usize, false);
    while !closed {
        match (&stream).write(&batch[sent % batch.len()..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let events = poll_events(
                    &stream,
                    libc::POLLOUT | libc::POLLRDHUP,
                    Duration::from_secs(1),
                );
                if events == 0 {
                    break; // pushed back: the server stopped reading
                }
                closed = events & HANGUP != 0;
            }
            Err(_) => closed = true,
        }
        assert!(sent < 1 << 30, "the server never pushed back");
    }
    // While it is stalled, the server holds a few buffers for it, not what it sent.
    let growth = server.rss_bytes().saturating_sub(before);
    assert!(
        growth < 1 << 20,
        "server memory grew by {growth} bytes after {sent} bytes sent"
    );
    // Everyone else is answered as usual.
    for i in 0..20 {
        assert_eq!(
            other.ask("ann", &format!("during {i}")),
            format!("during {i}")
        );
    }
    // And the flooder is closed once its replies have gone unread for --send-timeout.
    assert!(
        closed || poll_events(&stream, libc::POLLRDHUP, READ_TIMEOUT) & HANGUP != 0,
        "the flooder was never closed"
    );
    server.wait_for_log("went unread for 2 s");
}

#[test]
fn a_thousand_reset_connections_leave_nothing_behind() {
    let server = ServeProcess::start(&["--robot", "echo", "--max-connections", "20"]);
    let fds_before = server.open_fds();

    for i in 0..1000 {
        let mut client = Client::connect_raw(server.addr);
        if i % 2 == 0 {
            client.send("bob::half a line, then a reset");
        }
        client.reset();
    }
    // Every slot is free again: twenty clients (the limit) are all admitted and served.
    let started = Instant::now();
    let mut clients = Vec::new();
    while clients.len() < 20 {
        let mut client = Client::connect_raw(server.addr);
        let greeting = client.line();
        if greeting.starts_with("ERR ") {
            // Resets still being processed hold their slots for a moment.
            assert!(started.elapsed() < READ_TIMEOUT, "slots never came back");
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        clients.push(client);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.ask("u", &format!("{i}")), format!("{i}"));
    }
    drop(clients);
    // And no descriptor is left over once they are gone.
    let deadline = Instant::now() + READ_TIMEOUT;
    while server.open_fds() > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.open_fds(), fds_before);
}
