//! The echo robot: replies with the text unchanged, for tests and benchmarks.

use super::{Robot, RobotError};

/// Replies with the message text unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoRobot;

impl Robot for EchoRobot {
    fn name(&self) -> &str {
        "echo"
    }

    fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
        Ok(text.to_owned())
    }

    fn never_blocks(&self) -> bool {
        true
    }
}
