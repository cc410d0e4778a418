//! The web robots against fake APIs on loopback: the exact requests they send, every kind of
//! reply, every API error, and faults (timeouts, refused connections, 429, 5xx, bad JSON).
#![cfg(feature = "http")]

mod common;
mod fake_http;

use std::thread;
use std::time::{Duration, Instant};

use fake_http::{FakeHttp, Reply};
use robochat::robot::http::{
    HttpOptions, OpenAiConfig, OpenAiRobot, Tuling2Robot, TulingRobot, DEFAULT_OPENAI_URL,
    DEFAULT_TULING2_URL, DEFAULT_TULING_URL,
};
use robochat::{Robot, RobotError};
use serde_json::{json, Value};

const KEY: &str = "sekrit-KEY-123";
/// Text that breaks naive query building: separators, escapes, spaces and CJK.
const NASTY: &str = "a&b=c#d+e%f g 中文?/";

/// Generous limits for tests that do not test timing.
fn options() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
    }
}

fn tuling(server: &FakeHttp) -> TulingRobot {
    TulingRobot::new(&server.url(), KEY.to_owned(), options())
}

fn tuling2(server: &FakeHttp) -> Tuling2Robot {
    Tuling2Robot::new(&server.url(), KEY.to_owned(), options())
}

fn openai_config(url: String) -> OpenAiConfig {
    OpenAiConfig {
        base_url: url,
        key: Some(KEY.to_owned()),
        model: "tiny".to_owned(),
        ..OpenAiConfig::default()
    }
}

fn openai(server: &FakeHttp) -> OpenAiRobot {
    OpenAiRobot::new(openai_config(format!("{}/v1", server.url())), options())
}

fn completion(content: &str) -> Reply {
    Reply::json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }))
}

fn failed(result: Result<String, RobotError>) -> String {
    match result {
        Err(RobotError::Failed(why)) => {
            assert!(!why.contains(KEY), "key in error: {why}");
            why
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn unavailable(result: Result<String, RobotError>) -> String {
    match result {
        Err(RobotError::Unavailable(why)) => {
            assert!(!why.contains(KEY), "key in error: {why}");
            why
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tuling v1

#[test]
fn defaults_and_names() {
    assert_eq!(DEFAULT_TULING_URL, "http://www.tuling123.com");
    assert_eq!(DEFAULT_TULING2_URL, "http://openapi.tuling123.com");
    assert_eq!(DEFAULT_OPENAI_URL, "http://localhost:11434/v1");
    let options = HttpOptions::default();
    assert_eq!(options.timeout, Duration::from_secs(10));
    assert_eq!(options.connect_timeout, Duration::from_secs(3));
    let config = OpenAiConfig::default();
    assert_eq!(config.base_url, DEFAULT_OPENAI_URL);
    assert_eq!(config.model, "llama3.2");
    assert_eq!(config.key, None);
    assert_eq!(config.system_prompt, None);
    assert_eq!(
        (config.history_turns, config.max_users, config.max_tokens),
        (8, 10_000, 512)
    );

    let v1 = TulingRobot::new(DEFAULT_TULING_URL, KEY.into(), HttpOptions::default());
    let v2 = Tuling2Robot::new(DEFAULT_TULING2_URL, KEY.into(), HttpOptions::default());
    let ai = OpenAiRobot::new(
        OpenAiConfig {
            key: Some(KEY.into()),
            ..OpenAiConfig::default()
        },
        HttpOptions::default(),
    );
    let robots: [&dyn Robot; 3] = [&v1, &v2, &ai];
    assert_eq!(robots.map(|r| r.name()), ["tuling", "tuling2", "openai"]);
    assert!(robots.iter().all(|r| !r.never_blocks()));
    for debug in [format!("{v1:?}"), format!("{v2:?}"), format!("{ai:?}")] {
        assert!(!debug.contains(KEY), "key in Debug: {debug}");
        assert!(debug.contains("<hidden>"), "{debug}");
    }
}

#[test]
fn tuling_sends_an_exactly_encoded_get() {
    let server = FakeHttp::start(vec![Reply::json(json!({"code": 100000, "text": "你好"}))]);
    let reply = tuling(&server).reply("bob-42!", NASTY);
    assert_eq!(reply.unwrap(), "你好");

    let request = server.request();
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/openapi/api");
    // Three parameters, none injected by the text's `&` and `=`, and nothing lost to `#`.
    let names: Vec<&str> = request.params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["key", "info", "userid"]);
    assert_eq!(request.param("key"), Some(KEY));
    assert_eq!(request.param("info"), Some(NASTY));
    assert_eq!(request.param("userid"), Some("bob42"));
    let raw = request.raw_query.unwrap();
    assert!(
        raw.contains("info=a%26b%3Dc%23d%2Be%25f%20g%20%E4%B8%AD%E6%96%87%3F%2F"),
        "{raw}"
    );
    assert!(request.body.is_empty());
}

#[test]
fn tuling_user_ids_are_alphanumeric_bounded_and_distinct() {
    let server = FakeHttp::start(
        (0..4)
            .map(|_| Reply::json(json!({"code": 100000, "text": "ok"})))
            .collect(),
    );
    let robot = tuling(&server);
    for user in ["王", "李", "王", &"x_".repeat(40)] {
        robot.reply(user, "hi").unwrap();
    }
    let ids: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.param("userid").unwrap().to_owned())
        .collect();
    for id in &ids {
        assert!(!id.is_empty() && id.len() <= 32, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }
    assert_ne!(ids[0], ids[1], "different users, different contexts");
    assert_eq!(ids[0], ids[2], "the same user keeps their id");
    assert_eq!(ids[3], "x".repeat(32));
}

#[test]
fn tuling_link_reply() {
    let server = FakeHttp::start(vec![Reply::json(json!({
        "code": 200000, "text": "亲，已帮你找到图片", "url": "http://m.image.so.com/i?q=cat"
    }))]);
    assert_eq!(
        tuling(&server).reply("bob", "cat pictures").unwrap(),
        "亲，已帮你找到图片 http://m.image.so.com/i?q=cat"
    );
}

#[test]
fn tuling_news_list_shows_three_items_on_one_line() {
    let item = |n: u32| json!({"article": format!("Story {n}"), "source": "Daily", "icon": "", "detailurl": format!("http://n/{n}")});
    let server = FakeHttp::start(vec![Reply::json(json!({
        "code": 302000, "text": "亲，已帮您找到相关新闻",
        "list": [item(1), item(2), item(3), item(4)],
    }))]);
    assert_eq!(
        tuling(&server).reply("bob", "news").unwrap(),
        "亲，已帮您找到相关新闻: 1. Story 1 (Daily) http://n/1; 2. Story 2 (Daily) http://n/2; \
         3. Story 3 (Daily) http://n/3"
    );
}

#[test]
fn tuling_recipe_list() {
    let server = FakeHttp::start(vec![Reply::json(json!({
        "code": 308000, "text": "亲，已帮您找到菜谱信息",
        "list": [
            {"name": "鱼香肉丝", "icon": "", "info": "猪肉、木耳", "detailurl": "http://r/1"},
            {"name": "宫保鸡丁", "info": "", "detailurl": "http://r/2"},
        ],
    }))]);
    assert_eq!(
        tuling(&server).reply("bob", "recipes").unwrap(),
        "亲，已帮您找到菜谱信息: 1. 鱼香肉丝 (猪肉、木耳) http://r/1; 2. 宫保鸡丁 http://r/2"
    );
}

#[test]
fn tuling_error_codes_are_clear_errors() {
    let cases: [(i64, &str); 5] = [
        (
            40001,
            "the API key was rejected (40001); check ROBOCHAT_TULING_KEY",
        ),
        (40002, "the message text was empty (40002)"),
        (40004, "the daily quota is used up (40004)"),
        (40007, "the request format was rejected (40007)"),
        (40003, "error 40003: 当前账号不可用"),
    ];
    let server = FakeHttp::start(
        cases
            .iter()
            .map(|(code, _)| {
                let text = if *code == 40003 {
                    "当前账号不可用"
                } else {
                    "error"
                };
                Reply::json(json!({"code": code, "text": text}))
            })
            .collect(),
    );
    let robot = tuling(&server);
    for (code, expected) in cases {
        let why = failed(robot.reply("bob", "hi"));
        assert_eq!(why, format!("tuling: {expected}"), "code {code}");
    }
    // API-level errors are not retried.
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn tuling_key_never_appears_in_errors() {
    // The v1 URL carries the key in its query: no failure may show it.
    let server = FakeHttp::start(vec![
        Reply::status(401, "no"),
        Reply::status(500, format!("{{\"text\":\"bad key {KEY}\"}}")),
        Reply::status(500, format!("{{\"text\":\"bad key {KEY}\"}}")),
        Reply::status(200, "<html>not json"),
        Reply::json(json!({"code": 40001, "text": format!("key {KEY} is wrong")})),
        Reply::json(json!({"code": 49999, "text": format!("key {KEY} is wrong")})),
    ]);
    let robot = tuling(&server);
    assert!(failed(robot.reply("bob", "hi")).contains("HTTP 401"));
    let why = unavailable(robot.reply("bob", "hi"));
    assert!(
        why.contains("HTTP 500") && why.contains("<hidden>"),
        "{why}"
    );
    assert!(failed(robot.reply("bob", "hi")).contains("malformed JSON"));
    failed(robot.reply("bob", "hi"));
    let why = failed(robot.reply("bob", "hi"));
    assert!(why.contains("49999") && why.contains("<hidden>"), "{why}");

    let (_reserved, port) = common::refusing_port();
    let robot = TulingRobot::new(&format!("http://127.0.0.1:{port}"), KEY.into(), options());
    let why = unavailable(robot.reply("bob", "hi"));
    assert!(why.contains("connection refused"), "{why}");

    let slow = FakeHttp::start(vec![Reply::json(json!({})).delay(Duration::from_secs(5))]);
    let robot = TulingRobot::new(&slow.url(), KEY.into(), short_timeout());
    let why = unavailable(robot.reply("bob", "hi"));
    assert!(why.contains("no answer within"), "{why}");
}

// ---------------------------------------------------------------------------------------------
// Tuling v2

#[test]
fn tuling2_posts_the_documented_json_and_joins_results() {
    let server = FakeHttp::start(vec![Reply::json(json!({
        "intent": {"code": 10005, "intentName": "", "actionName": "", "parameters": {"nearby_place": "酒店"}},
        "results": [
            {"groupType": 1, "resultType": "url", "values": {"url": "http://m.elong.com/hotel/"}},
            {"groupType": 1, "resultType": "text", "values": {"text": "亲，已帮你找到相关酒店信息"}},
            {"groupType": 1, "resultType": "voice", "values": {"voice": "http://v/1.mp3"}},
        ],
    }))]);
    let reply = tuling2(&server).reply("Alice 99", NASTY).unwrap();
    assert_eq!(
        reply,
        "亲，已帮你找到相关酒店信息 http://m.elong.com/hotel/"
    );

    let request = server.request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/openapi/api/v2");
    assert_eq!(request.raw_query, None);
    assert!(request
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(
        request.json(),
        json!({
            "reqType": 0,
            "perception": {"inputText": {"text": NASTY}},
            "userInfo": {"apiKey": KEY, "userId": "Alice99"},
        })
    );
}

#[test]
fn tuling2_news() {
    let server = FakeHttp::start(vec![Reply::json(json!({
        "intent": {"code": 10003},
        "results": [
            {"resultType": "text", "values": {"text": "新闻来了"}},
            {"resultType": "news", "values": {"news": [
                {"name": "A", "info": "X报", "detailurl": "http://a"},
                {"name": "B", "info": "Y报", "detailurl": "http://b"},
                {"name": "C", "detailurl": "http://c"},
                {"name": "D", "detailurl": "http://d"},
            ]}},
        ],
    }))]);
    assert_eq!(
        tuling2(&server).reply("bob", "news").unwrap(),
        "新闻来了 1. A (X报) http://a; 2. B (Y报) http://b; 3. C http://c"
    );
}

#[test]
fn tuling2_error_codes_are_clear_errors() {
    let cases: [(i64, &str); 7] = [
        (4003, "the daily quota is used up (4003)"),
        (
            4007,
            "the API key was rejected (4007); check ROBOCHAT_TULING_KEY",
        ),
        (5000, "Tuling found no answer (5000)"),
        (6000, "Tuling does not support this request yet (6000)"),
        (4000, "the request format was rejected (4000)"),
        (4602, "the message is too long for Tuling (4602)"),
        (4999, "error 4999: 出错了"),
    ];
    let server = FakeHttp::start(
        cases
            .iter()
            .map(|(code, _)| {
                Reply::json(json!({
                    "intent": {"code": code},
                    "results": [{"groupType": 0, "resultType": "text", "values": {"text": "出错了"}}],
                }))
            })
            .collect(),
    );
    let robot = tuling2(&server);
    for (code, expected) in cases {
        assert_eq!(
            failed(robot.reply("bob", "hi")),
            format!("tuling2: {expected}"),
            "code {code}"
        );
    }
    assert_eq!(server.requests().len(), cases.len());
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible

#[test]
fn openai_sends_model_system_prompt_history_and_key() {
    let server = FakeHttp::start(vec![completion("  Hello, Bob!\n"), completion("42")]);
    let robot = OpenAiRobot::new(
        OpenAiConfig {
            system_prompt: Some("Be brief.".into()),
            max_tokens: 64,
            ..openai_config(format!("{}/v1/", server.url()))
        },
        options(),
    );
    assert_eq!(robot.reply("bob", "Hi, I'm Bob").unwrap(), "Hello, Bob!");
    assert_eq!(robot.reply("bob", NASTY).unwrap(), "42");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(
            request.header("authorization"),
            Some(&*format!("Bearer {KEY}"))
        );
        assert!(request
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
    }
    let expected = |messages: Value| json!({"model": "tiny", "messages": messages, "max_tokens": 64, "stream": false});
    assert_eq!(
        requests[0].json(),
        expected(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi, I'm Bob"},
        ]))
    );
    assert_eq!(
        requests[1].json(),
        expected(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi, I'm Bob"},
            {"role": "assistant", "content": "Hello, Bob!"},
            {"role": "user", "content": NASTY},
        ]))
    );
}

#[test]
fn openai_without_key_sends_no_authorization() {
    let server = FakeHttp::start(vec![completion("hi")]);
    let robot = OpenAiRobot::new(
        OpenAiConfig {
            key: None,
            ..openai_config(format!("{}/v1", server.url()))
        },
        options(),
    );
    assert_eq!(robot.reply("bob", "hello").unwrap(), "hi");
    let request = server.request();
    assert_eq!(request.header("authorization"), None);
    let body = request.json();
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "hello"}])
    );
    assert_eq!(body["max_tokens"], json!(512));
}

#[test]
fn openai_history_is_bounded_per_user() {
    let server = FakeHttp::start((0..4).map(|i| completion(&format!("a{i}"))).collect());
    let robot = OpenAiRobot::new(
        OpenAiConfig {
            history_turns: 2,
            ..openai_config(server.url())
        },
        options(),
    );
    for i in 0..4 {
        robot.reply("bob", &format!("q{i}")).unwrap();
    }
    let last = server.requests()[3].json();
    assert_eq!(
        last["messages"],
        json!([
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2"},
            {"role": "user", "content": "q3"},
        ])
    );
}

#[test]
fn openai_history_evicts_the_least_recently_used_user() {
    let server = FakeHttp::start((0..6).map(|i| completion(&format!("a{i}"))).collect());
    let robot = OpenAiRobot::new(
        OpenAiConfig {
            max_users: 2,
            ..openai_config(server.url())
        },
        options(),
    );
    robot.reply("ann", "q0").unwrap(); // a0
    robot.reply("ben", "q1").unwrap(); // a1
    robot.reply("ann", "q2").unwrap(); // a2: ann is now more recent than ben
    robot.reply("cat", "q3").unwrap(); // a3: evicts ben
    robot.reply("ben", "q4").unwrap(); // a4: ben starts over, evicting ann (least recent)
    robot.reply("cat", "q5").unwrap(); // a5: cat still remembered
    let messages = |i: usize| {
        server.requests()[i].json()["messages"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(messages(2), 3, "ann's second message carries one turn");
    assert_eq!(messages(4), 1, "ben was forgotten");
    assert_eq!(messages(5), 3, "cat was kept");
}

#[test]
fn openai_history_does_not_keep_failures() {
    let server = FakeHttp::start(vec![
        Reply::status(400, r#"{"error":{"message":"bad"}}"#),
        completion("ok"),
    ]);
    let robot = openai(&server);
    failed(robot.reply("bob", "first"));
    robot.reply("bob", "second").unwrap();
    assert_eq!(
        server.requests()[1].json()["messages"],
        json!([{"role": "user", "content": "second"}])
    );
}

#[test]
fn openai_401_names_the_key_variable_without_the_key() {
    let server = FakeHttp::start(vec![Reply::status(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {}***. ", &KEY[..4]), "type": "invalid_request_error"}})
            .to_string(),
    )]);
    let why = failed(openai(&server).reply("bob", "hi"));
    assert_eq!(
        why,
        "openai: HTTP 401 from /chat/completions: the API key was rejected; check \
         ROBOCHAT_OPENAI_KEY (or OPENAI_API_KEY)"
    );
    assert!(!why.contains(&KEY[..4]));
    assert_eq!(server.requests().len(), 1, "401 is not retried");
}

#[test]
fn openai_style_error_body() {
    let server = FakeHttp::start(vec![Reply::status(
        404,
        r#"{"error":{"message":"model \"x\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#,
    )]);
    let why = failed(openai(&server).reply("bob", "hi"));
    assert_eq!(
        why,
        "openai: HTTP 404 from /chat/completions: model \"x\" not found, try pulling it first"
    );
    assert_eq!(server.requests().len(), 1, "404 is not retried");
}

#[test]
fn ollama_style_error_body() {
    let server = FakeHttp::start(vec![Reply::status(
        400,
        r#"{"error":"invalid options: foo"}"#,
    )]);
    assert_eq!(
        failed(openai(&server).reply("bob", "hi")),
        "openai: HTTP 400 from /chat/completions: invalid options: foo"
    );
}

#[test]
fn openai_error_body_with_status_200_is_an_error() {
    let server = FakeHttp::start(vec![Reply::json(json!({"error": "model is loading"}))]);
    assert_eq!(
        failed(openai(&server).reply("bob", "hi")),
        "openai: model is loading"
    );
}

#[test]
fn openai_empty_answer_is_an_error() {
    let server = FakeHttp::start(vec![completion("  \n ")]);
    assert_eq!(
        failed(openai(&server).reply("bob", "hi")),
        "openai: model \"tiny\" gave an empty answer"
    );
}

#[test]
fn malformed_json_is_a_failure() {
    let server = FakeHttp::start(vec![
        Reply::status(200, "{\"choices\": [trunc"),
        Reply::json(json!({"choices": "nope"})),
    ]);
    let robot = openai(&server);
    let url = format!("{}/v1", server.url());
    assert_eq!(
        failed(robot.reply("bob", "hi")),
        format!("openai: {url} answered with malformed JSON")
    );
    assert_eq!(
        failed(robot.reply("bob", "hi")),
        format!("openai: {url} answered with malformed JSON")
    );
    assert_eq!(server.requests().len(), 2, "no retries");
}

#[test]
fn oversized_body_is_a_failure() {
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let server = FakeHttp::start(vec![Reply::status(200, big)]);
    let why = failed(openai(&server).reply("bob", "hi"));
    assert!(why.contains("answered with more than 1024 KiB"), "{why}");
}

// ---------------------------------------------------------------------------------------------
// Faults and retries

#[test]
fn rate_limited_then_success_makes_exactly_two_requests() {
    let server = FakeHttp::start(vec![
        Reply::status(429, r#"{"error":{"message":"slow down"}}"#).header("Retry-After", "0"),
        completion("finally"),
    ]);
    assert_eq!(openai(&server).reply("bob", "hi").unwrap(), "finally");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn server_error_twice_is_unavailable_after_two_requests() {
    let server = FakeHttp::start(vec![
        Reply::status(500, r#"{"error":"boom"}"#),
        // Also checks a closed connection after a response is handled.
        Reply::status(503, r#"{"error":"still boom"}"#).header("Connection", "close"),
        completion("never asked for"),
    ]);
    let why = unavailable(openai(&server).reply("bob", "hi"));
    assert_eq!(
        why,
        "openai: HTTP 503 from /chat/completions: still boom (2 attempts)"
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn tuling_retries_server_errors_too() {
    let server = FakeHttp::start(vec![
        Reply::status(502, "<html>bad gateway</html>").header("Connection", "close"),
        Reply::json(json!({"code": 100000, "text": "back"})),
    ]);
    assert_eq!(tuling(&server).reply("bob", "hi").unwrap(), "back");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_long_retry_after_is_not_waited_for() {
    let server = FakeHttp::start(vec![
        Reply::status(429, "{}").header("Retry-After", "3600"),
        completion("too late"),
    ]);
    let start = Instant::now();
    let why = unavailable(openai(&server).reply("bob", "hi"));
    assert_eq!(
        why,
        "openai: HTTP 429 from /chat/completions (rate limited)"
    );
    assert_eq!(server.requests().len(), 1);
    assert!(start.elapsed() < options().timeout);
}

fn short_timeout() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
    }
}

#[test]
fn a_slow_answer_is_unavailable_within_the_timeout() {
    let server = FakeHttp::start(vec![
        completion("too slow").delay(Duration::from_secs(5)),
        completion("too slow").delay(Duration::from_secs(5)),
    ]);
    let url = format!("{}/v1", server.url());
    let robot = OpenAiRobot::new(openai_config(url.clone()), short_timeout());
    let start = Instant::now();
    let why = unavailable(robot.reply("bob", "hi"));
    let elapsed = start.elapsed();
    assert!(
        elapsed < short_timeout().timeout + Duration::from_millis(1500),
        "took {elapsed:?}"
    );
    assert_eq!(why, format!("openai: no answer within 1 s from {url}"));
    // The whole budget went to the first attempt: no time was left for a retry.
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn connection_refused_is_unavailable() {
    let (_reserved, port) = common::refusing_port();
    let url = format!("http://127.0.0.1:{port}");
    let robot = OpenAiRobot::new(openai_config(url.clone()), options());
    let start = Instant::now();
    let why = unavailable(robot.reply("bob", "hi"));
    assert_eq!(
        why,
        format!("openai: connection refused by {url} (is the server running?) (2 attempts)")
    );
    assert!(start.elapsed() < options().timeout);
}

#[test]
fn workers_share_one_robot_at_once() {
    let server = FakeHttp::start((0..8).map(|_| completion("same")).collect());
    let robot = openai(&server);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let robot = &robot;
                scope.spawn(move || robot.reply(&format!("user{i}"), "hi"))
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap().unwrap(), "same");
        }
    });
    assert_eq!(server.requests().len(), 8);
}
