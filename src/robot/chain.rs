//! A fallback chain: a robot made of robots, each tried in turn until one answers.
//!
//! `--robot openai,embedded` is the LLM while it is up and the embedded robot when it is not.
//! Each robot keeps its own time budget and retry policy; the chain only moves on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{call_robot, Robot, RobotError};

/// How often, at most, a failing robot in a chain is logged (the log never says what users
/// wrote, and one line per message would drown everything else).
const LOG_INTERVAL_SECS: u64 = 60;

/// Asks each robot in turn; the first answer wins. If none answers, the error names them all.
pub struct FallbackChain {
    links: Vec<Link>,
    name: String,
}

struct Link {
    robot: Arc<dyn Robot>,
    /// When this robot's failure was last logged, in seconds since the epoch.
    last_logged: AtomicU64,
    /// Calls to this robot that it answered, and that failed (for metrics).
    answered: AtomicU64,
    failed: AtomicU64,
}

impl FallbackChain {
    /// A chain of `robots`, tried in this order. Its name is theirs joined by commas.
    pub fn new(robots: Vec<Arc<dyn Robot>>) -> Self {
        let name = robots
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(",");
        let links = robots
            .into_iter()
            .map(|robot| Link {
                robot,
                last_logged: AtomicU64::new(0),
                answered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            })
            .collect();
        FallbackChain { links, name }
    }
}

impl Robot for FallbackChain {
    fn name(&self) -> &str {
        &self.name
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        let mut failures = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            match call_robot(&*link.robot, user, text) {
                Ok(reply) => {
                    link.answered.fetch_add(1, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(error) => {
                    link.failed.fetch_add(1, Ordering::Relaxed);
                    if let Some(next) = self.links.get(i + 1) {
                        link.log_fallthrough(&error, next.robot.name());
                    }
                    failures.push(format!("{}: {}", link.robot.name(), error.reason()));
                }
            }
        }
        Err(RobotError::Unavailable(if failures.is_empty() {
            "no robot is configured".to_owned()
        } else {
            failures.join("; ")
        }))
    }

    fn never_blocks(&self) -> bool {
        self.links.iter().all(|link| link.robot.never_blocks())
    }

    fn inner_calls(&self) -> Vec<(String, u64, u64)> {
        self.links
            .iter()
            .map(|link| {
                (
                    link.robot.name().to_owned(),
                    link.answered.load(Ordering::Relaxed),
                    link.failed.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

impl Link {
    fn log_fallthrough(&self, error: &RobotError, next: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_logged.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_INTERVAL_SECS
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "robot {} failed ({}); answering with {next} (logged at most once a minute)",
                self.robot.name(),
                error.reason()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robot::EchoRobot;

    struct Down(&'static str);

    impl Robot for Down {
        fn name(&self) -> &str {
            "down"
        }
        fn reply(&self, _user: &str, _text: &str) -> Result<String, RobotError> {
            Err(RobotError::Unavailable(self.0.into()))
        }
    }

    #[test]
    fn the_first_robot_that_answers_wins() {
        let chain = FallbackChain::new(vec![Arc::new(Down("no route")), Arc::new(EchoRobot)]);
        assert_eq!(chain.reply("u", "hi"), Ok("hi".to_owned()));
        assert_eq!(chain.name(), "down,echo");
        assert!(!chain.never_blocks());
    }

    #[test]
    fn when_every_robot_fails_the_error_names_each() {
        let chain =
            FallbackChain::new(vec![Arc::new(Down("timed out")), Arc::new(Down("refused"))]);
        let error = chain.reply("u", "hi").unwrap_err();
        assert_eq!(
            error,
            RobotError::Unavailable("down: timed out; down: refused".into())
        );
        assert!(error.to_string().starts_with("the robot is unavailable"));
    }

    #[test]
    fn a_chain_of_robots_that_never_block_never_blocks() {
        let chain = FallbackChain::new(vec![Arc::new(EchoRobot), Arc::new(EchoRobot)]);
        assert!(chain.never_blocks());
    }
}
