//! Embedding robochat with a robot of your own.
//!
//! Run it with `cargo run --example custom_robot`, then chat with it from another terminal:
//! `cargo run -- chat --connect 127.0.0.1:9998`. Press Ctrl-C to stop it.

use std::collections::HashMap;
use std::sync::Mutex;

use robochat::signals::TerminationSignals;
use robochat::{Robot, RobotError, Server};

/// Counts how many times each user has spoken and answers in kind.
#[derive(Default)]
struct CountingRobot {
    seen: Mutex<HashMap<String, u64>>,
}

impl Robot for CountingRobot {
    fn name(&self) -> &str {
        "counting"
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| RobotError::Failed("its memory is damaged".into()))?;
        // Bound the memory a stream of new usernames can take.
        if seen.len() >= 10_000 && !seen.contains_key(user) {
            seen.clear();
        }
        let count = seen.entry(user.to_owned()).or_insert(0);
        *count += 1;
        Ok(format!(
            "{user}, that is message number {count} from you. You said: {text}"
        ))
    }

    fn never_blocks(&self) -> bool {
        true // a short lock and a format: fine to run on the event loop
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Block SIGINT/SIGTERM before the workers start, so Ctrl-C means a graceful shutdown.
    let signals = TerminationSignals::block()?;
    let server = Server::builder()
        .listen("127.0.0.1:9998")
        .robot(CountingRobot::default())
        .workers(2)
        .build()?;
    println!("listening on {}; press Ctrl-C to stop", server.local_addr());
    signals.shut_down_on_signal(server.handle())?;
    server.run()?;
    println!("stopped");
    Ok(())
}
