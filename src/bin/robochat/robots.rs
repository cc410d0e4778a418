//! Turns `--robot SPEC` and the robot flags of `robochat serve` into one robot.
//!
//! SPEC is a robot name or a comma-separated fallback chain of them, such as `openai,embedded`.
//! API keys come from the environment only, never from a flag (flags show in `ps`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use robochat::robot::{
    Conversation, FallbackChain, Request, RobotReport, DEFAULT_BREAKER_COOL_DOWN,
    DEFAULT_BREAKER_FAILURES,
};
use robochat::{EchoRobot, EmbeddedRobot, Robot, RobotError};

use crate::args::Failure;

/// The robot names `--robot` understands.
pub const ROBOT_NAMES: &str = "embedded, echo, tuling, tuling2, openai";

/// The settings of every robot; each robot reads its own.
pub struct RobotSettings {
    pub rules: Option<PathBuf>,
    /// The whole time one robot has to answer one message.
    pub timeout: Duration,
    pub tuling_url: Option<String>,
    pub openai_url: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub history: usize,
    pub history_chars: usize,
    pub history_memory: usize,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    /// How long a failing link of a chain is skipped.
    pub breaker_cool_down: Duration,
}

impl Default for RobotSettings {
    fn default() -> Self {
        RobotSettings {
            rules: None,
            timeout: Duration::from_secs(10),
            tuling_url: None,
            openai_url: None,
            model: None,
            system_prompt: None,
            history: 8,
            history_chars: 4000,
            history_memory: 64 << 20,
            max_tokens: 512,
            temperature: None,
            breaker_cool_down: DEFAULT_BREAKER_COOL_DOWN,
        }
    }
}

/// A robot that holds back every answer of `inner` by `delay` (`--robot-delay`): a stand-in
/// for a slow web robot in load tests. It blocks, so it runs on the workers. Like a web call,
/// it gives up when the message's deadline comes first.
pub struct Delayed<R> {
    inner: R,
    delay: Duration,
}

impl<R: Robot> Delayed<R> {
    pub fn new(inner: R, delay: Duration) -> Self {
        Delayed { inner, delay }
    }
}

impl<R: Robot> Robot for Delayed<R> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        self.answer(&Request::new(user, text))
    }

    fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
        match request.time_left() {
            Some(left) if left < self.delay => {
                std::thread::sleep(left);
                Err(RobotError::Unavailable(format!(
                    "{}: no answer within the time limit (--robot-delay {} ms)",
                    self.inner.name(),
                    self.delay.as_millis()
                )))
            }
            _ => {
                std::thread::sleep(self.delay);
                self.inner.answer(request)
            }
        }
    }

    fn end_conversation(&self, conversation: &Conversation) {
        self.inner.end_conversation(conversation);
    }

    fn report(&self) -> RobotReport {
        self.inner.report()
    }
}

/// A web API's base URL as `--openai-url` and `--tuling-url` take it: `http://` or
/// `https://`, then a host. Checked when the flags are read, so that a typo shows at start
/// rather than when the first message arrives.
pub struct BaseUrl(pub String);

impl std::str::FromStr for BaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = ["http://", "https://"]
            .iter()
            .find_map(|scheme| {
                url.get(..scheme.len())
                    .filter(|s| s.eq_ignore_ascii_case(scheme))
                    .map(|_| &url[scheme.len()..])
            })
            .ok_or("expected a URL starting with http:// or https://")?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err("the URL has no host".into());
        }
        if url.chars().any(char::is_whitespace) {
            return Err("the URL contains spaces".into());
        }
        Ok(BaseUrl(url.to_owned()))
    }
}

/// Builds the robot (or the chain of robots) that `spec` names.
pub fn build(spec: &str, settings: &RobotSettings) -> Result<Arc<dyn Robot>, Failure> {
    let names: Vec<&str> = spec.split(',').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(Failure::Usage(format!(
            "--robot '{spec}' has an empty name; expected names such as openai,embedded"
        )));
    }
    if let Some(twice) = names
        .iter()
        .enumerate()
        .find_map(|(i, name)| names[..i].contains(name).then_some(name))
    {
        return Err(Failure::Usage(format!(
            "--robot '{spec}' names {twice} twice; a robot answers at most once in a chain"
        )));
    }
    if settings.rules.is_some() && !names.contains(&"embedded") {
        return Err(Failure::Usage(
            "--rules applies to the embedded robot, which --robot does not name".into(),
        ));
    }
    let mut robots = names
        .iter()
        .map(|name| build_one(name, settings))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if robots.len() == 1 {
        robots.remove(0)
    } else {
        Arc::new(
            FallbackChain::new(robots)
                .with_breaker(DEFAULT_BREAKER_FAILURES, settings.breaker_cool_down),
        )
    })
}

fn build_one(name: &str, settings: &RobotSettings) -> Result<Arc<dyn Robot>, Failure> {
    match name {
        "embedded" => match &settings.rules {
            None => Ok(Arc::new(EmbeddedRobot::new())),
            Some(path) => EmbeddedRobot::from_file(path)
                .map(|r| Arc::new(r) as Arc<dyn Robot>)
                .map_err(|e| Failure::Runtime(e.to_string())),
        },
        "echo" => Ok(Arc::new(EchoRobot)),
        "tuling" | "tuling2" | "openai" => web_robot(name, settings),
        other => Err(Failure::Usage(format!(
            "unknown robot '{other}': expected one of {ROBOT_NAMES}, or several separated by commas"
        ))),
    }
}

#[cfg(feature = "http")]
fn web_robot(name: &str, settings: &RobotSettings) -> Result<Arc<dyn Robot>, Failure> {
    use robochat::robot::http::{
        HttpOptions, OpenAiConfig, OpenAiRobot, Tuling2Robot, TulingRobot, DEFAULT_TULING2_URL,
        DEFAULT_TULING_URL,
    };
    let options = HttpOptions {
        timeout: settings.timeout,
        connect_timeout: settings.timeout.min(Duration::from_secs(3)),
    };
    Ok(match name {
        "tuling" => Arc::new(TulingRobot::new(
            settings.tuling_url.as_deref().unwrap_or(DEFAULT_TULING_URL),
            tuling_key()?,
            options,
        )),
        "tuling2" => Arc::new(Tuling2Robot::new(
            settings
                .tuling_url
                .as_deref()
                .unwrap_or(DEFAULT_TULING2_URL),
            tuling_key()?,
            options,
        )),
        _ => {
            let defaults = OpenAiConfig::default();
            let config = OpenAiConfig {
                base_url: settings.openai_url.clone().unwrap_or(defaults.base_url),
                key: env_value("ROBOCHAT_OPENAI_KEY").or_else(|| env_value("OPENAI_API_KEY")),
                model: settings.model.clone().unwrap_or(defaults.model),
                system_prompt: settings.system_prompt.clone(),
                history_turns: settings.history,
                history_chars: settings.history_chars,
                history_memory: settings.history_memory,
                max_tokens: settings.max_tokens,
                temperature: settings.temperature,
                ..defaults
            };
            let robot = Arc::new(OpenAiRobot::new(config, options));
            check_in_background(&robot);
            robot
        }
    })
}

/// Asks the API, on a thread of its own so that start-up does not wait, whether it is reachable,
/// takes the key and serves the model, and logs what it finds: a mistake shows at start, in
/// plain words, rather than as a warning a minute after the first user's message.
#[cfg(feature = "http")]
fn check_in_background(robot: &Arc<robochat::robot::http::OpenAiRobot>) {
    let robot = Arc::clone(robot);
    let spawned = std::thread::Builder::new()
        .name("robochat-check".into())
        .spawn(move || match robot.check_api(Duration::from_secs(5)) {
            Ok(found) => log::info!("{found}"),
            Err(problem) => log::warn!("{problem}"),
        });
    if let Err(e) = spawned {
        log::warn!("cannot check the openai API at start: {e}");
    }
}

#[cfg(not(feature = "http"))]
fn web_robot(name: &str, _settings: &RobotSettings) -> Result<Arc<dyn Robot>, Failure> {
    Err(Failure::Usage(format!(
        "the {name} robot needs robochat built with the `http` feature"
    )))
}

#[cfg(feature = "http")]
fn tuling_key() -> Result<String, Failure> {
    env_value("ROBOCHAT_TULING_KEY").ok_or_else(|| {
        Failure::Usage(
            "the Tuling robots need an API key: set ROBOCHAT_TULING_KEY in the environment".into(),
        )
    })
}

#[cfg(feature = "http")]
fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::BaseUrl;

    #[test]
    fn base_urls_need_a_scheme_and_a_host() {
        for good in [
            "http://localhost:11434/v1",
            "https://api.openai.com/v1",
            "HTTP://127.0.0.1:8080",
            "http://[::1]:8080/v1/",
        ] {
            assert!(good.parse::<BaseUrl>().is_ok(), "{good}");
        }
        for bad in [
            "notaurl",
            "localhost:11434/v1",
            "ftp://x",
            "http://",
            "http:///v1",
            "http://:80",
            "https://a b",
        ] {
            assert!(bad.parse::<BaseUrl>().is_err(), "{bad}");
        }
    }
}
