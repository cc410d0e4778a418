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
    let server = serve_openai(&api, &["--robot-timeout", "3"]);
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

fn serve_openai(api: &FakeHttp, extra: &[&str]) -> ServeProcess {
    let url = format!("{}/v1", api.url());
    let mut args = vec![
        "--robot",
        "openai,embedded",
        "--openai-url",
        &url,
        "--model",
        "test-model",
    ];
    args.extend_from_slice(extra);
    serve_with_key(&args)
}

/// The contents of the messages of the `n`th chat request.
fn sent_messages(api: &FakeHttp, n: usize) -> Vec<String> {
    api.requests()[n].json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn two_people_with_the_same_username_never_share_a_conversation() {
    // The tutorial's client sends every message as 小明.
    let api = FakeHttp::start(vec![
        completion("noted"),
        completion("hello"),
        completion("again"),
    ]);
    let server = serve_openai(&api, &[]);
    let mut alice = Client::connect(server.addr);
    let mut bob = Client::connect(server.addr);
    assert_eq!(alice.ask("小明", "my password is swordfish"), "noted");
    assert_eq!(bob.ask("小明", "what did I just tell you?"), "hello");
    assert_eq!(sent_messages(&api, 1), ["what did I just tell you?"]);
    // Alice's own conversation goes on.
    assert_eq!(alice.ask("小明", "and now?"), "again");
    assert_eq!(
        sent_messages(&api, 2),
        ["my password is swordfish", "noted", "and now?"]
    );
}

#[test]
fn with_history_scope_user_the_same_username_shares_one_conversation() {
    let api = FakeHttp::start(vec![completion("noted"), completion("you said so")]);
    let server = serve_openai(&api, &["--history-scope", "user"]);
    let mut first = Client::connect(server.addr);
    assert_eq!(first.ask("alice", "remember 42"), "noted");
    drop(first);
    let mut second = Client::connect(server.addr);
    assert_eq!(second.ask("alice", "what number?"), "you said so");
    assert_eq!(
        sent_messages(&api, 1),
        ["remember 42", "noted", "what number?"]
    );
}

fn past_context() -> Reply {
    Reply::status(
        400,
        r#"{"error":{"code":400,"message":"request (3733 tokens) exceeds the available context size (2048 tokens), try increasing it","type":"exceed_context_size_error"}}"#,
    )
}

#[test]
fn past_the_models_context_the_oldest_turns_go_and_the_request_is_retried() {
    let api = FakeHttp::start(vec![
        completion("one"),
        completion("two"),
        past_context(),
        completion("three"),
        completion("four"),
    ]);
    let server = serve_openai(&api, &[]);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask("bob", "first"), "one");
    assert_eq!(client.ask("bob", "second"), "two");
    // Sent with both turns, refused, sent again with the newer half.
    assert_eq!(client.ask("bob", "third"), "three");
    assert_eq!(
        sent_messages(&api, 2),
        ["first", "one", "second", "two", "third"]
    );
    assert_eq!(sent_messages(&api, 3), ["second", "two", "third"]);
    // The dropped turn stays dropped.
    assert_eq!(client.ask("bob", "fourth"), "four");
    assert_eq!(
        sent_messages(&api, 4),
        ["second", "two", "third", "three", "fourth"]
    );
}

#[test]
fn a_message_too_long_for_the_model_on_its_own_is_answered_plainly() {
    let api = FakeHttp::start(vec![past_context(), completion("short is fine")]);
    let server = serve_openai(&api, &["--max-line", "65536"]);
    let mut client = Client::connect(server.addr);
    let started = std::time::Instant::now();
    let line = client.ask("bob", &"9".repeat(10_000));
    assert_eq!(
        line,
        "ERR your message is too long for the model; please send a shorter one"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Nothing of it was kept: the next request carries only the next message.
    assert_eq!(client.ask("bob", "hi"), "short is fine");
    assert_eq!(sent_messages(&api, 1), ["hi"]);
}

#[test]
fn a_conversation_is_kept_within_history_chars() {
    let api = FakeHttp::start(vec![completion("ok"), completion("ok"), completion("ok")]);
    let server = serve_openai(&api, &["--history-chars", "30"]);
    let mut client = Client::connect(server.addr);
    client.ask("bob", &"x".repeat(40)); // alone past the limit: not kept
    client.ask("bob", "short one"); // 9 + 2 characters: kept
    client.ask("bob", "next");
    assert_eq!(sent_messages(&api, 1), ["short one"]);
    assert_eq!(sent_messages(&api, 2), ["short one", "ok", "next"]);
}

#[test]
fn configuration_mistakes_are_logged_at_start_in_plain_words() {
    let api = FakeHttp::start(vec![]);
    api.set_models(Reply::json(
        json!({"object": "list", "data": [{"id": "llama3.2"}, {"id": "qwen2.5"}]}),
    ));
    let url = format!("{}/v1", api.url());
    let typo = serve_with_key(&[
        "--robot",
        "openai,embedded",
        "--openai-url",
        &url,
        "--model",
        "gpt-4o-typo",
    ]);
    typo.wait_for_log("does not list model \"gpt-4o-typo\" (it lists \"llama3.2\", \"qwen2.5\")");
    assert_eq!(
        api.model_requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    let (_refusing, port) = common::refusing_port();
    let down = serve_with_key(&[
        "--robot",
        "openai,embedded",
        "--openai-url",
        &format!("http://127.0.0.1:{port}/v1"),
    ]);
    down.wait_for_log("connection refused");

    let right = FakeHttp::start(vec![]);
    let server = serve_openai(&right, &[]);
    server.wait_for_log("serves model \"test-model\"");
    let log = typo.log.lock().unwrap().join("\n") + &down.log.lock().unwrap().join("\n");
    assert!(!log.contains(KEY), "the key leaked into the log");
}

#[test]
fn a_dead_model_is_skipped_by_everyone_after_three_failures_then_probed_back() {
    // Every call times out (the API answers after 30 s), as a frozen model server does.
    let slow = || completion("too late").delay(std::time::Duration::from_secs(30));
    let api = FakeHttp::start(vec![slow(), slow(), slow()]);
    let server = serve_openai(
        &api,
        &[
            "--robot-timeout",
            "0.5",
            "--breaker-cooldown",
            "4",
            "--workers",
            "4",
        ],
    );
    let mut client = Client::connect(server.addr);
    for _ in 0..3 {
        assert!(client.ask("bob", "你是谁").contains("小图"));
    }
    server.wait_for_log("robot openai failed 3 times in a row");
    // Open: twelve people at once get the embedded robot's answer at once, no call made.
    let started = std::time::Instant::now();
    let mut people: Vec<Client> = (0..12).map(|_| Client::connect(server.addr)).collect();
    for person in &mut people {
        person.send("小明::你是谁\n");
    }
    for person in &mut people {
        assert!(person.line().contains("小图"));
    }
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    assert_eq!(api.requests().len(), 3, "no call while the breaker is open");
    // Back up: after the cool-down, one message probes the model and it answers again.
    api.push(completion("I am back"));
    // (4 s from the third failure: room for the twelve on a slow machine.)
    std::thread::sleep(std::time::Duration::from_millis(4100));
    assert_eq!(client.ask("bob", "hello?"), "I am back");
    server.wait_for_log("robot openai answers again");
}

#[test]
fn at_the_default_log_level_no_message_is_logged() {
    let api = FakeHttp::start(vec![completion("one"), completion("two")]);
    let url = format!("{}/v1", api.url());
    let mut command = Command::new(robochat_bin());
    command.env_remove("RUST_LOG").env("RUST_LOG", "");
    let server = ServeProcess::start_with(
        command,
        "127.0.0.1:0",
        &[
            "--robot",
            "openai",
            "--openai-url",
            &url,
            "--model",
            "test-model",
        ],
    );
    server.wait_for_log("serves model");
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask("bob", "hello"), "one");
    assert_eq!(client.ask("bob", "again"), "two");
    drop(client);
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        !log.contains("DEBUG") && !log.contains("ureq") && !log.contains("hello"),
        "{log}"
    );
}

#[test]
fn max_tokens_and_temperature_go_to_the_model() {
    let api = FakeHttp::start(vec![completion("a"), completion("b")]);
    let server = serve_openai(&api, &["--max-tokens", "64", "--temperature", "0.25"]);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask("bob", "hi"), "a");
    let sent = api.request().json();
    assert_eq!(
        (sent["max_tokens"].as_u64(), sent["temperature"].as_f64()),
        (Some(64), Some(0.25))
    );
    // Without --temperature the server's own applies: none is sent.
    drop(server);
    let server = serve_openai(&api, &[]);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask("bob", "hi"), "b");
    let sent = api.requests()[1].json();
    assert_eq!(sent["max_tokens"].as_u64(), Some(512));
    assert!(sent.get("temperature").is_none());
}

#[test]
fn a_message_that_waited_for_the_model_is_answered_by_the_next_robot_in_time() {
    // One worker; the model takes 1 s of a 1.5 s budget for each message. Two people at once:
    // the second waits 1 s for the worker, and its call, with 0.5 s left, times out; the
    // embedded robot answers it within the budget, and the model goes on answering. (That
    // such failures do not count against the model's breaker is tested in robot::chain.)
    let slow = || completion("in time").delay(std::time::Duration::from_millis(1000));
    let api = FakeHttp::start((0..12).map(|_| slow()).collect());
    let server = serve_openai(
        &api,
        &[
            "--robot-timeout",
            "1.5",
            "--workers",
            "1",
            "--breaker-cooldown",
            "60",
        ],
    );
    for round in 0..3 {
        let mut first = Client::connect(server.addr);
        let mut second = Client::connect(server.addr);
        first.send("a::hello\n");
        second.send("b::hello\n");
        // Whichever the loop took first, the model answers it; the embedded robot answers the
        // one that waited.
        let mut lines = [first.line(), second.line()];
        lines.sort_by_key(|line| line != "in time");
        assert_eq!(lines[0], "in time", "round {round}");
        assert!(
            lines[1] != "in time" && !lines[1].starts_with("ERR"),
            "round {round}: {lines:?}"
        );
    }
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask("c", "still there?"), "in time");
}
