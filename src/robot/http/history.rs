//! Bounded per-user conversation memory for the chat robots.
//!
//! A chat model answers better when it sees the last few turns of the conversation, but a server
//! that keeps every turn of every username it ever saw can be made to run out of memory (a million
//! distinct usernames cost nothing to send). So everything here is bounded: at most `turns` turns
//! per user, at most `max_users` users (the least recently used is forgotten first), and at most
//! [`MAX_TURN_CHARS`] characters kept of each side of a turn.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::text::cut_to_chars;

/// The most characters kept of a user's text or of a reply, per turn.
pub(crate) const MAX_TURN_CHARS: usize = 2000;

/// One exchange: what the user said and what the robot answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Turn {
    /// The user's text.
    pub user: String,
    /// The robot's reply.
    pub reply: String,
}

/// Recent turns per user, bounded in turns per user and in users (least recently used evicted).
///
/// The lock is held only to copy or append a few turns, never while a robot waits on the network.
#[derive(Debug)]
pub(crate) struct History {
    turns: usize,
    max_users: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<String, Entry>,
    /// Users by the tick of their last use, oldest first: the next to evict is the first.
    by_age: BTreeMap<u64, String>,
    tick: u64,
}

#[derive(Debug)]
struct Entry {
    turns: VecDeque<Turn>,
    last_used: u64,
}

impl Inner {
    /// Marks `user` (present in `users`) as just used.
    fn touch(&mut self, user: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.users.get_mut(user) {
            if let Some(name) = self.by_age.remove(&entry.last_used) {
                self.by_age.insert(tick, name);
            }
            entry.last_used = tick;
        }
    }
}

impl History {
    /// Keeps at most `turns` turns for each of at most `max_users` users; either 0 keeps nothing.
    pub fn new(turns: usize, max_users: usize) -> History {
        History {
            turns,
            max_users,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether anything is kept at all.
    fn enabled(&self) -> bool {
        self.turns > 0 && self.max_users > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data stays consistent between statements, so a panic elsewhere while holding the
        // lock (there is no code that could) would not leave it half-updated.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of `user`'s recent turns, oldest first, marking the user as recently used.
    pub fn recent(&self, user: &str) -> Vec<Turn> {
        if !self.enabled() {
            return Vec::new();
        }
        let mut inner = self.lock();
        let turns = match inner.users.get(user) {
            Some(entry) => entry.turns.iter().cloned().collect(),
            None => return Vec::new(),
        };
        inner.touch(user);
        turns
    }

    /// Appends a turn to `user`'s history, dropping their oldest turn beyond the cap and, for a
    /// new user beyond the user cap, the least recently used user.
    pub fn push(&self, user: &str, text: &str, reply: &str) {
        if !self.enabled() {
            return;
        }
        let turn = Turn {
            user: cut_to_chars(text, MAX_TURN_CHARS).to_owned(),
            reply: cut_to_chars(reply, MAX_TURN_CHARS).to_owned(),
        };
        let mut inner = self.lock();
        if !inner.users.contains_key(user) {
            while inner.users.len() >= self.max_users {
                match inner.by_age.pop_first() {
                    Some((_, oldest)) => {
                        inner.users.remove(&oldest);
                    }
                    None => break,
                }
            }
            inner.tick += 1;
            let tick = inner.tick;
            inner.by_age.insert(tick, user.to_owned());
            inner.users.insert(
                user.to_owned(),
                Entry {
                    turns: VecDeque::new(),
                    last_used: tick,
                },
            );
        } else {
            inner.touch(user);
        }
        if let Some(entry) = inner.users.get_mut(user) {
            while entry.turns.len() >= self.turns {
                entry.turns.pop_front();
            }
            entry.turns.push_back(turn);
        }
    }

    /// How many users have a history (for tests).
    #[cfg(test)]
    pub fn users(&self) -> usize {
        self.lock().users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_of(history: &History, names: &[&str]) -> Vec<usize> {
        names.iter().map(|n| history.recent(n).len()).collect()
    }

    #[test]
    fn turns_per_user_are_capped() {
        let history = History::new(2, 10);
        for i in 0..5 {
            history.push("bob", &format!("q{i}"), &format!("a{i}"));
        }
        let turns = history.recent("bob");
        assert_eq!(
            turns.iter().map(|t| t.user.as_str()).collect::<Vec<_>>(),
            ["q3", "q4"]
        );
        assert_eq!(turns[1].reply, "a4");
    }

    #[test]
    fn least_recently_used_user_is_evicted() {
        let history = History::new(3, 2);
        history.push("a", "1", "1");
        history.push("b", "1", "1");
        assert_eq!(history.recent("a").len(), 1); // a is now more recent than b
        history.push("c", "1", "1");
        assert_eq!(history.users(), 2);
        assert_eq!(users_of(&history, &["a", "b", "c"]), [1, 0, 1]);
    }

    #[test]
    fn many_users_stay_bounded() {
        let history = History::new(1, 100);
        for i in 0..10_000 {
            history.push(&format!("user{i}"), "hi", "hello");
        }
        assert_eq!(history.users(), 100);
        assert_eq!(history.recent("user9999").len(), 1);
        assert!(history.recent("user0").is_empty());
    }

    #[test]
    fn turns_are_cut_at_a_character_boundary() {
        let history = History::new(1, 1);
        history.push("bob", &"中".repeat(MAX_TURN_CHARS + 5), "ok");
        assert_eq!(
            history.recent("bob")[0].user.chars().count(),
            MAX_TURN_CHARS
        );
    }

    #[test]
    fn zero_keeps_nothing() {
        let history = History::new(0, 10);
        history.push("bob", "q", "a");
        assert!(history.recent("bob").is_empty());
        assert_eq!(history.users(), 0);
    }
}
