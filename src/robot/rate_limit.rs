//! Logging a repeated failure once in a while: each kind at most once per interval, so that a
//! robot that fails for every message does not drown the log, while a new kind of failure (the
//! API going down right after a rejected model name) is logged at once.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Kinds remembered at once; past that the one logged longest ago is forgotten.
const KINDS: usize = 32;

/// When each kind of event was last let through.
#[derive(Debug)]
pub(crate) struct RateLimit {
    every: Duration,
    last: Mutex<Vec<(String, Instant)>>,
}

impl RateLimit {
    /// Lets each kind through at most once per `every`.
    pub fn new(every: Duration) -> Self {
        RateLimit {
            every,
            last: Mutex::new(Vec::new()),
        }
    }

    /// Whether an event described by `kind` (never a user's words) should be logged now; if
    /// so, it counts as logged. Descriptions that differ only in their numbers ("no answer
    /// within 0.28 s", "… 0.4 s") are one kind.
    pub fn should_log(&self, kind: &str) -> bool {
        self.should_log_at(kind, Instant::now())
    }

    fn should_log_at(&self, kind: &str, now: Instant) -> bool {
        let kind = without_numbers(kind);
        let kind = kind.as_str();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, at)) = last.iter_mut().find(|(k, _)| k == kind) {
            if now.saturating_duration_since(*at) < self.every {
                return false;
            }
            *at = now;
            return true;
        }
        if last.len() == KINDS {
            if let Some(oldest) = (0..last.len()).min_by_key(|&i| last[i].1) {
                last.swap_remove(oldest);
            }
        }
        last.push((kind.to_owned(), now));
        true
    }
}

/// `text` without its numbers (digits, and a decimal point before a digit).
fn without_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let decimal_point = c == '.' && chars.peek().is_some_and(char::is_ascii_digit);
        if !c.is_ascii_digit() && !decimal_point {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_limited_on_its_own() {
        let limit = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limit.should_log_at("model not found", t0));
        assert!(!limit.should_log_at("model not found", t0 + Duration::from_secs(1)));
        // A new kind right after the first is logged.
        assert!(limit.should_log_at("connection refused", t0 + Duration::from_secs(2)));
        assert!(!limit.should_log_at("connection refused", t0 + Duration::from_secs(3)));
        assert!(limit.should_log_at("model not found", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn descriptions_that_differ_only_in_numbers_are_one_kind() {
        let limit = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limit.should_log_at("no answer within 0.281 s", t0));
        assert!(!limit.should_log_at("no answer within 0.397 s", t0));
        assert!(!limit.should_log_at("no answer within 10 s", t0));
        assert!(limit.should_log_at("connection refused. Is it running?", t0));
        assert_eq!(without_numbers("v1.2 took 0.5 s. Done"), "v took  s. Done");
    }

    #[test]
    fn the_kinds_remembered_are_bounded() {
        let limit = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(limit.should_log_at(&format!("kind {}", "x".repeat(i)), t0));
        }
        assert_eq!(limit.last.lock().unwrap().len(), KINDS);
    }
}
