//! Hostile clients against the built server, with its memory and descriptors read from /proc.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::{flood_until_pushed_back, poll_events, Client, ServeProcess, HANGUP, READ_TIMEOUT};

#[test]
fn a_flood_that_never_reads_stays_small_leaves_others_alone_and_is_closed() {
    let server = ServeProcess::start(&["--robot", "echo", "--send-timeout", "2"]);
    let mut other = Client::connect(server.addr);
    assert_eq!(other.ask("ann", "before"), "before");
    let before = server.rss_bytes();

    let flooder = Client::connect(server.addr);
    let stream = flooder.stream().try_clone().unwrap();
    let batch = b"bob::flooding and never reading a single reply\n".repeat(2000);
    let (sent, closed) = flood_until_pushed_back(&stream, &batch);
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

/// Opens `count` connections at once while the server is stopped (as while a restarted server
/// is still starting, or busy), then lets it run and waits for every greeting; returns how long
/// the last one took from when the server ran again.
fn reconnect_storm(server: &ServeProcess, count: usize) -> Duration {
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};
    use std::io::Read;

    let mut poll = Poll::new().unwrap();
    server.signal(libc::SIGSTOP);
    let mut streams: Vec<TcpStream> = (0..count)
        .map(|i| {
            let mut stream = TcpStream::connect(server.addr).expect("start a connect");
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .unwrap();
            stream
        })
        .collect();
    let started = Instant::now();
    server.signal(libc::SIGCONT);
    let greeting = "你好，欢迎来到机器人聊天器！\n".as_bytes();
    let mut received = vec![0usize; count];
    let mut greeted = 0;
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 256];
    while greeted < count {
        assert!(
            started.elapsed() < READ_TIMEOUT,
            "{greeted} of {count} greeted after {READ_TIMEOUT:?}"
        );
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for event in events.iter() {
            let i = event.token().0;
            loop {
                match streams[i].read(&mut buf) {
                    Ok(0) => panic!("connection {i} closed before its greeting"),
                    Ok(n) => {
                        received[i] += n;
                        if received[i] == greeting.len() {
                            greeted += 1;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("connection {i}: {e}"),
                }
            }
        }
    }
    started.elapsed()
}

#[test]
fn two_thousand_clients_reconnecting_at_once_are_all_greeted_promptly() {
    // A restart or a load balancer's failover: thousands of clients connect in the same moment.
    // With a listen backlog of 128 the kernel drops most of their SYNs, and those clients
    // retry only a second or more later.
    // The kernel queues what the backlog allows and drops the SYNs past it; those clients try
    // again a second later, and those dropped again two seconds after that.
    let server = ServeProcess::start(&["--robot", "echo", "--max-connections", "3000"]);
    let took = reconnect_storm(&server, 2000);
    assert!(
        took < Duration::from_secs(2),
        "2,000 connections took {took:?} to be greeted"
    );
}

#[test]
fn a_backlog_above_the_system_cap_is_warned_about() {
    let cap: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let backlog = (cap + 1).to_string();
    let server = ServeProcess::start(&["--robot", "echo", "--backlog", &backlog]);
    server.wait_for_log(&format!("caps it at {cap}"));
}

#[test]
fn bad_lines_in_a_row_get_one_last_error_and_a_close() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let mut client = Client::connect(server.addr);
    client.send("nonsense without a separator\n".repeat(20));
    for i in 1..16 {
        let line = client.line();
        assert!(
            line.starts_with("ERR expected USERNAME::TEXT"),
            "{i}: {line}"
        );
        assert!(!line.contains("closing"), "{i}: {line}");
    }
    let last = client.line();
    assert!(last.starts_with("ERR expected USERNAME::TEXT"), "{last}");
    assert!(last.contains("16 bad lines in a row; closing"), "{last}");
    client.expect_closed();
    server.wait_for_log("16 bad lines in a row");
}

#[test]
fn occasional_mistakes_never_close_a_connection() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let mut client = Client::connect(server.addr);
    for round in 0..4 {
        client.send("oops\n".repeat(15));
        for _ in 0..15 {
            assert!(client.line().starts_with("ERR "));
        }
        assert_eq!(
            client.ask("u", &format!("round {round}")),
            format!("round {round}")
        );
    }
}

/// The kernel's send queue of every socket on `port` (this machine's side of the server's
/// connections), in bytes, from /proc/net/tcp and /proc/net/tcp6.
fn kernel_send_queue(port: u16) -> u64 {
    let mut total = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            if u16::from_str_radix(local_port, 16) == Ok(port) {
                let tx_queue = fields[4].split(':').next().unwrap();
                total += u64::from_str_radix(tx_queue, 16).unwrap();
            }
        }
    }
    total
}

#[test]
fn garbage_is_not_amplified_into_the_kernels_memory() {
    // Each client sends 32,768 bad lines of 2 bytes and reads nothing. Answered one by one,
    // each would queue about 60 bytes of ERR line: 2 MB per client, held by the kernel.
    let server = ServeProcess::start(&["--robot", "echo", "--max-connections", "300"]);
    let garbage = b"\x00\n".repeat(32 * 1024);
    let clients: Vec<Client> = (0..200)
        .map(|_| {
            let mut client = Client::connect(server.addr);
            client
                .stream()
                .set_write_timeout(Some(READ_TIMEOUT))
                .unwrap();
            client.send(&garbage);
            client
        })
        .collect();
    // The server gives up on each of them, after a last ERR line.
    for client in &clients {
        assert!(
            poll_events(client.stream(), libc::POLLRDHUP, READ_TIMEOUT) & HANGUP != 0,
            "a client sending only garbage was never closed"
        );
    }
    let queued = kernel_send_queue(server.addr.port());
    assert!(
        queued < 10 << 20,
        "the kernel holds {queued} bytes of replies for 200 clients"
    );
}

/// A client that says goodbye and closes at once, without waiting for the server's goodbye, is
/// an ordinary end of a chat: nothing for the log at `info`, where failures go. Its socket may
/// be reset by the time the server shuts down its side or discards what is left.
#[cfg(feature = "web")]
#[test]
fn clients_that_leave_right_after_saying_goodbye_are_no_failure() {
    use robochat::websocket::client::{self, Handshake};
    use std::io::Write;
    let server = ServeProcess::start(&["--robot", "echo", "--web", "127.0.0.1:0"]);
    let web = common::web_addr(&server);
    for i in 0..40u8 {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.write_all(b"bob::exit\n").unwrap();
        drop(stream);
        let mut stream = std::net::TcpStream::connect(web).unwrap();
        let handshake = Handshake::new([i; 16]);
        let mut bytes = handshake.request(&web.to_string(), "/ws");
        client::encode_close(&mut bytes, 1000, [i, 1, 2, 3]);
        stream.write_all(&bytes).unwrap();
        drop(stream);
    }
    // Every one of them has been served once the server has shut down.
    server.signal(libc::SIGTERM);
    let mut server = server;
    assert_eq!(server.wait(), Some(0));
    let log = server.log.lock().unwrap();
    let failures: Vec<&String> = log.iter().filter(|l| l.contains("failed")).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
