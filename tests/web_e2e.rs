//! `robochat serve --robot openai,embedded` end to end: over TCP, with a fake OpenAI-compatible
//! API up, then down.
#![cfg(feature = "http")]

mod common;
mod fake_http;

use std::process::Command;

use common::{robochat_bin, Client, ServeProcess};
use fake_http::{FakeHttp, Reply};
use serde_json::json;

const KEY: &str = "sk-test-0123456789-secret";

fn completion(content: &str) -> Reply {
    Reply::json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]
    }))
}

fn serve_with_key(args: &[&str]) -> ServeProcess {
    let mut command = Command::new(robochat_bin());
    command.env("ROBOCHAT_OPENAI_KEY", KEY);
    ServeProcess::start_with(command, "127.0.0.1:0", args)
}

#[test]
fn the_llm_answers_while_it_is_up_and_the_embedded_robot_when_it_is_down() {
    let api = FakeHttp::start(vec![completion("Hello from the model!\nSecond line.")]);
    let url = format!("{}/v1", api.url());
    let server = serve_with_key(&[
        "--robot",
        "openai,embedded",
        "--openai-url",
        &url,
        "--model",
        "test-model",
        "--robot-timeout",
        "3",
    ]);
    let mut client = Client::connect(server.addr);
    assert_eq!(
        client.ask("bob", "hi there"),
        "Hello from the model! Second line."
    );
    let request = api.request();
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(request.json()["model"], "test-model");
    assert_eq!(request.json()["messages"][0]["content"], "hi there");

    drop(api); // the API goes down
    let reply = client.ask("bob", "你是谁");
    assert!(
        reply.contains("小图"),
        "the embedded robot should answer: {reply}"
    );
    assert!(!reply.contains(KEY));
    drop(server);
}

#[test]
fn with_no_robot_left_the_user_gets_an_error_line_and_the_key_stays_secret() {
    let api = FakeHttp::start(vec![Reply::status(
        401,
        format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#),
    )]);
    let url = format!("{}/v1", api.url());
    let server = serve_with_key(&["--robot", "openai", "--openai-url", &url]);
    let mut client = Client::connect(server.addr);
    // The user is told the kind of failure, with no URL, path or API message; the operator's
    // log says what to do.
    let line = client.ask("bob", "hello");
    assert_eq!(line, "ERR the robot could not answer");
    server.wait_for_log("the API key was rejected");

    drop(api);
    let line = client.ask("bob", "hello again");
    assert_eq!(line, "ERR the robot is unavailable; please try again later");
    // A new kind of failure is logged at once, right after the first.
    server.wait_for_log("connection refused");
    assert!(
        server.log.lock().unwrap().iter().all(|l| !l.contains(KEY)),
        "the key leaked into the log"
    );
}

#[test]
fn a_slow_api_gives_way_to_the_next_robot_within_the_timeout() {
    let api = FakeHttp::start(vec![
        completion("far too late").delay(std::time::Duration::from_secs(8)),
        completion("also too late").delay(std::time::Duration::from_secs(8)),
    ]);
    let url = format!("{}/v1", api.url());
    let server = serve_with_key(&[
        "--robot",
        "openai,embedded",
        "--openai-url",
        &url,
        "--robot-timeout",
        "1",
    ]);
    let mut client = Client::connect(server.addr);
    let started = std::time::Instant::now();
    let reply = client.ask("bob", "1+2等于几");
    let elapsed = started.elapsed();
    assert!(
        reply.contains('3'),
        "the embedded robot should answer: {reply}"
    );
    // The whole budget is 1 s, retry included; the margin is for a loaded machine.
    assert!(
        elapsed < std::time::Duration::from_secs(4),
        "answered after {elapsed:?}"
    );
}
