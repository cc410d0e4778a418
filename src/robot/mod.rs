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

use std::fmt;

pub use chain::FallbackChain;
pub use echo::EchoRobot;
pub use embedded::{EmbeddedRobot, RulesError};

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

    /// Whether [`reply`](Robot::reply) always returns quickly without waiting on I/O, locks held
    /// for long, or sleeps. Only such robots may run on the event loop thread (`workers(0)`).
    fn never_blocks(&self) -> bool {
        false
    }

    /// For metrics: the calls made to the robots inside this one (a fallback chain's links),
    /// as `(name, answered, failed)`. Empty for a robot that is not made of robots.
    fn inner_calls(&self) -> Vec<(String, u64, u64)> {
        Vec::new()
    }
}

/// Why a robot could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotError {
    /// The robot could not be reached or did not answer in time.
    Unavailable(String),
    /// The robot answered, but with an error instead of a reply.
    Failed(String),
}

impl fmt::Display for RobotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RobotError::Unavailable(why) => write!(f, "the robot is unavailable: {why}"),
            RobotError::Failed(why) => write!(f, "the robot failed: {why}"),
        }
    }
}

impl RobotError {
    /// The reason alone, without the kind of failure in front of it.
    pub fn reason(&self) -> &str {
        match self {
            RobotError::Unavailable(why) | RobotError::Failed(why) => why,
        }
    }
}

impl std::error::Error for RobotError {}

impl<R: Robot + ?Sized> Robot for std::sync::Arc<R> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        (**self).reply(user, text)
    }
    fn never_blocks(&self) -> bool {
        (**self).never_blocks()
    }
    fn inner_calls(&self) -> Vec<(String, u64, u64)> {
        (**self).inner_calls()
    }
}

impl<R: Robot + ?Sized> Robot for Box<R> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        (**self).reply(user, text)
    }
    fn never_blocks(&self) -> bool {
        (**self).never_blocks()
    }
    fn inner_calls(&self) -> Vec<(String, u64, u64)> {
        (**self).inner_calls()
    }
}

/// Calls `robot`, turning a panic inside it into a [`RobotError`], so that a faulty robot costs
/// one error line and never a worker thread or the event loop.
pub(crate) fn call_robot(robot: &dyn Robot, user: &str, text: &str) -> Result<String, RobotError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| robot.reply(user, text)))
        .unwrap_or_else(|_| Err(RobotError::Failed("it crashed (panicked)".into())))
}
