//! The protocol and the server's guarantees, over real loopback sockets against servers run in
//! this process.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{poll_events, Client, GateRobot, TestServer, HANGUP, READ_TIMEOUT};
use robochat::{EchoRobot, Framing, Robot, RobotError, Server};

fn echo_server(workers: usize) -> TestServer {
    TestServer::start(Server::builder().robot(EchoRobot).workers(workers))
}

fn gate_server(gate: &GateRobot, workers: usize, queue: usize) -> TestServer {
    TestServer::start(
        Server::builder()
            .robot(gate.clone())
            .workers(workers)
            .queue(queue),
    )
}

#[test]
fn greets_then_answers_each_message_with_one_line() {
    for workers in [0, 4] {
        let server = echo_server(workers);
        let mut client = server.connect();
        assert_eq!(client.ask("bob", "hello"), "hello");
        assert_eq!(client.ask("小明", "你好，机器人"), "你好，机器人");
        assert_eq!(
            client.ask("ann", "a::b"),
            "a::b",
            "text is everything after the first ::"
        );
    }
}

#[test]
fn many_messages_in_one_write_are_answered_in_order() {
    for workers in [0, 4] {
        let server = echo_server(workers);
        let mut client = server.connect();
        let batch: String = (0..500).map(|i| format!("bob::message {i}\r\n")).collect();
        client.send(&batch);
        for i in 0..500 {
            assert_eq!(client.line(), format!("message {i}"), "workers {workers}");
        }
    }
}

#[test]
fn a_message_sent_byte_by_byte_is_answered_once() {
    let server = TestServer::start(Server::builder().robot(EchoRobot).framing(Framing::Line));
    let mut client = server.connect();
    for byte in "小明::一个字一个字\n".bytes() {
        client.send([byte]);
    }
    assert_eq!(client.line(), "一个字一个字");
    // With automatic framing, a client that has sent one whole line stays line-framed, so its
    // later messages may arrive in any pieces.
    let server = echo_server(4);
    let mut client = server.connect();
    assert_eq!(client.ask("bob", "first"), "first");
    for byte in b"bob::second\n" {
        client.send([*byte]);
    }
    assert_eq!(client.line(), "second");
}

#[test]
fn blank_lines_and_empty_text_get_no_reply() {
    let server = echo_server(4);
    let mut client = server.connect();
    client.send("\n\r\nbob::\n");
    assert_eq!(client.ask("bob", "after the blanks"), "after the blanks");
}

#[test]
fn exit_gets_a_goodbye_and_the_connection_closes() {
    let server = echo_server(4);
    let mut client = server.connect();
    client.send("bob::exit\nbob::never answered\n");
    let goodbye = client.line();
    assert!(
        goodbye.contains("再见") && !goodbye.starts_with("ERR"),
        "{goodbye}"
    );
    client.expect_closed();
}

#[test]
fn malformed_lines_get_an_error_and_the_connection_stays_open() {
    let server = echo_server(4);
    let mut client = server.connect();
    let long_user = "u".repeat(65);
    let cases: [(&[u8], &str); 4] = [
        (b"no separator here\n", "USERNAME::TEXT"),
        (b"::nobody\n", "username"),
        (long_user.as_bytes(), "longer than 64"),
        (b"bob::\xff\xfe not utf-8\n", "UTF-8"),
    ];
    for (input, expected) in cases {
        client.send(input);
        if !input.ends_with(b"\n") {
            client.send("::hi\n");
        }
        let line = client.line();
        assert!(line.starts_with("ERR "), "{line}");
        assert!(
            line.contains(expected),
            "{line:?} should mention {expected:?}"
        );
        assert_eq!(client.ask("bob", "still here"), "still here");
    }
}

#[test]
fn an_over_long_line_is_one_error_then_the_next_line_is_served() {
    let server = TestServer::start(Server::builder().robot(EchoRobot).max_line(1000));
    let mut client = server.connect();
    // A first whole line makes this a line-framed connection (a first message that arrives in
    // pieces could pass for the tutorial's client, which sends one message per burst).
    assert_eq!(client.ask("bob", "hi"), "hi");
    client.send("bob::");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..160 {
        client.send(&chunk); // 10 MB with no newline
    }
    client.send("\nbob::next\n");
    let line = client.line();
    assert!(
        line.starts_with("ERR ") && line.contains("1000 bytes"),
        "{line}"
    );
    assert_eq!(client.line(), "next");
}

struct MultiLineRobot;

impl Robot for MultiLineRobot {
    fn name(&self) -> &str {
        "multi-line"
    }
    fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
        Ok(format!("first line\nsecond line\r\n{text}"))
    }
}

#[test]
fn a_reply_is_always_one_line() {
    let server = TestServer::start(Server::builder().robot(MultiLineRobot));
    let mut client = server.connect();
    assert_eq!(client.ask("bob", "x"), "first line second line x");
    assert_eq!(client.ask("bob", "y"), "first line second line y");
}

#[test]
fn a_robot_failure_or_panic_is_an_error_line_not_a_lost_connection() {
    let gate = GateRobot::default();
    let server = gate_server(&gate, 2, 16);
    let mut client = server.connect();
    // The user is told the kind of failure; the details (URLs, what an API said) are the
    // operator's, in the log.
    let failed = client.ask("bob", "fail");
    assert_eq!(failed, "ERR the robot could not answer");
    let panicked = client.ask("bob", "panic");
    assert!(
        panicked.starts_with("ERR ") && panicked.contains("robot"),
        "{panicked}"
    );
    // The worker that caught the panic still works, as does the connection.
    for i in 0..4 {
        assert_eq!(
            client.ask("bob", &format!("ok {i}")),
            format!("echo: ok {i}")
        );
    }
}

#[test]
fn a_blocked_robot_never_blocks_the_loop() {
    let gate = GateRobot::default();
    let server = gate_server(&gate, 2, 16);
    let mut slow = server.connect();
    slow.send("bob::wait for it\n");
    gate.wait_for_waiting(1); // one worker is now stuck inside the robot

    // New connections are greeted and other users answered by the free worker.
    let mut other = server.connect();
    assert_eq!(other.ask("ann", "hello"), "echo: hello");
    let mut third = server.connect();
    assert_eq!(third.ask("cid", "hi"), "echo: hi");
    assert!(
        !slow.has_pending_input(),
        "the slow reply cannot have arrived yet"
    );

    gate.open();
    assert_eq!(slow.line(), "echo: wait for it");
}

#[test]
fn messages_behind_a_lookup_wait_and_keep_their_order() {
    let gate = GateRobot::default();
    let server = gate_server(&gate, 2, 16);
    let mut client = server.connect();
    client.send("bob::wait 1\nbob::two\nno separator\nbob::three\n");
    gate.wait_for_waiting(1);
    assert!(
        !client.has_pending_input(),
        "nothing may overtake the first reply"
    );
    gate.open();
    assert_eq!(client.line(), "echo: wait 1");
    assert_eq!(client.line(), "echo: two");
    assert!(client.line().starts_with("ERR "));
    assert_eq!(client.line(), "echo: three");
}

#[test]
fn a_late_reply_never_reaches_a_newer_connection_in_the_same_slot() {
    let gate = GateRobot::default();
    // One worker: the late reply is computed, and reaches the loop, before the new client's.
    let server = gate_server(&gate, 1, 16);
    let gone = server.connect();
    {
        let mut gone = gone;
        gone.send("bob::wait, then vanish\n");
        gate.wait_for_waiting(1);
        gone.reset(); // the server sees a reset and frees the slot at once
    }
    let mut newer = server.connect(); // takes the freed slot
    newer.send("ann::mine\n");
    gate.open();
    assert_eq!(newer.line(), "echo: mine");
    assert_eq!(newer.ask("ann", "and again"), "echo: and again");
    assert!(!newer.has_pending_input());
}

#[test]
fn a_half_closed_client_still_gets_every_reply() {
    let gate = GateRobot::default();
    let server = gate_server(&gate, 2, 16);
    let mut client = server.connect();
    client.send("bob::wait a moment\nbob::second\nbob::last, no newline");
    client.half_close();
    gate.wait_for_waiting(1);
    gate.open();
    assert_eq!(client.line(), "echo: wait a moment");
    assert_eq!(client.line(), "echo: second");
    assert_eq!(client.line(), "echo: last, no newline");
    client.expect_closed();
}

#[test]
fn a_full_queue_answers_busy_and_recovers() {
    let gate = GateRobot::default();
    let server = gate_server(&gate, 1, 1);
    let mut holder = server.connect();
    holder.send("bob::wait here\n");
    gate.wait_for_waiting(1); // the only worker is busy and the queue is empty

    let mut first = server.connect();
    let mut second = server.connect();
    first.send("ann::one\n");
    second.send("cid::two\n");
    // The queue holds one job: whichever message the loop saw second is answered busy at once.
    let busy_line = wait_for_first_line(&mut [&mut first, &mut second]);
    let (busy, queued) = match busy_line {
        (0, line) => (line, &mut second),
        (_, line) => (line, &mut first),
    };
    assert!(busy.starts_with("ERR ") && busy.contains("busy"), "{busy}");

    gate.open();
    assert_eq!(holder.line(), "echo: wait here");
    let queued_reply = queued.line();
    assert!(queued_reply == "echo: one" || queued_reply == "echo: two");
    // Busy was momentary: both clients are served again, in order.
    assert_eq!(first.ask("ann", "again"), "echo: again");
    assert_eq!(second.ask("cid", "again"), "echo: again");
}

/// Waits until one of `clients` has a line, and returns which one and the line.
fn wait_for_first_line(clients: &mut [&mut Client]) -> (usize, String) {
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while std::time::Instant::now() < deadline {
        for (i, c) in clients.iter_mut().enumerate() {
            if c.has_pending_input() {
                return (i, c.line());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no client got a line");
}

#[test]
fn a_client_that_floods_and_never_reads_is_pushed_back() {
    let server = echo_server(4);
    let mut flooder = server.connect();
    let stream = flooder.stream().try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let message = b"bob::flooding the server with a message it must answer\n";
    let batch: Vec<u8> = message.repeat(1000);
    let (mut sent, mut stalled) = (0usize, false);
    // Writes until the server stops taking bytes. Without push-back it would take all 200 MB.
    while sent < 200 << 20 {
        match (&stream).write(&batch[sent % batch.len()..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait_writable(&stream, Duration::from_secs(2)) {
                    stalled = true;
                    break;
                }
            }
            Err(e) => panic!("flood write: {e}"),
        }
    }
    assert!(
        stalled,
        "the server kept reading {sent} bytes from a client that never reads"
    );

    // Everyone else is served as usual meanwhile.
    let mut other = server.connect();
    for i in 0..20 {
        assert_eq!(
            other.ask("ann", &format!("still fine {i}")),
            format!("still fine {i}")
        );
    }

    // Once the flooder reads, it gets every reply for what it sent, in order.
    stream.set_nonblocking(false).unwrap();
    let whole_messages = sent / message.len();
    let expected = "flooding the server with a message it must answer";
    for _ in 0..whole_messages {
        assert_eq!(flooder.line(), expected);
    }
}

/// Waits until the socket takes more bytes (or fails); false if it did not within `timeout`.
fn wait_writable(stream: &TcpStream, timeout: Duration) -> bool {
    poll_events(stream, libc::POLLOUT, timeout) != 0
}

#[test]
fn over_max_connections_gets_an_error_line_and_is_closed() {
    let server = TestServer::start(Server::builder().robot(EchoRobot).max_connections(2));
    let mut a = server.connect();
    let mut b = server.connect();
    let mut refused = Client::connect_raw(server.addr);
    let line = refused.line();
    assert!(line.starts_with("ERR ") && line.contains("full"), "{line}");
    refused.expect_closed();
    assert_eq!(a.ask("a", "still served"), "still served");
    assert_eq!(b.ask("b", "me too"), "me too");
    // A slot frees up when someone leaves.
    drop(a);
    let mut c = wait_for_admission(&server);
    assert_eq!(c.ask("c", "in"), "in");
}

/// Connects until the server greets rather than refuses (a closed client's slot is freed as
/// soon as the server reads its end of stream).
fn wait_for_admission(server: &TestServer) -> Client {
    for _ in 0..1000 {
        let mut client = Client::connect_raw(server.addr);
        let line = client.line();
        if line == robochat::DEFAULT_GREETING {
            return client;
        }
        assert!(line.contains("full"), "{line}");
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never admitted");
}

#[test]
fn shutdown_delivers_lookups_in_flight_then_says_goodbye() {
    let gate = GateRobot::default();
    let server = gate_server(&gate, 2, 16);
    let mut busy = server.connect();
    let mut idle = server.connect();
    busy.send("bob::wait for shutdown\n");
    gate.wait_for_waiting(1);
    server.handle.shutdown();
    // The idle client keeps waiting for the lookup in flight, then everyone gets the notice.
    gate.open();
    assert_eq!(busy.line(), "echo: wait for shutdown");
    for client in [&mut busy, &mut idle] {
        let notice = client.line();
        assert!(notice.contains("shutting down"), "{notice}");
        client.expect_closed();
    }
    server.stop().expect("run returns Ok");
}

#[test]
fn shutdown_does_not_wait_past_its_timeout() {
    let gate = GateRobot::default();
    let server = TestServer::start(
        Server::builder()
            .robot(gate.clone())
            .shutdown_timeout(Duration::from_millis(200)),
    );
    let mut stuck = server.connect();
    stuck.send("bob::wait forever\n");
    gate.wait_for_waiting(1);
    server.handle.shutdown();
    let notice = stuck.line();
    assert!(notice.contains("shutting down"), "{notice}");
    stuck.expect_closed();
    server.stop().expect("run returns Ok");
    gate.open(); // let the worker finish
}

#[test]
fn random_bytes_never_break_the_server() {
    let server = echo_server(2);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..50 {
        let mut client = Client::connect_raw(server.addr);
        let len = (next() % 20_000) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| match next() % 8 {
                0 => b'\n',
                1 => b':',
                _ => next() as u8,
            })
            .collect();
        client.send(&bytes);
        if next() % 2 == 0 {
            client.reset();
        }
    }
    let mut client = server.connect();
    assert_eq!(client.ask("bob", "alive"), "alive");
}

#[test]
fn zero_workers_is_refused_for_a_robot_that_may_block() {
    let error = Server::builder()
        .listen("127.0.0.1:0")
        .robot(GateRobot::default())
        .workers(0)
        .build()
        .err()
        .expect("must not build");
    assert!(error.to_string().contains("worker"), "{error}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let server = echo_server(1);
    let error = Server::builder()
        .listen(server.addr)
        .build()
        .err()
        .expect("the port is taken");
    assert!(error.to_string().contains("cannot listen"), "{error}");
}

#[test]
fn exit_with_more_input_unread_still_closes_cleanly() {
    let server = echo_server(2);
    let mut client = server.connect();
    // Messages, `exit`, then more bytes the server will never answer: closing a socket with
    // unread input would reset the connection and could destroy the replies on their way.
    let mut burst = Vec::new();
    for i in 0..50 {
        burst.extend_from_slice(format!("bob::{i} {}\n", "y".repeat(1000)).as_bytes());
    }
    burst.extend_from_slice(b"bob::exit\n");
    burst.extend_from_slice(&vec![b'z'; 200_000]);
    let mut writer = client.stream().try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&burst); // may fail once the server has closed; that is fine
    });
    for i in 0..50 {
        assert!(client.line().starts_with(&format!("{i} y")));
    }
    assert!(client.line().contains("再见"));
    let mut rest = Vec::new();
    let end = std::io::Read::read_to_end(&mut client.reader, &mut rest);
    assert!(
        end.is_ok(),
        "the connection ended with {end:?}, not a clean close"
    );
    sender.join().unwrap();
}

#[test]
fn shutdown_does_not_wait_for_lookups_nobody_is_waiting_for() {
    let gate = GateRobot::default();
    let server = TestServer::start(
        Server::builder()
            .robot(gate.clone())
            .shutdown_timeout(Duration::from_secs(600)),
    );
    let gone = server.connect();
    {
        let mut gone = gone;
        gone.send("bob::wait, then vanish\n");
        gate.wait_for_waiting(1);
        gone.reset();
    }
    let mut idle = server.connect();
    server.handle.shutdown();
    // The lookup of the vanished client is still stuck; only a live client's would be awaited,
    // so the notice comes now, not after the 600 s timeout (the read would fail first).
    let notice = idle.line();
    assert!(notice.contains("shutting down"), "{notice}");
    idle.expect_closed();
    server.stop().expect("run returns Ok");
    gate.open();
}

struct LongRobot;

impl Robot for LongRobot {
    fn name(&self) -> &str {
        "long"
    }
    fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
        if text == "fail" {
            return Err(RobotError::Rejected("错".repeat(5000)));
        }
        Ok("字".repeat(5000))
    }
}

#[test]
fn replies_and_robot_errors_are_cut_to_max_reply_characters() {
    let server = TestServer::start(Server::builder().robot(LongRobot).max_reply(100));
    let mut client = server.connect();
    assert_eq!(client.ask("bob", "long"), "字".repeat(100));
    let error = client.ask("bob", "fail");
    assert!(error.starts_with("ERR 错"), "{error}");
    assert_eq!(error.chars().count(), 100);
    // The default is 2000 characters.
    let server = TestServer::start(Server::builder().robot(LongRobot));
    let mut client = server.connect();
    assert_eq!(client.ask("bob", "long").chars().count(), 2000);
}

#[test]
fn a_client_that_stops_in_the_middle_of_a_line_is_closed_after_the_line_timeout() {
    let server = TestServer::start(
        Server::builder()
            .robot(EchoRobot)
            .framing(Framing::Line)
            .line_timeout(Duration::from_secs(1)),
    );
    let mut slow = server.connect();
    let mut chatty = server.connect();
    slow.send("bob::half a mess");
    // The server closes it; the read returns at once then.
    slow.expect_closed();
    // A connection that finishes its lines is not affected.
    assert_eq!(chatty.ask("ann", "still here"), "still here");
}

#[test]
fn the_line_clock_starts_again_with_each_completed_line() {
    // A pipelining client whose writes end mid-line, as segments do on a real network: no
    // line stays unfinished for long, though some line is always unfinished.
    let server = TestServer::start(
        Server::builder()
            .robot(EchoRobot)
            .workers(0)
            .framing(Framing::Line)
            .line_timeout(Duration::from_secs(1)),
    );
    let mut client = server.connect();
    assert_eq!(client.ask("u", "prime"), "prime");
    client.send("u::m0\nu::m");
    assert_eq!(client.line(), "m0");
    // Three times the line timeout, a line finished every 300 ms.
    for i in 1..=10 {
        std::thread::sleep(Duration::from_millis(300));
        client.send(format!("{i}\nu::m"));
        assert_eq!(client.line(), format!("m{i}"));
    }
    client.send("end\n");
    assert_eq!(client.line(), "mend");
}

#[test]
fn timeouts_fire_after_their_time_and_promptly() {
    let server = TestServer::start(
        Server::builder()
            .robot(EchoRobot)
            .framing(Framing::Line)
            .line_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::from_millis(1500)),
    );
    let mut slow = server.connect();
    let started = Instant::now();
    slow.send("bob::half a mess");
    slow.expect_closed();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "closed early, after {took:?}"
    );
    // Checked at the deadline, not on a once-a-second sweep (which took up to 2 s more).
    assert!(
        took < Duration::from_millis(1600),
        "closed only after {took:?}"
    );

    let mut idle = server.connect();
    let started = Instant::now();
    assert!(idle.line().contains("idle"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "said goodbye early, after {took:?}"
    );
    assert!(
        took < Duration::from_millis(2100),
        "said goodbye only after {took:?}"
    );
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_after_the_send_timeout() {
    let server = TestServer::start(
        Server::builder()
            .robot(EchoRobot)
            .send_timeout(Duration::from_secs(1)),
    );
    let flooder = server.connect();
    let stream = flooder.stream().try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let batch = b"bob::a message whose reply is never read\n".repeat(1000);
    let mut sent = 0usize;
    // Write until the server stops taking bytes (its replies fill every buffer on the way and
    // it stops reading), then wait for it to give up on this client.
    loop {
        match (&stream).write(&batch[sent % batch.len()..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait_writable(&stream, Duration::from_secs(2)) {
                    break;
                }
            }
            // The server closed it while we were still writing: that is the point.
            Err(e) if is_closed_error(&e) => return,
            Err(e) => panic!("flood write: {e}"),
        }
        assert!(sent < 500 << 20, "the server never pushed back");
    }
    assert!(
        wait_hangup(&stream, READ_TIMEOUT),
        "the server kept a client that never reads"
    );
}

fn is_closed_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// Waits until the peer closes or resets the connection, without reading from it.
fn wait_hangup(stream: &TcpStream, timeout: Duration) -> bool {
    poll_events(stream, libc::POLLRDHUP, timeout) & HANGUP != 0
}

#[test]
fn an_idle_connection_gets_a_goodbye_after_the_idle_timeout() {
    let server = TestServer::start(
        Server::builder()
            .robot(EchoRobot)
            .idle_timeout(Duration::from_secs(1)),
    );
    let mut idle = server.connect();
    let notice = idle.line();
    assert!(notice.contains("idle"), "{notice}");
    idle.expect_closed();
}

#[test]
fn timeouts_can_be_turned_off() {
    let server = TestServer::start(
        Server::builder()
            .robot(EchoRobot)
            .framing(Framing::Line)
            .line_timeout(Duration::ZERO)
            .send_timeout(Duration::ZERO)
            .idle_timeout(Duration::ZERO),
    );
    let mut client = server.connect();
    client.send("bob::half");
    // Another connection's full round trips take the loop through several sweeps' worth of
    // turns; the unfinished line is still there to be finished.
    let mut other = server.connect();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(other.ask("ann", &format!("{i}")), format!("{i}"));
    }
    client.send(" done\n");
    assert_eq!(client.line(), "half done");
}

#[test]
fn urgent_data_does_not_strand_the_bytes_queued_behind_it() {
    use std::os::fd::AsRawFd;
    let gate = GateRobot::default();
    let server = TestServer::start(
        Server::builder()
            .robot(common::LoopGate(gate.clone()))
            .workers(0),
    );
    let mut holder = server.connect();
    let mut client = server.connect();
    holder.send("x::wait\n");
    gate.wait_for_waiting(1); // the loop itself is held inside the robot now
                              // A message, an urgent (out-of-band) byte, another message: all queued at the server
                              // before it reads any of them. A read stops short at the urgent byte.
    let first = b"u::a\nZ";
    // SAFETY: send on a socket we own, from a live buffer of that length.
    let sent = unsafe {
        libc::send(
            client.stream().as_raw_fd(),
            first.as_ptr().cast(),
            first.len(),
            libc::MSG_OOB,
        )
    };
    assert_eq!(sent, first.len() as isize);
    client.send("u::b\n");
    gate.open();
    assert_eq!(holder.line(), "echo: wait");
    assert_eq!(client.line(), "echo: a");
    assert_eq!(
        client.line(),
        "echo: b",
        "the bytes after the urgent one were never read"
    );
}

#[test]
fn the_idle_clock_restarts_when_a_slow_answer_is_delivered() {
    let gate = GateRobot::default();
    let server = TestServer::start(
        Server::builder()
            .robot(gate.clone())
            .idle_timeout(Duration::from_secs(2)),
    );
    let mut client = server.connect();
    client.send("bob::wait for a slow answer\n");
    gate.wait_for_waiting(1);
    // Longer than the idle timeout, while the lookup is in flight (which must not count).
    std::thread::sleep(Duration::from_millis(4000));
    gate.open();
    assert_eq!(client.line(), "echo: wait for a slow answer");
    // Timeouts are checked every second: had the idle clock kept running from the question,
    // the goodbye would come within a second of the answer. It must not.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !client.has_pending_input(),
        "said goodbye right after answering"
    );
    assert_eq!(client.ask("bob", "thanks"), "echo: thanks");
}

#[test]
fn two_loops_share_the_pool_and_every_reply_reaches_its_client() {
    let server = TestServer::start(Server::builder().robot(EchoRobot).workers(3).loops(2));
    let mut clients: Vec<Client> = (0..40).map(|_| server.connect()).collect();
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(format!("u{i}::client {i} round {round}\n"));
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.line(), format!("client {i} round {round}"));
        }
    }
}

#[test]
fn max_connections_counts_the_connections_of_every_loop() {
    let server = TestServer::start(
        Server::builder()
            .robot(EchoRobot)
            .loops(2)
            .max_connections(3),
    );
    let mut admitted: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    let mut refused = Client::connect_raw(server.addr);
    assert!(refused.line().contains("full"));
    refused.expect_closed();
    for client in &mut admitted {
        assert_eq!(client.ask("u", "in"), "in");
    }
}

/// A robot that never blocks but takes a while (200 µs of the CPU), and says which thread
/// answered.
struct Slow;

impl Robot for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_micros(200) {
            std::hint::spin_loop();
        }
        let thread = std::thread::current();
        Ok(format!("{text} by {}", thread.name().unwrap_or("?")))
    }
    fn never_blocks(&self) -> bool {
        true
    }
}

#[test]
fn a_robot_that_never_blocks_answers_on_the_loop_and_the_workers_take_the_rest_in_order() {
    let server = TestServer::start(Server::builder().robot(Slow).workers(1));
    let mut client = server.connect();
    let burst: String = (0..40).map(|i| format!("u::m{i}\n")).collect();
    client.send(burst);
    let mut by_worker = 0;
    for i in 0..40 {
        let reply = client.line();
        assert!(reply.starts_with(&format!("m{i} by ")), "{reply}");
        by_worker += usize::from(reply.contains("robochat-worker"));
    }
    // The loop answers while it has time in a turn (50 µs of robot work); each reply past that
    // comes from the worker, and the order holds across the two.
    assert!(by_worker > 0, "the worker answered nothing");
    assert!(by_worker < 40, "the loop answered nothing");
}

#[test]
fn with_no_workers_the_loop_answers_everything() {
    let server = TestServer::start(Server::builder().robot(Slow).workers(0));
    let mut client = server.connect();
    let burst: String = (0..10).map(|i| format!("u::m{i}\n")).collect();
    client.send(burst);
    for i in 0..10 {
        let reply = client.line();
        assert!(reply.starts_with(&format!("m{i} by ")), "{reply}");
        assert!(!reply.contains("robochat-worker"), "{reply}");
    }
}
