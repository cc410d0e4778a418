//! `robochat serve --metrics ADDR`: a Prometheus endpoint whose counters move with the traffic,
//! in a format `promtool` accepts.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, ServeProcess};

fn serve_with_metrics() -> (ServeProcess, SocketAddr) {
    serve_robot_with_metrics("echo")
}

fn serve_robot_with_metrics(robot: &str) -> (ServeProcess, SocketAddr) {
    let server = ServeProcess::start(&["--robot", robot, "--metrics", "127.0.0.1:0"]);
    server.wait_for_log("metrics on http://");
    let line = server
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("metrics on http://"))
        .cloned()
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/metrics");
    (server, addr.parse().unwrap())
}

/// The response to `request` (status line, headers and body).
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn scrape(addr: SocketAddr) -> String {
    let response = http(addr, "GET /metrics HTTP/1.1\r\nHost: robochat\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Content-Type: text/plain; version=0.0.4"));
    response.split("\r\n\r\n").nth(1).unwrap().to_owned()
}

/// The value of the sample `name` (with its labels) in `body`.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn the_counters_move_with_the_traffic() {
    let (server, addr) = serve_with_metrics();
    let before = scrape(addr);
    let mut client = Client::connect(server.addr);
    for i in 0..5 {
        assert_eq!(client.ask("bob", &format!("m{i}")), format!("m{i}"));
    }
    client.send("no separator\n");
    assert!(client.line().starts_with("ERR "));
    let after = scrape(addr);
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved("robochat_messages_total"), 5.0);
    assert_eq!(moved("robochat_replies_total{outcome=\"ok\"}"), 5.0);
    assert_eq!(moved("robochat_replies_total{outcome=\"error\"}"), 1.0);
    assert_eq!(
        moved("robochat_connections_accepted_total{transport=\"line\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "robochat_connections_open{transport=\"line\"}"),
        1.0
    );
    assert_eq!(
        moved("robochat_robot_calls_total{robot=\"echo\",outcome=\"ok\"}"),
        5.0
    );
    assert_eq!(moved("robochat_robot_latency_seconds_count"), 5.0);
    assert!(moved("robochat_received_bytes_total") >= 5.0 * "bob::m0\n".len() as f64);
    assert!(moved("robochat_sent_bytes_total") >= 5.0 * "m0\n".len() as f64);
    // As many as the start-up line says (by default, as many as the machine's cores suggest).
    let workers: f64 = {
        let log = server.log.lock().unwrap();
        let line = log.iter().find(|l| l.contains("listening on")).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| w.starts_with("workers")).unwrap();
        words[at - 1].parse().unwrap()
    };
    assert!(workers >= 1.0);
    assert_eq!(sample(&after, "robochat_workers"), workers);
}

#[test]
fn nothing_but_metrics_is_served_there() {
    let (_server, addr) = serve_with_metrics();
    let response = http(addr, "GET / HTTP/1.1\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let response = http(addr, "bob::hello\n\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[test]
#[ignore = "needs promtool; .ci/run installs it (Debian's prometheus package) and runs this"]
fn promtool_accepts_the_metrics() {
    for robot in ["echo", "echo,embedded"] {
        let (server, addr) = serve_robot_with_metrics(robot);
        let mut client = Client::connect(server.addr);
        assert_eq!(client.ask("bob", "hello"), "hello");
        promtool_check(&scrape(addr));
    }
}

fn promtool_check(body: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: `apt-get install prometheus` (or run .ci/run)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_fallback_chain_counts_the_calls_of_each_robot_in_it() {
    let (server, addr) = serve_robot_with_metrics("echo,embedded");
    let mut client = Client::connect(server.addr);
    for i in 0..3 {
        assert_eq!(client.ask("bob", &format!("m{i}")), format!("m{i}"));
    }
    let body = scrape(addr);
    assert_eq!(
        sample(
            &body,
            "robochat_robot_calls_total{robot=\"echo\",outcome=\"ok\"}"
        ),
        3.0
    );
    // The embedded robot is only asked when echo fails, which it never does.
    assert_eq!(
        sample(
            &body,
            "robochat_robot_calls_total{robot=\"embedded\",outcome=\"ok\"}"
        ),
        0.0
    );
    let link = |name: &str| sample(&body, &format!("{name}{{robot=\"echo\"}}"));
    assert_eq!(link("robochat_robot_link_latency_seconds_count"), 3.0);
    assert!(link("robochat_robot_link_latency_seconds_sum") > 0.0);
    assert_eq!(link("robochat_robot_breaker_open"), 0.0);
    assert_eq!(link("robochat_robot_skipped_total"), 0.0);
}

#[test]
fn what_the_robot_remembers_of_a_connection_goes_when_it_closes() {
    let (server, addr) = serve_robot_with_metrics("embedded");
    let memory = || sample(&scrape(addr), "robochat_robot_memory_bytes");
    assert_eq!(memory(), 0.0);
    let mut client = Client::connect(server.addr);
    assert!(client.ask("小明", "my name is Ann").contains("Ann"));
    assert!(memory() > 0.0);
    // Another connection with the same username is someone else.
    let mut other = Client::connect(server.addr);
    assert!(!other.ask("小明", "what is my name").contains("Ann"));
    client.ask("小明", "exit");
    client.expect_closed();
    for _ in 0..100 {
        if memory() == 0.0 {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("the name was still remembered after its connection closed");
}

/// A client of the metrics port that sends a request head one byte at a time, every 100 ms,
/// until `stop` (or the server gives up on it); and its socket.
fn dribbler(addr: SocketAddr, stop: &Arc<AtomicBool>) -> (thread::JoinHandle<()>, TcpStream) {
    let stop = Arc::clone(stop);
    let mut stream = TcpStream::connect(addr).unwrap();
    let watched = stream.try_clone().unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    let thread = thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if stream.write_all(b"a").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    (thread, watched)
}

/// A scrape and how long it took.
fn timed_scrape(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let body = scrape(addr);
    assert!(body.contains("robochat_connections_open"));
    started.elapsed()
}

#[test]
fn a_dribbling_client_does_not_hold_up_scrapes() {
    let (_server, addr) = serve_with_metrics();
    let stop = Arc::new(AtomicBool::new(false));
    let (slow, _) = dribbler(addr, &stop);
    thread::sleep(Duration::from_millis(300)); // it is well into its head
    for _ in 0..3 {
        let took = timed_scrape(addr);
        // Served at once (a blocking endpoint took until the dribbler's timeout: seconds).
        assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
    }
    stop.store(true, Ordering::Relaxed);
    slow.join().unwrap();
}

#[test]
fn idle_clients_do_not_hold_up_scrapes_however_many() {
    let (_server, addr) = serve_with_metrics();
    // More than the endpoint serves at once: the oldest make way for new ones.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for _ in 0..3 {
        let took = timed_scrape(addr);
        assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
    }
    drop(idle);
}

#[test]
fn a_head_gets_one_deadline_as_a_whole() {
    let (_server, addr) = serve_with_metrics();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (slow, stream) = dribbler(addr, &stop);
    // It never stops sending, yet it is closed at the deadline of the whole exchange (5 s),
    // not kept while each byte comes in time.
    let events = common::poll_events(&stream, libc::POLLRDHUP, common::READ_TIMEOUT);
    let took = started.elapsed();
    assert!(events & common::HANGUP != 0, "still open after {took:?}");
    assert!(took < Duration::from_secs(8), "closed only after {took:?}");
    stop.store(true, Ordering::Relaxed);
    slow.join().unwrap();
}

#[test]
fn shutdown_never_waits_on_a_metrics_client() {
    let server = ServeProcess::start(&[
        "--robot",
        "echo",
        "--metrics",
        "127.0.0.1:0",
        "--shutdown-timeout",
        "1",
    ]);
    server.wait_for_log("metrics on http://");
    let addr: SocketAddr = {
        let log = server.log.lock().unwrap();
        let line = log
            .iter()
            .find(|l| l.contains("metrics on http://"))
            .unwrap();
        line.split("http://")
            .nth(1)
            .unwrap()
            .trim_end_matches("/metrics")
            .parse()
            .unwrap()
    };
    let mut server = server;
    let stop = Arc::new(AtomicBool::new(false));
    let (slow, _) = dribbler(addr, &stop);
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(), Some(0));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "exited only after {took:?}");
    stop.store(true, Ordering::Relaxed);
    slow.join().unwrap();
}
