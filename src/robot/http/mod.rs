//! Web robots: robots that answer by calling a web API (feature `http`).
//!
//! - [`TulingRobot`]: the Tuling v1 API (`GET /openapi/api`), the tutorial's robot.
//! - [`Tuling2Robot`]: the Tuling v2 API (`POST /openapi/api/v2`, JSON).
//! - [`OpenAiRobot`]: any OpenAI-compatible chat-completions endpoint (Ollama, llama.cpp's
//!   `llama-server`, vLLM, or a hosted API), with a bounded memory of each conversation.
//!
//! They all block on the network, so they run on the worker pool (`never_blocks()` is false), and
//! each keeps one [`ureq::Agent`] shared by every worker so that connections are reused.
//!
//! # Faults
//!
//! [`HttpOptions::timeout`] is the whole budget for one message: connect, send, wait, read and any
//! retry fit inside it. Timeouts, connection failures, HTTP 429 and 5xx are retried once after a
//! short backoff (200 ms, or a small `Retry-After`) if enough of the budget is left, and then give
//! [`RobotError::Unavailable`]. Other 4xx statuses and API-level errors (a rejected key, a used-up
//! quota) give [`RobotError::Failed`] at once: retrying would not help. Response bodies are read
//! with a 1 MiB cap.
//!
//! # Keys
//!
//! API keys are never logged, never put in a reply and never in an error message: error messages
//! are built here from the kind of failure, never by formatting a `ureq` error (whose text can
//! hold the URL, and the Tuling v1 URL holds the key in its query), and any text an API sends
//! back is scrubbed of the key before it is shown. `Debug` prints keys as `"<hidden>"`.

mod history;
mod openai;
mod tuling;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::{Agent, Body, RequestBuilder};

use super::{Conversation, RobotError};

pub use openai::{OpenAiConfig, OpenAiRobot};
pub use tuling::{Tuling2Robot, TulingRobot};

/// The Tuling v1 API's default base URL.
pub const DEFAULT_TULING_URL: &str = "http://www.tuling123.com";
/// The Tuling v2 API's default base URL.
pub const DEFAULT_TULING2_URL: &str = "http://openapi.tuling123.com";
/// The default OpenAI-compatible base URL: a local Ollama server.
pub const DEFAULT_OPENAI_URL: &str = "http://localhost:11434/v1";

/// Time limits for one robot.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The whole budget for one message: connect, send, wait, read, and any retry (default 10 s).
    pub timeout: Duration,
    /// The longest a TCP connect may take on its own (default 3 s, never more than `timeout`).
    pub connect_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// The largest response body read; a bigger one is an error, so that a hostile or broken endpoint
/// cannot make a worker allocate without bound.
const MAX_BODY: u64 = 1024 * 1024;

/// The pause before the one retry, unless the server asks for another (small) one.
const BACKOFF: Duration = Duration::from_millis(200);

/// The longest `Retry-After` honoured. A server asking for more is not retried within this
/// message's budget: retrying sooner than it asked would only be refused again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The longest text taken from an API's error answer into an error message.
const MAX_DETAIL: usize = 200;

/// What a successful exchange (any HTTP status) brought back.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The HTTP status code.
    pub status: u16,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
    /// How many requests were sent (1 or 2).
    pub attempts: u32,
}

/// Why one attempt failed before a complete response was read.
#[derive(Debug)]
enum Fault {
    /// The connect timeout expired.
    ConnectTimeout,
    /// The remaining budget expired.
    Timeout,
    /// Nothing listens at the address.
    Refused,
    /// The host name did not resolve.
    Dns,
    /// The connection broke or the peer spoke something other than HTTP (the kind, for people).
    Connection(String),
    /// The response body is larger than [`MAX_BODY`].
    TooLarge,
    /// A TLS failure: retrying would not help.
    Tls,
    /// The URL is unusable (a configuration mistake).
    BadUrl,
    /// Anything else `ureq` reports; described only by this fixed text.
    Other(&'static str),
}

impl Fault {
    fn from_ureq(error: &ureq::Error) -> Fault {
        match error {
            ureq::Error::Timeout(ureq::Timeout::Connect) => Fault::ConnectTimeout,
            ureq::Error::Timeout(_) => Fault::Timeout,
            ureq::Error::HostNotFound => Fault::Dns,
            ureq::Error::ConnectionFailed => Fault::Connection("connection failed".into()),
            ureq::Error::Io(e) => Fault::from_io(e),
            ureq::Error::Protocol(_) | ureq::Error::BodyStalled => {
                Fault::Connection("the answer was not valid HTTP".into())
            }
            ureq::Error::BodyExceedsLimit(_) | ureq::Error::LargeResponseHeader(..) => {
                Fault::TooLarge
            }
            ureq::Error::Tls(_) | ureq::Error::TlsRequired | ureq::Error::Rustls(_) => Fault::Tls,
            ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
                Fault::BadUrl
            }
            ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
                Fault::Other("it redirected somewhere that could not be followed")
            }
            ureq::Error::InvalidProxyUrl | ureq::Error::ConnectProxyFailed(_) => {
                Fault::Other("the HTTP proxy (from the environment) failed")
            }
            _ => Fault::Other("the request failed"),
        }
    }

    fn from_io(error: &io::Error) -> Fault {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Fault::Timeout,
            io::ErrorKind::ConnectionRefused => Fault::Refused,
            // `ErrorKind`'s text is fixed and short ("connection reset"); the error's own text
            // could in principle carry more than we want to show.
            kind => Fault::Connection(kind.to_string()),
        }
    }

    /// Whether one more attempt may succeed.
    fn retryable(&self) -> bool {
        matches!(
            self,
            Fault::ConnectTimeout
                | Fault::Timeout
                | Fault::Refused
                | Fault::Dns
                | Fault::Connection(_)
        )
    }
}

/// One robot's HTTP client: the shared agent, the time budget and how the robot names itself and
/// its server in error messages.
pub(crate) struct Client {
    agent: Agent,
    options: HttpOptions,
    /// The robot's name, the prefix of every error message.
    robot: &'static str,
    /// The base URL as shown to people: no user info, query or fragment (so never a key).
    shown_url: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("robot", &self.robot)
            .field("url", &self.shown_url)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `robot` talking to `base_url`.
    pub fn new(robot: &'static str, base_url: &str, options: HttpOptions) -> Client {
        let connect = options.connect_timeout.min(options.timeout);
        let config = Agent::config_builder()
            // Statuses are handled here (retry 429/5xx, read the error body of the rest).
            .http_status_as_error(false)
            // All of ureq 3's timeouts are off by default; these are the agent's defaults, and
            // each attempt narrows the global one to what is left of the message's budget.
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(connect))
            .user_agent(concat!("robochat/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.new_agent(),
            options,
            robot,
            shown_url: shown_url(base_url),
        }
    }

    /// The agent, to build requests with.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The whole budget for one message.
    pub fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// The base URL as it may be shown in messages.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Sends the request that `send` makes (given a function that applies this attempt's time
    /// limits to a request builder), retrying once as the module docs say, and reads the body.
    ///
    /// Returns the exchange for every complete response, including a 429 or 5xx that could not
    /// be retried, so that the robot can read the API's error message from it; see
    /// [`Client::status_error`].
    ///
    /// The budget is the robot's timeout, or what is left until `deadline` if that comes first
    /// (the message's own budget, which started when it was queued).
    pub fn exchange<F>(&self, deadline: Option<Instant>, send: F) -> Result<Exchange, RobotError>
    where
        F: Fn(&Limits) -> Result<Response<Body>, ureq::Error>,
    {
        let start = Instant::now();
        let own = super::deadline_after(start, self.options.timeout);
        let deadline = deadline.map_or(own, |asked| asked.min(own));
        let budget = deadline.saturating_duration_since(start);
        if budget.is_zero() {
            return Err(self.fault_error(&Fault::Timeout, budget, 0));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            // ureq cannot take a zero timeout to mean "already expired"; 1 ms does the same.
            let global = remaining.max(Duration::from_millis(1));
            let limits = Limits {
                global,
                connect: self.options.connect_timeout.min(global),
            };
            let (wait, last) = match self.attempt(&send, &limits, attempts) {
                Ok((exchange, _)) if !retryable_status(exchange.status) => return Ok(exchange),
                Ok((exchange, Some(asked))) if asked > MAX_RETRY_AFTER => return Ok(exchange),
                Ok((exchange, asked)) => (asked.unwrap_or(BACKOFF).max(BACKOFF), Ok(exchange)),
                Err(fault) if fault.retryable() => (BACKOFF, Err(fault)),
                Err(fault) => return Err(self.fault_error(&fault, budget, attempts)),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if attempts >= 2 || remaining < wait + self.min_attempt() {
                return last.map_err(|fault| self.fault_error(&fault, budget, attempts));
            }
            // Key-free: the message is built like every error message here.
            let why = match &last {
                Ok(exchange) => format!("{}: HTTP {}", self.robot, exchange.status),
                Err(fault) => self.fault_error(fault, budget, attempts).to_string(),
            };
            log::debug!("{why}; retrying in {} ms", wait.as_millis());
            thread::sleep(wait);
        }
    }

    /// The least time worth a retry: a quarter of the budget, at most 500 ms.
    fn min_attempt(&self) -> Duration {
        (self.options.timeout / 4).min(Duration::from_millis(500))
    }

    /// One request: send it, read the (capped) body. Returns the exchange and any `Retry-After`.
    fn attempt<F>(
        &self,
        send: &F,
        limits: &Limits,
        attempts: u32,
    ) -> Result<(Exchange, Option<Duration>), Fault>
    where
        F: Fn(&Limits) -> Result<Response<Body>, ureq::Error>,
    {
        let mut response = send(limits).map_err(|e| Fault::from_ureq(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| Fault::from_ureq(&e))?;
        Ok((
            Exchange {
                status,
                body,
                attempts,
            },
            retry_after,
        ))
    }

    /// The error for a request that got no complete response.
    fn fault_error(&self, fault: &Fault, budget: Duration, attempts: u32) -> RobotError {
        let (robot, url) = (self.robot, &self.shown_url);
        let tries = tries(attempts);
        match fault {
            Fault::Timeout => RobotError::Unavailable(format!(
                "{robot}: no answer within {} from {url}{tries}",
                seconds(budget)
            )),
            Fault::ConnectTimeout => RobotError::Unavailable(format!(
                "{robot}: could not connect to {url} within {}{tries}",
                seconds(self.options.connect_timeout.min(budget))
            )),
            Fault::Refused => RobotError::Unavailable(format!(
                "{robot}: connection refused by {url} (is the server running?){tries}"
            )),
            Fault::Dns => RobotError::Unavailable(format!(
                "{robot}: cannot resolve the host name of {url}{tries}"
            )),
            Fault::Connection(what) => RobotError::Unavailable(format!(
                "{robot}: the connection to {url} failed ({what}){tries}"
            )),
            Fault::Tls => RobotError::Unavailable(format!(
                "{robot}: the TLS (https) connection to {url} failed"
            )),
            Fault::TooLarge => RobotError::Failed(format!(
                "{robot}: {url} answered with more than {} KiB",
                MAX_BODY / 1024
            )),
            Fault::BadUrl => RobotError::Failed(format!("{robot}: the URL {url} is not usable")),
            Fault::Other(what) => RobotError::Unavailable(format!("{robot}: {what} ({url})")),
        }
    }

    /// The error for an HTTP status that is not a success: `path` is the API path (such as
    /// `/chat/completions`), `detail` what the API said (already scrubbed), if anything.
    ///
    /// 429 and 5xx (already retried if there was time) are [`RobotError::Unavailable`]; anything
    /// else is [`RobotError::Failed`].
    pub fn status_error(
        &self,
        exchange: &Exchange,
        path: &str,
        detail: Option<&str>,
    ) -> RobotError {
        let status = exchange.status;
        let mut message = format!("{}: HTTP {status} from {path}", self.robot);
        match detail {
            Some(detail) if !detail.is_empty() => {
                message.push_str(": ");
                message.push_str(detail);
            }
            _ if status == 404 => message.push_str(&format!(" (is {} right?)", self.shown_url)),
            _ if status == 429 => message.push_str(" (rate limited)"),
            _ => {}
        }
        message.push_str(&tries(exchange.attempts));
        if retryable_status(status) {
            RobotError::Unavailable(message)
        } else {
            RobotError::Failed(message)
        }
    }

    /// The error for a body that is not the JSON the API promises.
    pub fn malformed(&self) -> RobotError {
        RobotError::Failed(format!(
            "{}: {} answered with malformed JSON",
            self.robot, self.shown_url
        ))
    }
}

/// The time limits of one attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// What is left of the message's budget.
    pub global: Duration,
    /// The connect timeout, never more than `global`.
    pub connect: Duration,
}

impl Limits {
    /// Applies these limits to a request.
    pub fn apply<B>(&self, request: RequestBuilder<B>) -> RequestBuilder<B> {
        request
            .config()
            .timeout_global(Some(self.global))
            .timeout_connect(Some(self.connect))
            .build()
    }
}

/// Whether an HTTP status is worth one retry: rate limited or a server-side failure.
fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// `" (2 attempts)"` after a retry, nothing otherwise.
fn tries(attempts: u32) -> String {
    if attempts > 1 {
        format!(" ({attempts} attempts)")
    } else {
        String::new()
    }
}

/// A duration for people: `10 s`, `1.5 s`, `0.25 s`.
fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        let text = format!("{secs:.3}");
        format!("{} s", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// `url` without user info, query or fragment, and without a trailing `/`: safe to show.
fn shown_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = match url.find("://") {
        Some(at) => (&url[..at + 3], &url[at + 3..]),
        None => ("", url),
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(host_end);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}{authority}{path}")
        .trim_end_matches('/')
        .to_owned()
}

/// `base` and `path` joined with exactly one `/`.
fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Text from an API made fit for an error message: the key (if any) replaced by `<hidden>`,
/// control characters by spaces, and cut to [`MAX_DETAIL`] characters.
fn scrub(text: &str, key: Option<&str>) -> String {
    let text = match key {
        Some(key) if !key.is_empty() => text.replace(key, "<hidden>"),
        _ => text.to_owned(),
    };
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL)
        .collect();
    if text.trim().chars().nth(MAX_DETAIL).is_some() {
        out.push('…');
    }
    out
}

/// A user id for APIs that keep per-user context and accept only letters and digits: the ASCII
/// letters and digits of `user`, at most 32; or, when that leaves nothing (a name in another
/// script, say), a stable hash of the name, so that such users do not all share one context.
///
/// In a conversation of one connection (the default), the id is opaque: a keyed hash of the
/// server's connection id, with a key drawn at random when the process starts, so that no
/// client can choose or guess another's.
fn user_id(conversation: &Conversation) -> String {
    let user = match conversation {
        Conversation::User(user) => user,
        Conversation::Connection(id) => {
            static KEY: OnceLock<RandomState> = OnceLock::new();
            let hash = KEY.get_or_init(RandomState::new).hash_one(id);
            return format!("c{hash:016x}");
        }
    };
    let id: String = user
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    if !id.is_empty() {
        return id;
    }
    format!("u{:016x}", crate::text::fnv1a(user))
}

/// Percent-encodes `text` for a URL query: everything but the unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) as UTF-8 `%XX`, so that `&`, `=`, `#`, `+` and `%` arrive as text.
fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `Some(text)` for a non-empty JSON string, after trimming.
fn json_str<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// A JSON integer that may also come as a string (`"100000"`).
fn json_int(value: &serde_json::Value, key: &str) -> Option<i64> {
    let value = value.get(key)?;
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        let user_id = |name: &str| user_id(&Conversation::User(name.to_owned()));
        assert_eq!(user_id("bob_1!"), "bob1");
        assert_eq!(user_id(&"a".repeat(40)), "a".repeat(32));
        let wang = user_id("王");
        let li = user_id("李");
        assert_ne!(wang, li);
        assert_eq!(wang, user_id("王"));
        assert!(wang.chars().all(|c| c.is_ascii_alphanumeric()) && wang.len() <= 32);
    }

    #[test]
    fn connection_ids_are_opaque_and_distinct() {
        let one = super::user_id(&Conversation::Connection(1));
        let two = super::user_id(&Conversation::Connection(2));
        assert_ne!(one, two);
        assert_eq!(one, super::user_id(&Conversation::Connection(1)));
        assert!(one.starts_with('c') && one.len() == 17);
        assert!(one.chars().all(|c| c.is_ascii_alphanumeric()) && one.len() <= 32);
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("a&b=c#d+e%f g"), "a%26b%3Dc%23d%2Be%25f%20g");
        assert_eq!(encode_query("中"), "%E4%B8%AD");
        assert_eq!(encode_query("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn urls_shown_without_secrets() {
        assert_eq!(
            shown_url("http://user:pw@host:8080/v1/?key=k#x"),
            "http://host:8080/v1"
        );
        assert_eq!(
            shown_url("http://localhost:11434/v1"),
            "http://localhost:11434/v1"
        );
        assert_eq!(join_url("http://h/v1/", "/chat"), "http://h/v1/chat");
    }

    #[test]
    fn durations() {
        assert_eq!(seconds(Duration::from_secs(10)), "10 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
    }

    #[test]
    fn scrubbing() {
        assert_eq!(
            scrub(" bad key SECRET\n! ", Some("SECRET")),
            "bad key <hidden> !"
        );
        let long = scrub(&"x".repeat(500), None);
        assert_eq!(long.chars().count(), MAX_DETAIL + 1);
    }
}
