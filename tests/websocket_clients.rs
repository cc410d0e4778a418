//! The web listener with a real, independent WebSocket client: Python's `websockets` package
//! (its synchronous client, which checks everything the server sends against RFC 6455 and
//! offers permessage-deflate as browsers do), driven by `tests/fixtures/ws_client.py` against
//! the built binary, `robochat serve --web 127.0.0.1:0`.
//!
//! It needs a Python virtual environment with the pinned packages of
//! `tests/fixtures/web-requirements.txt`, which `.ci/run` makes, so it is not part of a plain
//! `cargo test`: run it with `cargo test --test websocket_clients -- --ignored`, with
//! `ROBOCHAT_WEB_PYTHON` naming that environment's python (default:
//! `target/web-venv/bin/python`).
#![cfg(feature = "web")]

mod common;
mod ws;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::ServeProcess;
use robochat::DEFAULT_GREETING;
use ws::{serve_web, GOODBYE, SHUTDOWN_NOTICE};

const WEB_MISSING: &str = "the web tests' Python packages are not installed: `python3 -m venv \
     target/web-venv && target/web-venv/bin/pip install --no-deps -r \
     tests/fixtures/web-requirements.txt` (or run .ci/run), or point ROBOCHAT_WEB_PYTHON at the \
     python of a virtual environment that has them";

/// The python of the virtual environment holding `websockets`: `ROBOCHAT_WEB_PYTHON`, or
/// `target/web-venv/bin/python` in this repository.
fn web_python() -> PathBuf {
    common::venv_python(
        "ROBOCHAT_WEB_PYTHON",
        "target/web-venv",
        "import websockets.sync.client",
        WEB_MISSING,
    )
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ws_client.py")
}

fn client_command(web: SocketAddr, scenario: &[&str]) -> Command {
    let mut command = Command::new(web_python());
    command
        .arg(script())
        .arg(format!("ws://{web}/ws"))
        .args(scenario)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a scenario of the Python client and returns what it saw, one event a line; fails with
/// its traceback if it failed. (Every step of the script waits at most 20 s.)
fn run_client(web: SocketAddr, scenario: &[&str]) -> Vec<String> {
    let output = client_command(web, scenario)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "the Python client failed ({}) in {scenario:?}.\nIt saw:\n{stdout}\nIt said:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The lines the client prints for `events`.
fn lines(events: &[(&str, &str)]) -> Vec<String> {
    events
        .iter()
        .map(|(kind, what)| format!("{kind} {what}"))
        .collect()
}

fn serve() -> (ServeProcess, SocketAddr) {
    serve_web(&["--robot", "echo"])
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn greeting_and_replies_in_order() {
    let (_server, web) = serve();
    assert_eq!(
        run_client(web, &["chat"]),
        lines(&[
            ("greeting", DEFAULT_GREETING),
            ("reply", "hello"),
            ("reply", "你好，机器人"),
            ("reply", "😀 emoji and ñ"),
            (
                "reply",
                "ERR expected USERNAME::TEXT (a name, two colons, then your message)"
            ),
            ("reply", "still here"),
        ])
    );
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn a_hundred_pipelined_messages_are_answered_in_order() {
    let (_server, web) = serve();
    let seen = run_client(web, &["pipeline", "100"]);
    let mut expected = vec![format!("greeting {DEFAULT_GREETING}")];
    expected.extend((0..100).map(|i| format!("reply message {i}")));
    assert_eq!(seen, expected);
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn a_message_of_max_line_bytes_is_answered_and_one_more_closes_with_1009() {
    let (_server, web) = serve_web(&[
        "--robot",
        "echo",
        "--max-line",
        "65536",
        "--max-reply",
        "65536",
    ]);
    assert_eq!(
        run_client(web, &["large", "65536"]),
        lines(&[
            ("greeting", DEFAULT_GREETING),
            ("reply", "65533 bytes, the same"),
            ("closed", "1009"),
        ])
    );
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn fragmented_messages_are_joined() {
    let (_server, web) = serve();
    let digits: String = (0..100).map(|i| char::from(b'0' + i % 10)).collect();
    assert_eq!(
        run_client(web, &["fragmented"]),
        lines(&[
            ("greeting", DEFAULT_GREETING),
            ("reply", "fragmented"),
            ("reply", "中文 and 😀"),
            ("reply", &digits),
            ("reply", "whole"),
        ])
    );
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn pings_get_their_pongs() {
    let (_server, web) = serve();
    let all: String = (0..125u8).map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        run_client(web, &["ping"]),
        lines(&[
            ("greeting", DEFAULT_GREETING),
            ("pong", "-"),
            ("pong", "70696e6721"),
            ("pong", "e4bda0e5a5bd"),
            ("pong", &all),
            ("reply", "after pings"),
        ])
    );
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn exit_says_goodbye_then_closes_with_1000() {
    let (_server, web) = serve();
    assert_eq!(
        run_client(web, &["exit"]),
        lines(&[
            ("greeting", DEFAULT_GREETING),
            ("reply", GOODBYE),
            ("closed", "1000"),
        ])
    );
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn the_clients_close_is_echoed() {
    let (_server, web) = serve();
    for code in ["1000", "1001", "4000"] {
        assert_eq!(
            run_client(web, &["close", code]),
            lines(&[("greeting", DEFAULT_GREETING), ("closed", code)])
        );
    }
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn a_binary_message_closes_with_1003() {
    let (_server, web) = serve();
    assert_eq!(
        run_client(web, &["binary"]),
        lines(&[("greeting", DEFAULT_GREETING), ("closed", "1003")])
    );
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn a_shutdown_says_so_then_closes_with_1001() {
    let (mut server, web) = serve();
    let mut child = client_command(web, &["shutdown"])
        .spawn()
        .expect("run the Python client");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        seen.push(line.trim_end().to_owned());
    }
    assert_eq!(
        seen,
        lines(&[("greeting", DEFAULT_GREETING), ("ready", "")])
            .iter()
            .map(|l| l.trim_end().to_owned())
            .collect::<Vec<_>>()
    );
    server.signal(libc::SIGTERM);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {rest}\n{stderr}");
    seen.extend(rest.lines().map(str::to_owned));
    assert_eq!(
        seen[2..],
        lines(&[("reply", SHUTDOWN_NOTICE), ("closed", "1001")])
    );
    assert_eq!(server.wait(), Some(0));
}

#[test]
#[ignore = "needs Python's websockets package; .ci/run installs it and runs this"]
fn a_slow_reply_does_not_hold_up_the_clients_keepalive_pings() {
    // The robot takes 3 s; the client pings every 0.25 s and gives up on a pong after 1 s.
    let (_server, web) = serve_web(&["--robot", "echo", "--robot-delay", "3000"]);
    assert_eq!(
        run_client(web, &["keepalive"]),
        lines(&[("greeting", DEFAULT_GREETING), ("reply", "slow")])
    );
}
