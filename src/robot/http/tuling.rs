//! The Tuling robots: the v1 API (`GET /openapi/api`, the tutorial's robot) and the v2 API
//! (`POST /openapi/api/v2` with a JSON body).
//!
//! Tuling keeps a conversation context per `userid`, so each chat user gets their own id (see
//! [`user_id`]). Tuling reports its own errors (a rejected key, a used-up daily quota) inside a
//! successful HTTP response, as result codes; those become [`RobotError::Failed`] with a message
//! saying what to do, never a reply.

use std::fmt;

use serde_json::{json, Value};

use super::{
    encode_query, join_url, json_int, json_str, scrub, user_id, Client, Exchange, HttpOptions,
};
use crate::robot::{Request, Robot, RobotError};

/// How many items of a news or recipe list go into the one reply line.
const LIST_ITEMS: usize = 3;

/// Where the key comes from, for the message when Tuling rejects it.
const KEY_HINT: &str = "check ROBOCHAT_TULING_KEY";

/// What both Tuling robots hold: the HTTP client, the endpoint's URL and the key.
struct Endpoint {
    client: Client,
    url: String,
    key: String,
}

impl Endpoint {
    fn new(
        robot: &'static str,
        base_url: &str,
        path: &str,
        key: String,
        options: HttpOptions,
    ) -> Self {
        Endpoint {
            client: Client::new(robot, base_url, options),
            url: join_url(base_url, path),
            key,
        }
    }

    /// The robot's `Debug`, with the key hidden.
    fn debug(&self, f: &mut fmt::Formatter<'_>, robot: &str) -> fmt::Result {
        f.debug_struct(robot)
            .field("url", &self.client.shown_url())
            .field("key", &"<hidden>")
            .field("client", &self.client)
            .finish()
    }
}

/// The Tuling v1 robot: `GET {base}/openapi/api?key=..&info=..&userid=..`.
pub struct TulingRobot(Endpoint);

impl fmt::Debug for TulingRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f, "TulingRobot")
    }
}

impl TulingRobot {
    /// A robot calling the Tuling v1 API at `base_url` (such as [`DEFAULT_TULING_URL`]) with the
    /// API key `key`, within the time limits of `options`.
    ///
    /// [`DEFAULT_TULING_URL`]: super::DEFAULT_TULING_URL
    pub fn new(base_url: &str, key: String, options: HttpOptions) -> Self {
        TulingRobot(Endpoint::new(
            "tuling",
            base_url,
            "/openapi/api",
            key,
            options,
        ))
    }

    /// The reply (or error) for a v1 answer.
    fn read_answer(&self, exchange: &Exchange) -> Result<String, RobotError> {
        let value: Option<Value> = serde_json::from_slice(&exchange.body).ok();
        if !(200..300).contains(&exchange.status) {
            let detail = value
                .as_ref()
                .and_then(|v| json_str(v, "text"))
                .map(|text| scrub(text, Some(&self.0.key)));
            return Err(self
                .0
                .client
                .status_error(exchange, "/openapi/api", detail.as_deref()));
        }
        let value = value.ok_or_else(|| self.0.client.malformed())?;
        let Some(code) = json_int(&value, "code") else {
            return Err(self.0.client.malformed());
        };
        let text = json_str(&value, "text").unwrap_or("");
        if code < 100_000 {
            let said = scrub(text, Some(&self.0.key));
            return Err(RobotError::Failed(match code {
                40001 => format!("tuling: the API key was rejected (40001); {KEY_HINT}"),
                40002 => "tuling: the message text was empty (40002)".to_owned(),
                40004 => "tuling: the daily quota is used up (40004)".to_owned(),
                40007 => "tuling: the request format was rejected (40007)".to_owned(),
                _ if said.is_empty() => format!("tuling: error {code}"),
                _ => format!("tuling: error {code}: {said}"),
            }));
        }
        let mut parts: Vec<String> = Vec::new();
        if !text.is_empty() {
            parts.push(text.to_owned());
        }
        if let Some(url) = json_str(&value, "url") {
            parts.push(url.to_owned());
        }
        let mut reply = parts.join(" ");
        if let Some(list) = value.get("list").and_then(Value::as_array) {
            let items = render_list(list);
            if !items.is_empty() {
                if reply.is_empty() {
                    reply = items;
                } else {
                    reply = format!("{reply}: {items}");
                }
            }
        }
        if reply.is_empty() {
            return Err(RobotError::Failed(format!(
                "tuling: answered code {code} without any text"
            )));
        }
        Ok(reply)
    }
}

impl Robot for TulingRobot {
    fn name(&self) -> &str {
        "tuling"
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        Robot::answer(self, &Request::new(user, text))
    }

    fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
        // Encoded by hand, every byte outside the unreserved set, so that `&`, `=`, `#`, `+` and
        // `%` in the text cannot inject parameters or be misread.
        let url = format!(
            "{}?key={}&info={}&userid={}",
            self.0.url,
            encode_query(&self.0.key),
            encode_query(request.text),
            encode_query(&user_id(&request.conversation)),
        );
        let exchange = self.0.client.exchange(request.deadline, |limits| {
            limits.apply(self.0.client.agent().get(&url)).call()
        })?;
        self.read_answer(&exchange)
    }

    fn never_blocks(&self) -> bool {
        false
    }
}

/// The first [`LIST_ITEMS`] items of a v1 news (`article`, `source`) or recipe (`name`, `info`)
/// list, or a v2 news list (`name`, `info`), as `1. title (about) link; 2. ...`.
fn render_list(list: &[Value]) -> String {
    list.iter()
        .filter_map(|item| {
            let title = json_str(item, "article").or_else(|| json_str(item, "name"))?;
            let mut line = title.to_owned();
            if let Some(about) = json_str(item, "source").or_else(|| json_str(item, "info")) {
                line.push_str(&format!(" ({about})"));
            }
            if let Some(link) = json_str(item, "detailurl") {
                line.push(' ');
                line.push_str(link);
            }
            Some(line)
        })
        .take(LIST_ITEMS)
        .enumerate()
        .map(|(i, line)| format!("{}. {line}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The Tuling v2 robot: `POST {base}/openapi/api/v2` with a JSON body.
pub struct Tuling2Robot(Endpoint);

impl fmt::Debug for Tuling2Robot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f, "Tuling2Robot")
    }
}

impl Tuling2Robot {
    /// A robot calling the Tuling v2 API at `base_url` (such as [`DEFAULT_TULING2_URL`]) with the
    /// API key `key`, within the time limits of `options`.
    ///
    /// [`DEFAULT_TULING2_URL`]: super::DEFAULT_TULING2_URL
    pub fn new(base_url: &str, key: String, options: HttpOptions) -> Self {
        Tuling2Robot(Endpoint::new(
            "tuling2",
            base_url,
            "/openapi/api/v2",
            key,
            options,
        ))
    }

    /// The reply (or error) for a v2 answer.
    fn read_answer(&self, exchange: &Exchange) -> Result<String, RobotError> {
        let value: Option<Value> = serde_json::from_slice(&exchange.body).ok();
        let said = value
            .as_ref()
            .map(|v| results(v, false))
            .map(|text| scrub(&text, Some(&self.0.key)))
            .filter(|text| !text.is_empty());
        if !(200..300).contains(&exchange.status) {
            return Err(self
                .0
                .client
                .status_error(exchange, "/openapi/api/v2", said.as_deref()));
        }
        let value = value.ok_or_else(|| self.0.client.malformed())?;
        let Some(code) = value
            .get("intent")
            .and_then(|intent| json_int(intent, "code"))
        else {
            return Err(self.0.client.malformed());
        };
        if code < 10_000 {
            let message = match code {
                4000 => "the request format was rejected (4000)".to_owned(),
                4001 => "the key's encryption setting does not match (4001); turn encryption \
                         off for this key in the Tuling console"
                    .to_owned(),
                4002 | 4005 => format!("this key has no permission for that ({code})"),
                4003 => "the daily quota is used up (4003)".to_owned(),
                4007 => format!("the API key was rejected (4007); {KEY_HINT}"),
                4100 | 4400 | 4500 => format!("the user id was rejected ({code})"),
                4600 => "the message text was empty (4600)".to_owned(),
                4602 => "the message is too long for Tuling (4602)".to_owned(),
                5000 => "Tuling found no answer (5000)".to_owned(),
                6000 => "Tuling does not support this request yet (6000)".to_owned(),
                8008 => "Tuling had a server error (8008)".to_owned(),
                _ => match &said {
                    Some(said) => format!("error {code}: {said}"),
                    None => format!("error {code}"),
                },
            };
            return Err(RobotError::Failed(format!("tuling2: {message}")));
        }
        let reply = results(&value, true);
        if reply.is_empty() {
            return Err(RobotError::Failed(format!(
                "tuling2: answered code {code} without any text"
            )));
        }
        Ok(reply)
    }
}

/// The v2 `results[]` as one line: texts first, then links, then (if `all`) news lists and
/// images, joined by spaces. Other result types (voice, video) cannot be shown on a chat line.
fn results(value: &Value, all: bool) -> String {
    let Some(results) = value.get("results").and_then(Value::as_array) else {
        return String::new();
    };
    // Text first reads best ("here is the map: URL"); Tuling often lists the link first.
    let kinds: &[&str] = if all {
        &["text", "url", "news", "image"]
    } else {
        &["text"]
    };
    let mut parts = Vec::new();
    for kind in kinds {
        for result in results {
            if result.get("resultType").and_then(Value::as_str) != Some(*kind) {
                continue;
            }
            let Some(values) = result.get("values") else {
                continue;
            };
            let part = match *kind {
                "news" => values
                    .get("news")
                    .and_then(Value::as_array)
                    .map(|list| render_list(list))
                    .filter(|text| !text.is_empty()),
                key => json_str(values, key).map(str::to_owned),
            };
            parts.extend(part);
        }
    }
    parts.join(" ")
}

impl Robot for Tuling2Robot {
    fn name(&self) -> &str {
        "tuling2"
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        Robot::answer(self, &Request::new(user, text))
    }

    fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
        let body = json!({
            "reqType": 0,
            "perception": { "inputText": { "text": request.text } },
            "userInfo": { "apiKey": self.0.key, "userId": user_id(&request.conversation) },
        })
        .to_string();
        let exchange = self.0.client.exchange(request.deadline, |limits| {
            limits
                .apply(self.0.client.agent().post(&self.0.url))
                .content_type("application/json")
                .send(body.as_bytes())
        })?;
        self.read_answer(&exchange)
    }

    fn never_blocks(&self) -> bool {
        false
    }
}
