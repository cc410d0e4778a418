//! Robots: what answers a user's message.
//!
//! A [`Robot`] is called on a worker thread of the server's pool, never on the event loop (unless
//! the server runs with zero workers, which is allowed only for robots that say they never block).
//! Robots must be `Send + Sync`: several workers call the same robot at once.

mod chain;
mod echo;
mod embedded;
#[cfg(feature = "http")]
pub mod http;
mod rate_limit;

use std::fmt;
use std::time::Instant;

pub use chain::{FallbackChain, DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_FAILURES};
pub use echo::EchoRobot;
pub use embedded::{EmbeddedRobot, RulesError};
pub(crate) use rate_limit::RateLimit;

/// Something that answers chat messages.
///
/// # Example
///
/// ```
/// use robochat::{Robot, RobotError};
///
/// struct Shouter;
///
/// impl Robot for Shouter {
///     fn name(&self) -> &str {
///         "shouter"
///     }
///     fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
///         Ok(text.to_uppercase())
///     }
///     fn never_blocks(&self) -> bool {
///         true // pure computation: safe to run on the event loop with `workers(0)`
///     }
/// }
///
/// assert_eq!(Shouter.reply("bob", "hi").unwrap(), "HI");
/// ```
pub trait Robot: Send + Sync {
    /// A short name for logs and start-up messages, such as `"embedded"`.
    fn name(&self) -> &str;

    /// Answers one message `text` from the user called `user`.
    ///
    /// The reply may contain newlines; the server turns them into spaces so that one message
    /// always gets one reply line. A panic here is caught and reported to the user as a robot
    /// failure.
    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError>;

    /// Answers one message with all that the server knows of it: the conversation it belongs to
    /// (what a robot that remembers must key its memory by) and the time by which an answer is
    /// still of use. The server calls this; the default calls [`reply`](Robot::reply), which is
    /// right for robots that remember nothing and never wait.
    fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
        self.reply(request.user, request.text)
    }

    /// Answers a message whose deadline passed while it waited for a worker, if the robot can
    /// without waiting; `None` if not, and the user is told that the robot was busy. By default
    /// a robot that never blocks answers (it costs microseconds) and others do not.
    fn answer_late(&self, request: &Request<'_>) -> Option<Result<String, RobotError>> {
        self.never_blocks().then(|| self.answer(request))
    }

    /// Forgets what the robot remembers of `conversation` (its connection has closed). Called
    /// on the event loop: it must only drop memory, never wait.
    fn end_conversation(&self, _conversation: &Conversation) {}

    /// Whether [`reply`](Robot::reply) always returns quickly without waiting on I/O, locks held
    /// for long, or sleeps. Only such robots may run on the event loop thread (`workers(0)`).
    fn never_blocks(&self) -> bool {
        false
    }

    /// For metrics: what the robot holds in memory and, for a robot made of robots (a fallback
    /// chain), how each of them did.
    fn report(&self) -> RobotReport {
        RobotReport::default()
    }
}

/// One message for a robot.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The username the message came with. Anyone can send any username.
    pub user: &'a str,
    /// The message.
    pub text: &'a str,
    /// The conversation it belongs to: what a robot's memory of earlier turns is kept by.
    pub conversation: Conversation,
    /// When an answer stops being of use (the sender's budget, counted from when the message
    /// was queued); `None` for no limit beyond the robot's own.
    pub deadline: Option<Instant>,
    /// The whole of that budget, of which waiting for a worker (and earlier robots of a chain)
    /// may have taken some.
    pub budget: Option<std::time::Duration>,
}

impl<'a> Request<'a> {
    /// A message from `user`, in the conversation of everyone who uses that name, with no
    /// deadline: what [`Robot::reply`] means.
    pub fn new(user: &'a str, text: &'a str) -> Self {
        Request {
            user,
            text,
            conversation: Conversation::User(user.to_owned()),
            deadline: None,
            budget: None,
        }
    }

    /// The time left before the deadline, if there is one (zero once it has passed).
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }
}

/// Whose conversation a message is part of, which decides who shares a robot's memory of it
/// (a chat model's history, a remembered name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// One connection's: private to it, and forgotten when it closes. The id is the server's
    /// and unique among its open connections; nothing a client sends can choose it.
    Connection(u64),
    /// Everyone's who sends this username (`--history-scope user`): for deployments where
    /// usernames are trusted.
    User(String),
}

/// What a robot tells the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RobotReport {
    /// Bytes held in memory of conversations (histories, remembered names).
    pub memory_bytes: u64,
    /// For a robot made of robots, each one's record, in order; empty otherwise.
    pub links: Vec<LinkReport>,
}

/// How one link of a fallback chain has done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkReport {
    /// The robot's name.
    pub name: String,
    /// Calls that it answered.
    pub answered: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Messages that went past it without a call, because its circuit breaker was open.
    pub skipped: u64,
    /// The time of all its calls together, in seconds.
    pub seconds: f64,
    /// Whether its circuit breaker is open (it is being skipped) now.
    pub open: bool,
}

/// Why a robot could not answer.
///
/// The reasons are for the operator's log: they may name URLs and paths. A user is told only
/// [`RobotError::for_user`], which names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotError {
    /// The robot could not be reached or did not answer in time.
    Unavailable(String),
    /// The robot answered, but with an error instead of a reply.
    Failed(String),
    /// The robot will not answer this message as it is (too long for the model, say). The
    /// reason is written for the user who sent it.
    Rejected(String),
}

impl fmt::Display for RobotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RobotError::Unavailable(why) => write!(f, "the robot is unavailable: {why}"),
            RobotError::Failed(why) => write!(f, "the robot failed: {why}"),
            RobotError::Rejected(why) => write!(f, "{why}"),
        }
    }
}

impl RobotError {
    /// The reason alone, without the kind of failure in front of it.
    pub fn reason(&self) -> &str {
        match self {
            RobotError::Unavailable(why) | RobotError::Failed(why) | RobotError::Rejected(why) => {
                why
            }
        }
    }

    /// What the user who sent the message is told: the kind of failure, and no detail that
    /// belongs to the operator (a URL, an API path, what the API said).
    pub fn for_user(&self) -> &str {
        match self {
            RobotError::Unavailable(_) => "the robot is unavailable; please try again later",
            RobotError::Failed(_) => "the robot could not answer",
            RobotError::Rejected(why) => why,
        }
    }
}

impl std::error::Error for RobotError {}

/// A robot behind a pointer is that robot: every method goes to it.
macro_rules! forward_robot {
    ($($pointer:ident)::+) => {
        impl<R: Robot + ?Sized> Robot for $($pointer)::+<R> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
                (**self).reply(user, text)
            }
            fn never_blocks(&self) -> bool {
                (**self).never_blocks()
            }
            fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
                (**self).answer(request)
            }
            fn answer_late(&self, request: &Request<'_>) -> Option<Result<String, RobotError>> {
                (**self).answer_late(request)
            }
            fn end_conversation(&self, conversation: &Conversation) {
                (**self).end_conversation(conversation)
            }
            fn report(&self) -> RobotReport {
                (**self).report()
            }
        }
    };
}

forward_robot!(std::sync::Arc);
forward_robot!(Box);

/// `now + after`, or a time so far ahead that it never comes if that does not fit an `Instant`
/// (a library user may give `Duration::MAX` for "no limit").
pub(crate) fn deadline_after(now: Instant, after: std::time::Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Calls `robot`, turning a panic inside it into a [`RobotError`], so that a faulty robot costs
/// one error line and never a worker thread or the event loop.
pub(crate) fn call_robot(robot: &dyn Robot, request: &Request<'_>) -> Result<String, RobotError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| robot.answer(request)))
        .unwrap_or_else(|_| Err(RobotError::Failed("it crashed (panicked)".into())))
}
