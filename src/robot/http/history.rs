//! Bounded conversation memory for the chat robots.
//!
//! A chat model answers better when it sees the last few turns of the conversation, but a server
//! that keeps every turn of every conversation can be made to run out of memory (a million
//! connections or usernames cost nothing to make), and a conversation that grows past the
//! model's context makes every later request fail. So everything here is bounded: per
//! conversation, at most `turns` turns and `chars` characters (the oldest turns go first; a turn
//! larger than that is not kept at all); across all conversations, at most `memory` bytes and
//! `max_conversations` conversations, the least recently used forgotten first.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::robot::Conversation;

/// Bytes counted for a conversation besides its text: its map entries, key and bookkeeping.
const CONVERSATION_BYTES: usize = 160;
/// Bytes counted for a turn besides its text.
const TURN_BYTES: usize = 48;

/// One exchange: what the user said and what the robot answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Turn {
    /// The user's text.
    pub user: String,
    /// The robot's reply.
    pub reply: String,
}

impl Turn {
    fn chars(&self) -> usize {
        self.user.chars().count() + self.reply.chars().count()
    }

    fn bytes(&self) -> usize {
        TURN_BYTES + self.user.len() + self.reply.len()
    }
}

/// The limits of a [`History`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Turns kept per conversation (0 keeps nothing).
    pub turns: usize,
    /// Characters kept per conversation, both sides of every turn together.
    pub chars: usize,
    /// Conversations kept.
    pub max_conversations: usize,
    /// Bytes kept, all conversations together.
    pub memory: usize,
}

/// Recent turns per conversation, within [`Limits`].
///
/// The lock is held only to copy or change a few turns, never while a robot waits on the
/// network.
#[derive(Debug)]
pub(crate) struct History {
    limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    conversations: HashMap<Conversation, Entry>,
    /// Conversations by the tick of their last use, oldest first: the next to evict is first.
    by_age: BTreeMap<u64, Conversation>,
    tick: u64,
    /// Bytes of every conversation together.
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    turns: VecDeque<Turn>,
    chars: usize,
    bytes: usize,
    last_used: u64,
}

impl Inner {
    /// Marks `conversation` (present) as just used.
    fn touch(&mut self, conversation: &Conversation) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.conversations.get_mut(conversation) {
            if let Some(key) = self.by_age.remove(&entry.last_used) {
                self.by_age.insert(tick, key);
            }
            entry.last_used = tick;
        }
    }

    fn remove(&mut self, conversation: &Conversation) {
        if let Some(entry) = self.conversations.remove(conversation) {
            self.by_age.remove(&entry.last_used);
            self.bytes -= entry.bytes;
        }
    }

    /// Drops turns from the front of `conversation` while `too_many` says so.
    fn drop_oldest(&mut self, conversation: &Conversation, too_many: impl Fn(&Entry) -> bool) {
        let Some(entry) = self.conversations.get_mut(conversation) else {
            return;
        };
        while too_many(entry) {
            let Some(turn) = entry.turns.pop_front() else {
                break;
            };
            entry.chars -= turn.chars();
            entry.bytes -= turn.bytes();
            self.bytes -= turn.bytes();
        }
        if entry.turns.is_empty() {
            self.remove(conversation);
        }
    }
}

/// The bytes a conversation costs besides its turns: its entries, and a username key twice
/// (in the map and in the age index).
fn conversation_bytes(conversation: &Conversation) -> usize {
    match conversation {
        Conversation::Connection(_) => CONVERSATION_BYTES,
        Conversation::User(user) => CONVERSATION_BYTES + 2 * user.len(),
    }
}

impl History {
    pub fn new(limits: Limits) -> History {
        History {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether anything is kept at all.
    fn enabled(&self) -> bool {
        let l = &self.limits;
        l.turns > 0 && l.chars > 0 && l.max_conversations > 0 && l.memory > 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change keeps the counts consistent before anything that could panic (there is
        // nothing that could, short of running out of memory): a poisoned lock is safe to use.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the conversation's recent turns, oldest first, marking it as recently used.
    pub fn recent(&self, conversation: &Conversation) -> Vec<Turn> {
        if !self.enabled() {
            return Vec::new();
        }
        let mut inner = self.lock();
        let turns = match inner.conversations.get(conversation) {
            Some(entry) => entry.turns.iter().cloned().collect(),
            None => return Vec::new(),
        };
        inner.touch(conversation);
        turns
    }

    /// Keeps only the newest `keep` turns of the conversation (those a model could take).
    pub fn keep_newest(&self, conversation: &Conversation, keep: usize) {
        self.lock()
            .drop_oldest(conversation, |entry| entry.turns.len() > keep);
    }

    /// Appends a turn to the conversation, then drops its oldest turns past the limits of turns
    /// and characters, and the least recently used conversations past the limits of memory and
    /// conversations.
    pub fn push(&self, conversation: &Conversation, text: &str, reply: &str) {
        if !self.enabled() {
            return;
        }
        let turn = Turn {
            user: text.to_owned(),
            reply: reply.to_owned(),
        };
        let (chars, bytes) = (turn.chars(), turn.bytes());
        let limits = self.limits;
        if bytes + conversation_bytes(conversation) > limits.memory {
            // Alone past all the memory there is: keeping it would only evict everyone else.
            self.forget(conversation);
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.conversations.contains_key(conversation) {
            inner.touch(conversation);
        } else {
            inner.tick += 1;
            let tick = inner.tick;
            inner.by_age.insert(tick, conversation.clone());
            let own = conversation_bytes(conversation);
            inner.bytes += own;
            inner.conversations.insert(
                conversation.clone(),
                Entry {
                    turns: VecDeque::new(),
                    chars: 0,
                    bytes: own,
                    last_used: tick,
                },
            );
        }
        if let Some(entry) = inner.conversations.get_mut(conversation) {
            entry.turns.push_back(turn);
            entry.chars += chars;
            entry.bytes += bytes;
            inner.bytes += bytes;
        }
        inner.drop_oldest(conversation, |entry| {
            entry.turns.len() > limits.turns || entry.chars > limits.chars
        });
        while inner.bytes > limits.memory || inner.conversations.len() > limits.max_conversations {
            let Some((_, oldest)) = inner.by_age.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            inner.remove(&oldest);
        }
    }

    /// Forgets the conversation.
    pub fn forget(&self, conversation: &Conversation) {
        self.lock().remove(conversation);
    }

    /// About how many bytes the kept turns take.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// How many conversations are kept (for tests).
    #[cfg(test)]
    pub fn conversations(&self) -> usize {
        self.lock().conversations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(turns: usize, max_conversations: usize) -> Limits {
        Limits {
            turns,
            chars: 100_000,
            max_conversations,
            memory: usize::MAX,
        }
    }

    fn user(name: &str) -> Conversation {
        Conversation::User(name.to_owned())
    }

    fn texts(history: &History, conversation: &Conversation) -> Vec<String> {
        history
            .recent(conversation)
            .into_iter()
            .map(|t| t.user)
            .collect()
    }

    #[test]
    fn turns_per_conversation_are_capped() {
        let history = History::new(limits(2, 10));
        let bob = user("bob");
        for i in 0..5 {
            history.push(&bob, &format!("q{i}"), &format!("a{i}"));
        }
        assert_eq!(texts(&history, &bob), ["q3", "q4"]);
        assert_eq!(history.recent(&bob)[1].reply, "a4");
    }

    #[test]
    fn conversations_are_kept_apart() {
        let history = History::new(limits(8, 10));
        let (one, two) = (Conversation::Connection(1), Conversation::Connection(2));
        history.push(&one, "secret of one", "ok");
        history.push(&two, "hello", "hi");
        assert_eq!(texts(&history, &one), ["secret of one"]);
        assert_eq!(texts(&history, &two), ["hello"]);
        assert!(history.recent(&user("小明")).is_empty());
        history.forget(&one);
        assert!(history.recent(&one).is_empty());
        assert_eq!(texts(&history, &two), ["hello"]);
    }

    #[test]
    fn least_recently_used_conversation_is_evicted() {
        let history = History::new(limits(3, 2));
        history.push(&user("a"), "1", "1");
        history.push(&user("b"), "1", "1");
        assert_eq!(history.recent(&user("a")).len(), 1); // a is now more recent than b
        history.push(&user("c"), "1", "1");
        assert_eq!(history.conversations(), 2);
        assert!(history.recent(&user("b")).is_empty());
        assert_eq!(history.recent(&user("a")).len(), 1);
        assert_eq!(history.recent(&user("c")).len(), 1);
    }

    #[test]
    fn characters_per_conversation_are_capped_and_a_huge_turn_is_not_kept() {
        let history = History::new(Limits {
            chars: 100,
            ..limits(8, 10)
        });
        let c = Conversation::Connection(7);
        history.push(&c, &"9".repeat(1850), "ok");
        assert!(
            history.recent(&c).is_empty(),
            "a turn past the limit is not kept"
        );
        for i in 0..10 {
            history.push(&c, &format!("msg {i} {}", "x".repeat(20)), "fine");
        }
        let kept = history.recent(&c);
        assert!(kept.iter().map(Turn::chars).sum::<usize>() <= 100);
        assert_eq!(
            kept.last().unwrap().user,
            format!("msg 9 {}", "x".repeat(20))
        );
        assert_eq!(history.bytes(), {
            let turns: usize = kept.iter().map(Turn::bytes).sum();
            CONVERSATION_BYTES + turns
        });
    }

    #[test]
    fn memory_is_bounded_across_conversations() {
        let memory = 64 * 1024;
        let history = History::new(Limits {
            memory,
            ..limits(8, 1_000_000)
        });
        for i in 0..10_000 {
            history.push(
                &Conversation::Connection(i),
                &"q".repeat(500),
                &"a".repeat(500),
            );
            assert!(history.bytes() <= memory);
        }
        assert!(history.recent(&Conversation::Connection(9_999)).len() == 1);
        assert!(history.recent(&Conversation::Connection(0)).is_empty());
        assert!(history.conversations() < 100);
        // A turn larger than all the memory is not kept, and evicts nobody.
        history.push(&Conversation::Connection(1), &"q".repeat(70_000), "a");
        assert!(history.recent(&Conversation::Connection(1)).is_empty());
        assert_eq!(history.recent(&Conversation::Connection(9_999)).len(), 1);
    }

    #[test]
    fn keeping_the_newest_turns() {
        let history = History::new(limits(8, 10));
        let c = Conversation::Connection(1);
        for i in 0..6 {
            history.push(&c, &format!("q{i}"), "a");
        }
        history.keep_newest(&c, 2);
        assert_eq!(texts(&history, &c), ["q4", "q5"]);
        history.keep_newest(&c, 0);
        assert!(history.recent(&c).is_empty());
        assert_eq!(history.bytes(), 0);
    }

    #[test]
    fn zero_keeps_nothing() {
        let history = History::new(limits(0, 10));
        history.push(&user("bob"), "q", "a");
        assert!(history.recent(&user("bob")).is_empty());
        assert_eq!(history.conversations(), 0);
    }
}
