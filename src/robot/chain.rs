//! A fallback chain: a robot made of robots, each tried in turn until one answers.
//!
//! `--robot openai,embedded` is the LLM while it is up and the embedded robot when it is not.
//! Each robot keeps its own time budget and retry policy; the chain moves on, and keeps a
//! circuit breaker per link: a link that keeps failing (a dead or frozen model server) would
//! otherwise hold every message for its whole timeout, and every worker with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{
    call_robot, deadline_after, Conversation, LinkReport, RateLimit, Request, Robot, RobotError,
    RobotReport,
};

/// How often, at most, one kind of failure of a link is logged (the log never says what users
/// wrote, and one line per message would drown everything else).
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Failures in a row after which a link is skipped.
pub const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// How long a link is skipped before one message probes it again.
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(10);

/// The least time worth calling a robot that may block: with less left of a message's budget,
/// it is passed over for the next robot (a web call could not finish).
const MIN_CALL: Duration = Duration::from_millis(50);

/// Whether a failure says nothing about a robot's health: it was called with less than half of
/// the message's budget (the rest went waiting for a worker, or to robots before it) and did not
/// answer in what was left. A healthy model behind a long queue must not be skipped for that.
fn starved(
    request: &Request<'_>,
    left_at_start: Option<Duration>,
    result: &Result<String, RobotError>,
) -> bool {
    let short = match (left_at_start, request.budget) {
        (Some(left), Some(budget)) => left < budget / 2,
        _ => false,
    };
    short && matches!(result, Err(RobotError::Unavailable(_)))
}

/// Asks each robot in turn; the first answer wins. If none answers, the error names them all.
pub struct FallbackChain {
    links: Vec<Link>,
    name: String,
    failures_to_open: u32,
    cool_down: Duration,
    log: RateLimit,
}

struct Link {
    robot: Arc<dyn Robot>,
    breaker: Mutex<Breaker>,
    /// Calls to this robot that it answered, that failed, and messages that skipped it.
    answered: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    /// The time of all its calls, in nanoseconds.
    nanos: AtomicU64,
}

/// A link's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    /// Calls go through; this many have failed in a row.
    Closed { failures: u32 },
    /// Skipped until then.
    Open { until: Instant },
    /// One message is trying it after a cool-down; the others skip it meanwhile.
    Probing,
}

/// Whether a message may call a link now.
enum Pass {
    Call,
    Probe,
    Skip,
}

impl FallbackChain {
    /// A chain of `robots`, tried in this order, each skipped for
    /// [`DEFAULT_BREAKER_COOL_DOWN`] after [`DEFAULT_BREAKER_FAILURES`] failures in a row. Its
    /// name is theirs joined by commas.
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
                breaker: Mutex::new(Breaker::Closed { failures: 0 }),
                answered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                nanos: AtomicU64::new(0),
            })
            .collect();
        FallbackChain {
            links,
            name,
            failures_to_open: DEFAULT_BREAKER_FAILURES,
            cool_down: DEFAULT_BREAKER_COOL_DOWN,
            log: RateLimit::new(LOG_INTERVAL),
        }
    }

    /// Skips a link for `cool_down` after `failures` failures in a row (at least 1), then lets
    /// one message probe it: if that one is answered, the link is back.
    pub fn with_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.failures_to_open = failures.max(1);
        self.cool_down = cool_down;
        self
    }

    /// Whether a message may call `link` now (and, past a cool-down, makes it the probe).
    fn pass(&self, link: &Link) -> Pass {
        let mut breaker = link.lock();
        match *breaker {
            Breaker::Closed { .. } => Pass::Call,
            Breaker::Open { until } if Instant::now() >= until => {
                *breaker = Breaker::Probing;
                Pass::Probe
            }
            Breaker::Open { .. } | Breaker::Probing => Pass::Skip,
        }
    }

    /// Records how a call to `link` went, opening or closing its breaker.
    fn record(&self, link: &Link, result: &Result<String, RobotError>) {
        let name = link.robot.name();
        let mut breaker = link.lock();
        // A rejected message is about the message: the robot is up, it answered.
        let failed = matches!(
            result,
            Err(RobotError::Unavailable(_) | RobotError::Failed(_))
        );
        let reason = result.as_ref().err().map_or("", RobotError::reason);
        let cool_down = self.cool_down.as_secs_f64();
        *breaker = match (*breaker, failed) {
            (Breaker::Closed { .. }, false) => Breaker::Closed { failures: 0 },
            (Breaker::Open { .. } | Breaker::Probing, false) => {
                log::warn!("robot {name} answers again; no longer skipped");
                Breaker::Closed { failures: 0 }
            }
            (Breaker::Closed { failures }, true) if failures + 1 < self.failures_to_open => {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (Breaker::Closed { failures }, true) => {
                log::warn!(
                    "robot {name} failed {} times in a row ({reason}); skipping it for \
                     {cool_down} s",
                    failures + 1
                );
                Breaker::Open {
                    until: deadline_after(Instant::now(), self.cool_down),
                }
            }
            (Breaker::Probing, true) => {
                log::warn!(
                    "robot {name} still fails ({reason}); skipping it for {cool_down} s more"
                );
                Breaker::Open {
                    until: deadline_after(Instant::now(), self.cool_down),
                }
            }
            // Another message's call failed after the breaker opened: the cool-down stands.
            (open @ Breaker::Open { .. }, true) => open,
        };
    }
}

impl Link {
    /// Adds the time of a call that began at `started`.
    fn add_time(&self, started: Instant) {
        let nanos = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // Every update is one assignment: a panic cannot leave it half-made.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Robot for FallbackChain {
    fn name(&self) -> &str {
        &self.name
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        self.answer(&Request::new(user, text))
    }

    fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
        let mut failures = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            let name = link.robot.name();
            let blocks = !link.robot.never_blocks();
            if blocks && request.time_left().is_some_and(|left| left < MIN_CALL) {
                // Not its fault, and not counted against it.
                failures.push(format!("{name}: no time was left for it"));
                continue;
            }
            if let Pass::Skip = self.pass(link) {
                link.skipped.fetch_add(1, Ordering::Relaxed);
                failures.push(format!("{name}: skipped after failing"));
                continue;
            }
            let left_at_start = request.time_left();
            let started = Instant::now();
            let result = call_robot(&*link.robot, request);
            link.add_time(started);
            if !starved(request, left_at_start, &result) {
                self.record(link, &result);
            }
            match result {
                Ok(reply) => {
                    link.answered.fetch_add(1, Ordering::Relaxed);
                    return Ok(reply);
                }
                // Meant for the user, and the next robot would not be told what it says.
                Err(error @ RobotError::Rejected(_)) => {
                    link.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(error);
                }
                Err(error) => {
                    link.failed.fetch_add(1, Ordering::Relaxed);
                    if let Some(next) = self.links.get(i + 1) {
                        if self.log.should_log(error.reason()) {
                            log::warn!(
                                "robot {name} failed ({}); answering with {} (each kind logged \
                                 at most once a minute)",
                                error.reason(),
                                next.robot.name()
                            );
                        }
                    }
                    failures.push(format!("{name}: {}", error.reason()));
                }
            }
        }
        Err(RobotError::Unavailable(if failures.is_empty() {
            "no robot is configured".to_owned()
        } else {
            failures.join("; ")
        }))
    }

    /// The first robot that never blocks answers (the embedded robot after a web robot): a
    /// message that waited too long for a worker is not sent on to a web API, but the person
    /// still gets an answer.
    fn answer_late(&self, request: &Request<'_>) -> Option<Result<String, RobotError>> {
        let link = self.links.iter().find(|link| link.robot.never_blocks())?;
        let started = Instant::now();
        let result = call_robot(&*link.robot, request);
        link.add_time(started);
        let counter = if result.is_ok() {
            &link.answered
        } else {
            &link.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(result)
    }

    fn end_conversation(&self, conversation: &Conversation) {
        for link in &self.links {
            link.robot.end_conversation(conversation);
        }
    }

    fn never_blocks(&self) -> bool {
        self.links.iter().all(|link| link.robot.never_blocks())
    }

    fn report(&self) -> RobotReport {
        let mut report = RobotReport::default();
        for link in &self.links {
            let inner = link.robot.report();
            report.memory_bytes += inner.memory_bytes;
            report.links.push(LinkReport {
                name: link.robot.name().to_owned(),
                answered: link.answered.load(Ordering::Relaxed),
                failed: link.failed.load(Ordering::Relaxed),
                skipped: link.skipped.load(Ordering::Relaxed),
                seconds: link.nanos.load(Ordering::Relaxed) as f64 / 1e9,
                open: !matches!(*link.lock(), Breaker::Closed { .. }),
            });
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robot::EchoRobot;
    use std::sync::atomic::AtomicBool;

    struct Down(&'static str);

    impl Robot for Down {
        fn name(&self) -> &str {
            "down"
        }
        fn reply(&self, _user: &str, _text: &str) -> Result<String, RobotError> {
            Err(RobotError::Unavailable(self.0.into()))
        }
    }

    /// Up or down as the test says; counts its calls.
    #[derive(Default)]
    struct Flaky {
        up: AtomicBool,
        calls: AtomicU64,
    }

    impl Robot for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.up.load(Ordering::Relaxed) {
                Ok(format!("flaky: {text}"))
            } else {
                Err(RobotError::Unavailable("timed out".into()))
            }
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
    fn a_late_message_is_answered_by_the_first_robot_that_never_blocks() {
        let chain = FallbackChain::new(vec![Arc::new(Down("slow")), Arc::new(EchoRobot)]);
        assert_eq!(
            chain.answer_late(&Request::new("u", "hi")),
            Some(Ok("hi".to_owned()))
        );
        let report = chain.report();
        assert_eq!((report.links[0].failed, report.links[1].answered), (0, 1));
        let web_only = FallbackChain::new(vec![Arc::new(Down("slow"))]);
        assert_eq!(web_only.answer_late(&Request::new("u", "hi")), None);
    }

    #[test]
    fn a_chain_of_robots_that_never_block_never_blocks() {
        let chain = FallbackChain::new(vec![Arc::new(EchoRobot), Arc::new(EchoRobot)]);
        assert!(chain.never_blocks());
    }

    #[test]
    fn a_failing_link_is_skipped_after_failures_in_a_row_then_probed() {
        let flaky = Arc::new(Flaky::default());
        let chain = FallbackChain::new(vec![flaky.clone(), Arc::new(EchoRobot)])
            .with_breaker(3, Duration::from_millis(100));
        for _ in 0..3 {
            assert_eq!(chain.reply("u", "hi"), Ok("hi".to_owned()));
        }
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 3);
        assert!(chain.report().links[0].open);
        // Open: skipped without a call.
        for _ in 0..10 {
            assert_eq!(chain.reply("u", "hi"), Ok("hi".to_owned()));
        }
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 3);
        assert_eq!(chain.report().links[0].skipped, 10);
        // After the cool-down one message probes it; still down, it is skipped again.
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(chain.reply("u", "hi"), Ok("hi".to_owned()));
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 4);
        assert_eq!(chain.reply("u", "hi"), Ok("hi".to_owned()));
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 4);
        // Back up: the next probe closes the breaker.
        flaky.up.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(chain.reply("u", "hi"), Ok("flaky: hi".to_owned()));
        assert_eq!(chain.reply("u", "hi"), Ok("flaky: hi".to_owned()));
        let report = chain.report();
        assert!(!report.links[0].open);
        assert_eq!((report.links[0].answered, report.links[0].failed), (2, 4));
    }

    fn request_with(left: Duration, budget: Duration) -> Request<'static> {
        Request {
            deadline: Some(Instant::now() + left),
            budget: Some(budget),
            ..Request::new("u", "hi")
        }
    }

    #[test]
    fn a_link_called_with_little_of_the_budget_left_is_not_blamed_for_failing() {
        let flaky = Arc::new(Flaky::default());
        let chain = FallbackChain::new(vec![flaky.clone(), Arc::new(EchoRobot)])
            .with_breaker(3, Duration::from_secs(60));
        let second = Duration::from_secs(1);
        // Most of the budget went waiting: five failures, and the link stays in use.
        for _ in 0..5 {
            let late = request_with(Duration::from_millis(300), second);
            assert_eq!(chain.answer(&late), Ok("hi".to_owned()));
        }
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 5);
        assert!(!chain.report().links[0].open);
        // Too little left to be worth a call: not called at all.
        let too_late = request_with(Duration::from_millis(10), second);
        assert_eq!(chain.answer(&too_late), Ok("hi".to_owned()));
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 5);
        // Failing with its fair share of the budget counts.
        for _ in 0..3 {
            assert_eq!(
                chain.answer(&request_with(second, second)),
                Ok("hi".to_owned())
            );
        }
        assert!(chain.report().links[0].open);
    }

    #[test]
    fn a_cool_down_too_long_for_the_clock_means_for_good() {
        let chain = FallbackChain::new(vec![Arc::new(Down("x")), Arc::new(EchoRobot)])
            .with_breaker(1, Duration::MAX);
        assert_eq!(chain.reply("u", "hi"), Ok("hi".to_owned()));
        assert!(chain.report().links[0].open);
    }

    #[test]
    fn one_success_resets_the_count_of_failures() {
        let flaky = Arc::new(Flaky::default());
        let chain = FallbackChain::new(vec![flaky.clone(), Arc::new(EchoRobot)])
            .with_breaker(3, Duration::from_secs(60));
        for round in 0..5 {
            flaky.up.store(false, Ordering::Relaxed);
            chain.reply("u", "a").unwrap();
            chain.reply("u", "b").unwrap();
            flaky.up.store(true, Ordering::Relaxed);
            assert_eq!(
                chain.reply("u", "c"),
                Ok("flaky: c".to_owned()),
                "round {round}"
            );
        }
        assert!(!chain.report().links[0].open);
    }

    #[test]
    fn a_rejected_message_is_not_passed_on_and_does_not_count_against_the_link() {
        struct Picky;
        impl Robot for Picky {
            fn name(&self) -> &str {
                "picky"
            }
            fn reply(&self, _user: &str, _text: &str) -> Result<String, RobotError> {
                Err(RobotError::Rejected("too long".into()))
            }
        }
        let chain = FallbackChain::new(vec![Arc::new(Picky), Arc::new(EchoRobot)])
            .with_breaker(1, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(
                chain.reply("u", "hi"),
                Err(RobotError::Rejected("too long".into()))
            );
        }
        assert!(!chain.report().links[0].open);
    }
}
