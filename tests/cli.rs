//! The built `robochat` binary: serving the tutorial's client and `robochat chat`, signals,
//! open-file limits, and memory, measured on a real process.

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{robochat_bin, Client, ServeProcess};

/// Runs `command` with `input` on its standard input; returns (exit code, stdout, stderr).
fn run_with_input(mut command: Command, input: &str) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    // The client may exit before reading its input (when it cannot connect, say).
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The tutorial's client, unchanged, pointed at `port`: it hard-codes 127.0.0.1:9999 in its
/// `__main__` block, so it is imported and given the test server's port instead (port 9999 may
/// well be taken by a robochat the user is running, as the Quick start suggests).
fn tutorial_client(port: u16) -> Command {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut python = Command::new("python3");
    python.args([
        "-c",
        &format!(
            "import sys; sys.path.insert(0, {fixtures:?}); import seed_client; \
             seed_client.ChatClient(username='小明', port={port}).main()"
        ),
    ]);
    python
}

#[test]
fn the_tutorial_client_works_unchanged() {
    // The tutorial's client sends messages without a newline and waits for each answer.
    let server = ServeProcess::start(&["--robot", "echo"]);
    let python = tutorial_client(server.addr.port());
    let (code, stdout, stderr) = run_with_input(python, "你好\n今天天气怎么样\nexit\n");
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("你好，欢迎来到机器人聊天器！"), "{stdout}");
    assert_eq!(stdout.matches("【机器人小图】").count(), 2, "{stdout}");
    let hello = stdout
        .find("\n你好\n")
        .expect("the echo of the first message");
    let weather = stdout
        .find("今天天气怎么样\n")
        .expect("the echo of the second");
    assert!(hello < weather, "{stdout}");
    assert!(stdout.contains("聊天室已关闭"), "{stdout}");
}

#[test]
fn the_embedded_robot_answers_the_tutorial_client() {
    let server = ServeProcess::start(&[]);
    let mut client = Client::connect(server.addr);
    client.send("小明::你是谁"); // tutorial style: no newline, then wait
    let reply = client.line();
    assert!(reply.contains("小图"), "{reply}");
}

#[test]
fn chat_prints_the_greeting_and_each_reply_under_a_header() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let mut chat = Command::new(robochat_bin());
    chat.args([
        "chat",
        "--connect",
        &server.addr.to_string(),
        "--user",
        "alice",
    ]);
    let (code, stdout, stderr) = run_with_input(chat, "hello there\n第二条消息\nexit\n");
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "你好，欢迎来到机器人聊天器！", "{stdout}");
    assert_eq!(stdout.matches("【机器人小图】 ").count(), 3, "{stdout}");
    let replies: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0].starts_with("【机器人小图】 "))
        .map(|w| w[1])
        .collect();
    assert_eq!(replies[..2], ["hello there", "第二条消息"], "{stdout}");
    assert!(replies[2].contains("再见"), "{stdout}");
}

#[test]
fn chat_with_piped_input_and_no_exit_gets_every_reply() {
    let server = ServeProcess::start(&["--robot", "echo", "--robot-delay", "50"]);
    let mut chat = Command::new(robochat_bin());
    chat.args([
        "chat",
        "--connect",
        &server.addr.to_string(),
        "--user",
        "bob",
    ]);
    let input: String = (0..10).map(|i| format!("message {i}\n")).collect();
    let (code, stdout, stderr) = run_with_input(chat, &input);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    for i in 0..10 {
        assert!(stdout.contains(&format!("\nmessage {i}\n")), "{stdout}");
    }
}

#[test]
fn chat_explains_when_no_server_is_there() {
    let (_reserved, port) = common::refusing_port();
    let mut chat = Command::new(robochat_bin());
    chat.args(["chat", "--connect", &format!("127.0.0.1:{port}")]);
    let (code, _, stderr) = run_with_input(chat, "hi\n");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(stderr.contains("robochat serve"), "{stderr}");
}

/// `robochat chat --connect ADDR --user alice`, with piped standard streams.
fn chat_command(addr: &str) -> Command {
    let mut chat = Command::new(robochat_bin());
    chat.args(["chat", "--connect", addr, "--user", "alice"]);
    chat
}

#[test]
fn chat_fails_when_the_connection_closes_before_the_greeting() {
    // What a client of a load balancer sees while it has not yet noticed a dead backend.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = thread::spawn(move || drop(listener.accept().unwrap()));
    let (code, stdout, stderr) = run_with_input(chat_command(&addr.to_string()), "hello\n");
    closer.join().unwrap();
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("closed by the server before its greeting"),
        "{stderr}"
    );
}

#[test]
fn chat_fails_when_the_server_is_full() {
    let server = ServeProcess::start(&["--robot", "echo", "--max-connections", "1"]);
    let _only = Client::connect(server.addr);
    let (code, stdout, stderr) = run_with_input(chat_command(&server.addr.to_string()), "hi\n");
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.contains("the server is full"), "{stderr}");
}

#[test]
fn chat_fails_when_the_server_goes_away_mid_chat() {
    let mut server = ServeProcess::start(&["--robot", "echo"]);
    let mut chat = chat_command(&server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The person is still typing: standard input stays open.
    let mut stdin = chat.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    let mut stdout = std::io::BufReader::new(chat.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("\nfirst\n") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(n > 0, "chat ended early: {seen}");
        seen.push_str(&line);
    }
    server.signal(libc::SIGKILL);
    server.wait();
    let out = chat.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("connection closed by the server")
            || stderr.contains("connection was lost"),
        "{stderr}"
    );
    drop(stdin);
}

#[test]
fn chat_without_user_in_the_environment_uses_the_account_name() {
    let expected = Command::new("id").arg("-un").output().unwrap();
    let expected = String::from_utf8(expected.stdout)
        .unwrap()
        .trim()
        .to_owned();
    // A server of our own that answers with the message line it got, user name and all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.write_all("hi there\n".as_bytes()).unwrap();
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(socket.try_clone().unwrap());
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        socket.write_all(line.as_bytes()).unwrap();
        // Close only once the client is done (its input ended), as robochat does.
        std::io::Read::read_to_end(&mut reader, &mut Vec::new()).unwrap();
    });
    let mut chat = Command::new(robochat_bin());
    chat.args(["chat", "--connect", &addr.to_string()])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("USERNAME");
    let (code, stdout, stderr) = run_with_input(chat, "hello\n");
    server.join().unwrap();
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains(&format!("\n{expected}::hello\n")),
        "expected the name {expected:?}: {stdout}"
    );
}

#[test]
fn sigterm_finishes_lookups_in_flight_says_goodbye_and_exits_zero() {
    let mut server = ServeProcess::start(&[
        "--robot",
        "echo",
        "--robot-delay",
        "1000",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = common::metrics_addr(&server);
    let mut idle = Client::connect(server.addr);
    let mut busy = Client::connect(server.addr);
    busy.send("bob::answer me before you go\n");
    // Once the message has been handed to the robot, the shutdown must wait for its answer.
    common::wait_for_metric(metrics, "robochat_messages_total", 1);
    server.signal(libc::SIGTERM);
    assert_eq!(busy.line(), "answer me before you go");
    for client in [&mut busy, &mut idle] {
        assert!(client.line().contains("shutting down"));
        client.expect_closed();
    }
    assert_eq!(server.wait(), Some(0));
    server.wait_for_log("received SIGTERM");
}

#[test]
fn sigint_stops_an_idle_server_with_status_zero() {
    let mut server = ServeProcess::start(&[]);
    let mut client = Client::connect(server.addr);
    server.signal(libc::SIGINT);
    assert!(client.line().contains("shutting down"));
    client.expect_closed();
    assert_eq!(server.wait(), Some(0));
}

/// A `robochat serve` command whose open-file limit starts at `soft` of a `hard` maximum.
fn with_file_limit(soft: u64, hard: u64) -> Command {
    let mut command = Command::new(robochat_bin());
    // SAFETY: setrlimit is async-signal-safe, as required between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn soft_file_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn out_of_file_descriptors_the_server_keeps_serving_without_spinning() {
    let server =
        ServeProcess::start_with(with_file_limit(24, 40), "127.0.0.1:0", &["--robot", "echo"]);
    assert_eq!(
        soft_file_limit(server.pid()),
        40,
        "soft limit raised to the hard limit"
    );

    // More clients than descriptors: the first ones are accepted and greeted, the rest wait in
    // the listen backlog while accept fails with EMFILE.
    let clients: Vec<Client> = (0..60).map(|_| Client::connect_raw(server.addr)).collect();
    server.wait_for_log("cannot accept connections");
    // Greetings are written as each connection is accepted, before the accept that failed
    // and was logged, so now exactly the accepted clients have input waiting.
    let (mut served, waiting): (Vec<Client>, Vec<Client>) =
        clients.into_iter().partition_map_pending();
    assert!(
        served.len() >= 20 && !waiting.is_empty(),
        "{} served",
        served.len()
    );

    // The loop pauses accepting instead of spinning on the error.
    let before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let used = server.cpu_ticks() - before;
    assert!(
        used < 30,
        "the server used {used} ticks of CPU in 1 s while out of descriptors"
    );

    for (i, client) in served.iter_mut().enumerate() {
        assert_eq!(client.line(), "你好，欢迎来到机器人聊天器！");
        assert_eq!(
            client.ask("u", &format!("served {i}")),
            format!("served {i}")
        );
    }
    // As connections close, the waiting ones are accepted and greeted.
    let admitted = waiting.len().min(served.len());
    served.truncate(served.len() - admitted);
    for mut client in waiting.into_iter().take(admitted) {
        assert_eq!(client.line(), "你好，欢迎来到机器人聊天器！");
        assert_eq!(client.ask("w", "finally"), "finally");
    }
}

trait PartitionPending {
    fn partition_map_pending(self) -> (Vec<Client>, Vec<Client>);
}

impl<I: Iterator<Item = Client>> PartitionPending for I {
    /// Splits clients into those with input waiting and those without.
    fn partition_map_pending(self) -> (Vec<Client>, Vec<Client>) {
        let (mut ready, mut idle) = (Vec::new(), Vec::new());
        for mut client in self {
            if client.has_pending_input() {
                ready.push(client);
            } else {
                idle.push(client);
            }
        }
        (ready, idle)
    }
}

#[test]
fn idle_connections_hold_no_buffers() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    const CONNECTIONS: usize = 2000;
    let mut clients = Vec::with_capacity(CONNECTIONS + 200);
    // Warm up: the first connections grow the connection table and the allocator's arenas.
    for _ in 0..200 {
        let mut client = Client::connect(server.addr);
        assert_eq!(client.ask("warm", "up"), "up");
        clients.push(client);
    }
    let before = server.rss_bytes();
    for _ in 0..CONNECTIONS {
        let mut client = Client::connect(server.addr);
        assert_eq!(client.ask("u", "hello"), "hello");
        // A line in two writes: the server may hold the first part, then must let it go.
        client.send("u::a message in ");
        client.send("two parts\n");
        assert_eq!(client.line(), "a message in two parts");
        clients.push(client);
    }
    let after = server.rss_bytes();
    let per_connection = after.saturating_sub(before) / CONNECTIONS as u64;
    // A buffer of even 1 KiB kept per idle connection would show here.
    assert!(
        per_connection < 1024,
        "{per_connection} bytes of server memory per idle connection"
    );
}

#[test]
fn a_100_mb_line_does_not_grow_server_memory() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask("bob", "warm up"), "warm up");
    let before = server.rss_bytes();
    client.send("bob::");
    let chunk = vec![b'y'; 1 << 20];
    for _ in 0..100 {
        client.send(&chunk);
    }
    client.send("\n");
    assert!(client.line().starts_with("ERR "));
    assert_eq!(client.ask("bob", "next"), "next");
    let growth = server.rss_bytes().saturating_sub(before);
    assert!(growth < 512 * 1024, "memory grew by {growth} bytes");
}

#[test]
fn help_answers_questions_and_bad_flags_are_explained() {
    let out = Command::new(robochat_bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--robot",
        "--workers",
        "--queue",
        "--max-connections",
        "--max-line",
        "--framing",
        "--greeting",
        "--rules",
        "--shutdown-timeout",
        "RUST_LOG",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
    let out = Command::new(robochat_bin())
        .args(["chat", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--user"));

    let out = Command::new(robochat_bin())
        .args(["serve", "--workers", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
    let out = Command::new(robochat_bin())
        .args(["serve", "--robot", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown robot"));
    let out = Command::new(robochat_bin())
        .args(["serve", "--robot", "echo,embedded,echo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names echo twice"));
}

/// Runs `robochat ARGS` to the end; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(robochat_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_follows_the_conventions() {
    // No command: a short usage on stderr and status 2.
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("Usage: robochat"), "{stderr}");
    // `help COMMAND` is that command's help.
    let (code, stdout, _) = run(&["help", "serve"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("Run the chat-robot server."), "{stdout}");
    assert!(stdout.contains("--max-line"), "{stdout}");
    let (code, stdout, _) = run(&["help", "bench"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--source-ip"), "{stdout}");
    // A usage error points to the help of the command it was in.
    let (code, _, stderr) = run(&["chat", "--bogus"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("robochat chat --help"), "{stderr}");
}

#[test]
fn settings_out_of_range_name_their_flag_and_are_usage_errors() {
    for (args, expected) in [
        (&["--max-line", "3"][..], "--max-line must be at least"),
        (&["--loops", "0"][..], "--loops must be between"),
        (&["--queue", "0"][..], "--queue must be between"),
        (
            &["--max-connections", "0"][..],
            "--max-connections must be between",
        ),
        (
            &["--workers", "0", "--robot", "openai"][..],
            "--workers must be at least 1",
        ),
        (
            &["--listen", "nonsense"][..],
            "invalid value 'nonsense' for --listen",
        ),
        (
            &["--robot", "openai", "--openai-url", "notaurl"][..],
            "invalid value 'notaurl' for --openai-url",
        ),
        (
            &["--web", "nowhere"][..],
            "invalid value 'nowhere' for --web",
        ),
        (
            &[
                "--web",
                "127.0.0.1:0",
                "--allow-origin",
                "https://x.example/chat",
            ][..],
            "invalid value 'https://x.example/chat' for --allow-origin",
        ),
        (
            &["--allow-origin", "https://x.example"][..],
            "--allow-origin is for the web listener",
        ),
    ] {
        let (code, _, stderr) = run(&[&["serve"][..], args].concat());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stderr.contains("robochat serve --help"), "{stderr}");
    }
}

#[test]
fn a_metrics_or_web_port_in_use_is_named_by_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    for flag in ["--metrics", "--web"] {
        let (code, _, stderr) = run(&["serve", "--listen", "127.0.0.1:0", flag, &port]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {port}")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("choose another with {flag}")),
            "{stderr}"
        );
    }
}

#[test]
fn under_systemd_it_says_when_it_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let path = std::env::temp_dir().join(format!("robochat-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(common::READ_TIMEOUT))
        .unwrap();
    let mut command = Command::new(robochat_bin());
    command.env("NOTIFY_SOCKET", &path);
    let mut server = ServeProcess::start_with(command, "127.0.0.1:0", &[]);
    let mut buf = [0u8; 256];
    let n = systemd.recv(&mut buf).expect("READY=1 from the server");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means listening: a client is greeted.
    let mut client = Client::connect(server.addr);
    server.signal(libc::SIGTERM);
    let n = systemd.recv(&mut buf).expect("STOPPING=1 from the server");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(client.line().contains("shutting down"));
    client.expect_closed();
    assert_eq!(server.wait(), Some(0));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn reuseport_servers_share_one_port_and_both_get_connections() {
    let first = ServeProcess::start(&["--robot", "echo", "--reuseport", "--greeting", "first"]);
    let addr = first.addr.to_string();
    let second = ServeProcess::start_with(
        Command::new(robochat_bin()),
        &addr,
        &["--robot", "echo", "--reuseport", "--greeting", "second"],
    );
    assert_eq!(second.addr, first.addr);
    // The kernel spreads connections by their addresses: over 64 connections both get some
    // (all 64 going to one would happen once in 2^63 runs).
    let mut greeted = std::collections::HashSet::new();
    for i in 0..64 {
        let mut client = Client::connect_raw(first.addr);
        let greeting = client.line();
        assert_eq!(client.ask("u", &format!("{i}")), format!("{i}"));
        greeted.insert(greeting);
    }
    assert_eq!(greeted.len(), 2, "{greeted:?}");
}

#[test]
fn without_reuseport_a_taken_port_is_refused_clearly() {
    let first = ServeProcess::start(&["--robot", "echo"]);
    let out = Command::new(robochat_bin())
        .args(["serve", "--listen", &first.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn a_server_that_cannot_start_shows_its_own_error_in_the_test() {
    // The test helper that starts the binary passes on what the server said when it exits
    // before listening, not only that it exited.
    let first = ServeProcess::start(&["--robot", "echo"]);
    let addr = first.addr.to_string();
    let failed = std::panic::catch_unwind(|| {
        ServeProcess::start_with(Command::new(robochat_bin()), &addr, &["--robot", "echo"])
    });
    let Err(panic) = failed else {
        panic!("a second server on a taken port must not start");
    };
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("cannot listen on"), "{message}");
    assert!(message.contains("in use"), "{message}");
}

#[test]
fn an_invalid_rust_log_is_reported_and_the_log_stays_at_info() {
    let mut command = Command::new(robochat_bin());
    command.env("RUST_LOG", "verbose");
    // The start-up line still comes (the helper waits for it), with a warning before it.
    let server = ServeProcess::start_with(command, "127.0.0.1:0", &["--robot", "echo"]);
    server.wait_for_log("RUST_LOG=\"verbose\" is not valid");
    server.wait_for_log("logging at info");
}

#[test]
fn at_debug_connections_are_logged_when_accepted_and_when_closed_with_the_reason() {
    let server = ServeProcess::start_at_debug(&["--robot", "echo"]);
    let mut leaving = Client::connect(server.addr);
    let name = leaving.stream().local_addr().unwrap().to_string();
    server.wait_for_log(&format!("accepted {name}"));
    // Once both sides have closed, the socket no longer knows its peer: the close line names
    // the connection as its accept line did.
    let accepted = server
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains(&format!("accepted {name}")))
        .cloned()
        .unwrap();
    let id = accepted.split(" (").nth(1).unwrap().trim_end_matches(')');
    leaving.send("u::exit\n");
    assert!(leaving.line().contains("Goodbye"));
    leaving.expect_closed();
    server.wait_for_log(&format!(
        "closed {id}: the client closed it after our goodbye"
    ));

    let quitting = Client::connect(server.addr);
    let name = quitting.stream().local_addr().unwrap().to_string();
    quitting.half_close();
    server.wait_for_log(&format!("closed {name}: the client closed the connection"));
}

#[test]
fn with_two_loops_both_serve_clients() {
    let server = ServeProcess::start_at_debug(&["--robot", "echo", "--loops", "2"]);
    // The kernel spreads connections over the two listeners by their addresses: over 64, both
    // loops get some (all on one would happen once in 2^63 runs).
    for i in 0..64 {
        let mut client = Client::connect(server.addr);
        assert_eq!(client.ask("u", &format!("{i}")), format!("{i}"));
    }
    server.wait_for_log("loop 0 accepted");
    server.wait_for_log("loop 1 accepted");
}

#[test]
fn the_robot_timeout_counts_the_time_in_the_queue() {
    // Two workers, each answer a second late, two seconds per message: of fifty messages sent
    // at once, the first ones are answered by the robot, and everyone else hears at about two
    // seconds that no worker was free in time, rather than 25 s later.
    let server = ServeProcess::start(&[
        "--robot",
        "echo",
        "--workers",
        "2",
        "--robot-delay",
        "1000",
        "--robot-timeout",
        "2",
    ]);
    let mut clients: Vec<Client> = (0..50).map(|_| Client::connect(server.addr)).collect();
    let started = std::time::Instant::now();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("u{i}::message {i}\n"));
    }
    let mut answered = 0;
    for (i, client) in clients.iter_mut().enumerate() {
        let line = client.line();
        if line == format!("message {i}") {
            answered += 1;
        } else {
            assert!(line.starts_with("ERR the robot "), "{line}");
        }
    }
    let took = started.elapsed();
    // About 2 s; the margin is for a loaded machine, far below the 25 s of a queue that
    // ignores the budget.
    assert!(
        took < Duration::from_secs(5),
        "the last line came after {took:?}"
    );
    assert!(
        answered >= 2,
        "the messages that fit were answered by the robot"
    );
    // Exactly one line each: nothing more comes.
    thread::sleep(Duration::from_millis(1200));
    for client in &mut clients {
        assert!(!client.has_pending_input());
    }
}
