//! `robochat bench` driven as a user would: against `robochat serve` processes on free ports
//! (their line port, and with `--web` their web listener), and against a port where nothing
//! listens. Functional checks only: no figure is asserted, since test machines are noisy.

mod common;

use std::process::{Command, Output};

use common::{refusing_port, robochat_bin, web_addr, ServeProcess};

/// Every key `--json` always prints (null when it does not apply).
const KEYS: &[&str] = &[
    "connections",
    "idle",
    "messages",
    "seconds",
    "msgs_per_sec",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "errors",
    "connect_failures",
    "connect_p50_us",
    "connect_p99_us",
    "connect_max_us",
    "server_rss_before_bytes",
    "server_rss_end_bytes",
    "server_rss_bytes_per_idle",
    "server_rss_bytes_per_idle_after_message",
];

/// A closed loop whose idle connections chat once, with the server's memory measured: the
/// arguments after `--connect ADDR`, before `--server-pid PID`.
const CLOSED_LOOP: &[&str] = &[
    "--connections",
    "4",
    "--idle",
    "3",
    "--idle-message",
    "--duration",
    "1",
    "--warmup",
    "0.2",
    "--json",
];

/// An open loop at 300 messages a second: the arguments after `--connect ADDR`.
const OPEN_LOOP: &[&str] = &[
    "--connections",
    "3",
    "--rate",
    "300",
    "--duration",
    "0.5",
    "--warmup",
    "0.1",
    "--json",
];

fn bench(args: &[&str]) -> Output {
    Command::new(robochat_bin())
        .arg("bench")
        .args(args)
        .output()
        .expect("run robochat bench")
}

/// The one JSON object on stdout, checked for shape.
fn json_of(output: &Output) -> String {
    let stdout = String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "bench panicked: {stderr}");
    let json = stdout.trim();
    assert!(
        json.starts_with('{') && json.ends_with('}') && json.lines().count() == 1,
        "expected one JSON object on stdout, got {stdout:?} (stderr: {stderr})"
    );
    json.to_owned()
}

/// The raw value of a top-level key whose value is a number or null (a minimal parser: the
/// object is flat, and the keys read here never hold strings).
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no key {key} in {json}"))
        + needle.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim()
}

fn number(json: &str, key: &str) -> f64 {
    let raw = field(json, key);
    raw.parse()
        .unwrap_or_else(|_| panic!("{key} is {raw}, expected a number, in {json}"))
}

#[test]
fn bench_reports_every_key_against_robochat() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let addr = server.addr.to_string();
    let pid = server.pid().to_string();
    let output = bench(&[&["--connect", &addr], CLOSED_LOOP, &["--server-pid", &pid]].concat());
    let json = json_of(&output);
    assert!(
        output.status.success(),
        "exit status {:?}: {json}",
        output.status
    );
    for key in KEYS {
        field(&json, key);
    }
    assert_eq!(number(&json, "connections"), 4.0);
    assert_eq!(number(&json, "idle"), 3.0);
    assert!(number(&json, "messages") > 0.0, "{json}");
    assert!(number(&json, "msgs_per_sec") > 0.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    assert_eq!(number(&json, "connect_failures"), 0.0, "{json}");
    for key in [
        "p50_us",
        "p99_us",
        "max_us",
        "connect_p50_us",
        "connect_max_us",
    ] {
        assert!(number(&json, key) >= 1.0, "{key} in {json}");
    }
    assert!(number(&json, "p50_us") <= number(&json, "max_us"), "{json}");
    // Measured, so numbers (a per-connection growth may be negative: memory is measured in
    // pages and the allocator may give some back).
    for key in [
        "server_rss_before_bytes",
        "server_rss_after_idle_bytes",
        "server_rss_after_idle_message_bytes",
        "server_rss_end_bytes",
        "server_rss_bytes_per_idle",
        "server_rss_bytes_per_idle_after_message",
    ] {
        number(&json, key);
    }
    assert!(number(&json, "server_rss_before_bytes") > 0.0, "{json}");
}

#[test]
fn bench_without_server_pid_leaves_memory_null_and_prints_a_table() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let addr = server.addr.to_string();
    let common = [
        "--connect",
        &addr,
        "--connections",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0",
    ];
    let json = json_of(&bench(&[&common[..], &["--json"]].concat()));
    assert_eq!(field(&json, "server_rss_bytes_per_idle"), "null");
    assert_eq!(field(&json, "server_rss_before_bytes"), "null");

    let table = bench(&common);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    for label in ["messages", "latency", "errors", "connect"] {
        assert!(text.contains(label), "no {label} in {text}");
    }
}

#[test]
fn open_loop_runs_at_a_rate() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let addr = server.addr.to_string();
    let json = json_of(&bench(&[&["--connect", &addr], OPEN_LOOP].concat()));
    assert!(number(&json, "messages") > 0.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    // 300 messages a second is far below what the server answers: the rate is kept.
    assert!(number(&json, "due") > 0.0, "{json}");
    assert_eq!(field(&json, "rate_kept"), "true", "{json}");
}

#[test]
fn an_open_loop_rate_the_server_cannot_keep_is_reported_as_such() {
    // One worker that takes 20 ms a message answers about 50 a second; 500 are due.
    let server = ServeProcess::start(&["--robot", "echo", "--workers", "1", "--robot-delay", "20"]);
    let addr = server.addr.to_string();
    let args = [
        "--connect",
        &addr,
        "--connections",
        "5",
        "--rate",
        "500",
        "--duration",
        "1",
        "--warmup",
        "0",
    ];
    let output = bench(&args);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("RATE NOT KEPT"), "{table}");
    assert!(table.contains("not the server's capacity"), "{table}");
    let json = json_of(&bench(&[&args[..], &["--json"]].concat()));
    assert_eq!(field(&json, "rate_kept"), "false", "{json}");
    assert!(number(&json, "messages") < number(&json, "due"), "{json}");
}

#[test]
fn legacy_framing_works_against_a_legacy_server() {
    let server = ServeProcess::start(&["--robot", "echo", "--framing", "legacy"]);
    let addr = server.addr.to_string();
    let output = bench(&[
        "--connect",
        &addr,
        "--connections",
        "3",
        "--framing",
        "legacy",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--json",
    ]);
    let json = json_of(&output);
    assert!(output.status.success(), "{json}");
    assert!(number(&json, "messages") > 0.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    assert_eq!(number(&json, "connect_failures"), 0.0, "{json}");
}

#[test]
fn web_drives_websocket_connections_like_lines() {
    let server = ServeProcess::start(&["--robot", "echo", "--web", "127.0.0.1:0"]);
    let web = web_addr(&server).to_string();
    let pid = server.pid().to_string();
    // Closed loop, idle connections that chat once, the server's memory: as over lines.
    let web_connect = ["--web", "--connect", &web];
    let output = bench(&[&web_connect[..], CLOSED_LOOP, &["--server-pid", &pid]].concat());
    let json = json_of(&output);
    assert!(output.status.success(), "{json}");
    for key in KEYS {
        field(&json, key);
    }
    assert_eq!(field(&json, "framing"), "\"websocket\"", "{json}");
    assert_eq!(number(&json, "connections_open"), 4.0, "{json}");
    assert_eq!(number(&json, "idle_open"), 3.0, "{json}");
    assert!(number(&json, "messages") > 0.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    assert_eq!(number(&json, "connect_failures"), 0.0, "{json}");
    assert!(number(&json, "p50_us") >= 1.0, "{json}");
    number(&json, "server_rss_bytes_per_idle_after_message");

    // Open loop.
    let json = json_of(&bench(&[&web_connect[..], OPEN_LOOP].concat()));
    assert!(number(&json, "messages") > 0.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    assert_eq!(field(&json, "rate_kept"), "true", "{json}");

    // The line port is not the web listener: every connect fails, saying so.
    let line = server.addr.to_string();
    let output = bench(&[
        "--web",
        "--connect",
        &line,
        "--connections",
        "2",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--json",
    ]);
    let json = json_of(&output);
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert_eq!(number(&json, "connect_failures"), 2.0, "{json}");
    assert!(json.contains("web listener"), "{json}");
}

#[test]
fn a_full_web_listener_is_a_connect_failure() {
    let server = ServeProcess::start(&[
        "--robot",
        "echo",
        "--web",
        "127.0.0.1:0",
        "--max-connections",
        "2",
    ]);
    let web = web_addr(&server).to_string();
    let json = json_of(&bench(&[
        "--web",
        "--connect",
        &web,
        "--connections",
        "4",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--json",
    ]));
    assert_eq!(number(&json, "connect_failures"), 2.0, "{json}");
    assert!(json.contains("503"), "{json}");
    assert!(number(&json, "messages") > 0.0, "{json}");
}

#[test]
fn churn_measures_handshakes_over_lines_and_websocket() {
    let server = ServeProcess::start(&["--robot", "echo", "--web", "127.0.0.1:0"]);
    let line = server.addr.to_string();
    let web = web_addr(&server).to_string();
    let common = [
        "--churn",
        "--connections",
        "3",
        "--idle",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
    ];
    for target in [&["--connect", &line][..], &["--web", "--connect", &web]] {
        let output = bench(&[target, &common[..]].concat());
        let json = json_of(&output);
        assert!(output.status.success(), "{json}");
        assert_eq!(field(&json, "mode"), "\"churn\"", "{json}");
        assert!(number(&json, "handshakes") > 0.0, "{json}");
        assert!(number(&json, "handshakes_per_sec") > 0.0, "{json}");
        assert!(number(&json, "p50_us") >= 1.0, "{json}");
        assert_eq!(number(&json, "messages"), 0.0, "{json}");
        assert_eq!(number(&json, "errors"), 0.0, "{json}");
        assert_eq!(number(&json, "connect_failures"), 0.0, "{json}");
        assert_eq!(number(&json, "idle_open"), 2.0, "{json}");
    }
    let table = bench(&["--web", "--connect", &web, "--churn", "--duration", "0.2"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("handshakes"), "{text}");
    // Each connection was closed by the server when asked (`exit`, a close frame): no
    // connection ended in a failure.
    let log = server.log.lock().unwrap();
    assert!(!log.iter().any(|line| line.contains("failed")), "{log:#?}");
}

#[test]
fn refused_connections_are_counted_not_fatal() {
    let (_socket, port) = refusing_port();
    let addr = format!("127.0.0.1:{port}");
    let output = bench(&[
        "--connect",
        &addr,
        "--connections",
        "3",
        "--idle",
        "2",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--json",
    ]);
    let json = json_of(&output);
    // Documented: exit status 1 when no connection at all could be opened, report printed.
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert_eq!(number(&json, "connect_failures"), 5.0, "{json}");
    assert_eq!(number(&json, "messages"), 0.0, "{json}");
    assert_eq!(field(&json, "p50_us"), "null");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could be opened"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["--rate", "10", "--framing", "legacy"][..],
        &["--message", "exit"],
        &["--duration", "0"],
        &["--framing", "sometimes"],
        &["--web", "--framing", "legacy"],
        &["--churn", "--rate", "10"],
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    let help = bench(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--connect",
        "--connections",
        "--idle",
        "--idle-message",
        "--duration",
        "--warmup",
        "--rate",
        "--message",
        "--user",
        "--framing",
        "--threads",
        "--connect-concurrency",
        "--server-pid",
        "--json",
        "--web",
        "--churn",
    ] {
        assert!(text.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn connections_can_come_from_several_source_addresses() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let addr = server.addr.to_string();
    let json = json_of(&bench(&[
        "--connect",
        &addr,
        "--connections",
        "4",
        "--idle",
        "6",
        "--source-ip",
        "127.0.0.2,127.0.0.3",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
    ]));
    assert!(number(&json, "messages") > 0.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    assert_eq!(number(&json, "connect_failures"), 0.0, "{json}");
    let output = bench(&[
        "--connect",
        &addr,
        "--source-ip",
        "::1",
        "--duration",
        "0.1",
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an IPv6 source for an IPv4 server is refused"
    );
}
