//! The embedded robot's memory of what users said their names are, by conversation: bounded, so
//! that a flood of new conversations cannot grow it without limit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::robot::Conversation;

/// Bytes counted for one remembered name besides its text: the map entries and the key.
const ENTRY_BYTES: usize = 96;

/// How many users' names are remembered unless told otherwise.
pub(super) const DEFAULT_CAPACITY: usize = 10_000;

/// Conversation → the name its user asked to be called, forgetting the least recently told when
/// full.
#[derive(Debug)]
pub(super) struct NameMemory {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Conversation → (the name, when it was told).
    names: HashMap<Conversation, (String, u64)>,
    /// When told → conversation; the first entry is the oldest, evicted first.
    by_age: BTreeMap<u64, Conversation>,
    /// About how many bytes the names take.
    bytes: usize,
    /// Increases with every name told; u64 cannot wrap in practice.
    clock: u64,
}

impl NameMemory {
    /// A memory holding at most `capacity` users' names (0 remembers nothing).
    pub fn new(capacity: usize) -> Self {
        NameMemory {
            capacity,
            inner: Mutex::default(),
        }
    }

    /// Remembers that the user of `conversation` wants to be called `name`, replacing what
    /// they said before.
    pub fn remember(&self, conversation: &Conversation, name: &str) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let told = inner.clock;
        let entry = (name.to_owned(), told);
        inner.bytes += entry_bytes(conversation, name);
        if let Some((old, previous)) = inner.names.insert(conversation.clone(), entry) {
            inner.by_age.remove(&previous);
            inner.bytes -= entry_bytes(conversation, &old);
        }
        inner.by_age.insert(told, conversation.clone());
        while inner.names.len() > self.capacity {
            let Some((_, oldest)) = inner.by_age.pop_first() else {
                break;
            };
            inner.remove(&oldest);
        }
    }

    /// The name the user of `conversation` asked to be called, if remembered.
    pub fn recall(&self, conversation: &Conversation) -> Option<String> {
        self.lock()
            .names
            .get(conversation)
            .map(|(name, _)| name.clone())
    }

    /// Forgets the name told in `conversation`.
    pub fn forget(&self, conversation: &Conversation) {
        let mut inner = self.lock();
        if let Some(told) = inner.names.get(conversation).map(|(_, told)| *told) {
            inner.by_age.remove(&told);
            inner.remove(conversation);
        }
    }

    /// About how many bytes the remembered names take.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// How many users' names are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().names.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked (no code between the two updates
        // can panic short of allocation failure), so a poisoned lock is safe to keep using.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Removes a conversation's name (its age entry is the caller's).
    fn remove(&mut self, conversation: &Conversation) {
        if let Some((name, _)) = self.names.remove(conversation) {
            self.bytes -= entry_bytes(conversation, &name);
        }
    }
}

fn entry_bytes(conversation: &Conversation, name: &str) -> usize {
    let key = match conversation {
        Conversation::Connection(_) => 0,
        Conversation::User(user) => 2 * user.len(), // in the map and in the age index
    };
    ENTRY_BYTES + key + name.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Conversation {
        Conversation::User(name.to_owned())
    }

    #[test]
    fn remembers_and_replaces() {
        let memory = NameMemory::new(10);
        assert_eq!(memory.recall(&user("alice")), None);
        memory.remember(&user("alice"), "Ally");
        memory.remember(&user("bob"), "Bobby");
        memory.remember(&user("alice"), "Al");
        assert_eq!(memory.recall(&user("alice")).as_deref(), Some("Al"));
        assert_eq!(memory.recall(&user("bob")).as_deref(), Some("Bobby"));
        assert_eq!(memory.len(), 2);
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let memory = NameMemory::new(2);
        memory.remember(&user("a"), "A");
        memory.remember(&user("b"), "B");
        memory.remember(&user("a"), "A2"); // a is now newer than b
        memory.remember(&user("c"), "C");
        assert_eq!(memory.len(), 2);
        assert_eq!(memory.recall(&user("b")), None);
        assert_eq!(memory.recall(&user("a")).as_deref(), Some("A2"));
        assert_eq!(memory.recall(&user("c")).as_deref(), Some("C"));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let memory = NameMemory::new(0);
        memory.remember(&user("a"), "A");
        assert_eq!(memory.recall(&user("a")), None);
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn forgets_a_conversation_and_counts_bytes() {
        let memory = NameMemory::new(10);
        let (a, b) = (Conversation::Connection(1), Conversation::Connection(2));
        memory.remember(&a, "Ann");
        memory.remember(&b, "Ben");
        assert_eq!(memory.recall(&a).as_deref(), Some("Ann"));
        assert_eq!(memory.bytes(), 2 * (ENTRY_BYTES + 3));
        memory.forget(&a);
        assert_eq!(memory.recall(&a), None);
        assert_eq!(memory.recall(&b).as_deref(), Some("Ben"));
        memory.forget(&b);
        assert_eq!((memory.len(), memory.bytes()), (0, 0));
    }

    #[test]
    fn stays_bounded_under_many_users() {
        let memory = NameMemory::new(100);
        for i in 0..1000 {
            memory.remember(&user(&format!("user{i}")), "x");
        }
        assert_eq!(memory.len(), 100);
        assert_eq!(memory.recall(&user("user999")).as_deref(), Some("x"));
        assert_eq!(memory.recall(&user("user0")), None);
    }
}
