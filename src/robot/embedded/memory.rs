//! The embedded robot's memory of what users said their names are: bounded, so that a flood of
//! new user names cannot grow it without limit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// How many users' names are remembered unless told otherwise.
pub(super) const DEFAULT_CAPACITY: usize = 10_000;

/// User name → the name they asked to be called, forgetting the least recently told when full.
#[derive(Debug)]
pub(super) struct NameMemory {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// User → (their name, when it was told).
    names: HashMap<String, (String, u64)>,
    /// When told → user; the first entry is the oldest, evicted first.
    by_age: BTreeMap<u64, String>,
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

    /// Remembers that `user` wants to be called `name`, replacing what they said before.
    pub fn remember(&self, user: &str, name: &str) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let told = inner.clock;
        if let Some((_, previous)) = inner.names.insert(user.to_owned(), (name.to_owned(), told)) {
            inner.by_age.remove(&previous);
        }
        inner.by_age.insert(told, user.to_owned());
        while inner.names.len() > self.capacity {
            let Some((_, oldest)) = inner.by_age.pop_first() else {
                break;
            };
            inner.names.remove(&oldest);
        }
    }

    /// The name `user` asked to be called, if remembered.
    pub fn recall(&self, user: &str) -> Option<String> {
        self.lock().names.get(user).map(|(name, _)| name.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_replaces() {
        let memory = NameMemory::new(10);
        assert_eq!(memory.recall("alice"), None);
        memory.remember("alice", "Ally");
        memory.remember("bob", "Bobby");
        memory.remember("alice", "Al");
        assert_eq!(memory.recall("alice").as_deref(), Some("Al"));
        assert_eq!(memory.recall("bob").as_deref(), Some("Bobby"));
        assert_eq!(memory.len(), 2);
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let memory = NameMemory::new(2);
        memory.remember("a", "A");
        memory.remember("b", "B");
        memory.remember("a", "A2"); // a is now newer than b
        memory.remember("c", "C");
        assert_eq!(memory.len(), 2);
        assert_eq!(memory.recall("b"), None);
        assert_eq!(memory.recall("a").as_deref(), Some("A2"));
        assert_eq!(memory.recall("c").as_deref(), Some("C"));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let memory = NameMemory::new(0);
        memory.remember("a", "A");
        assert_eq!(memory.recall("a"), None);
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn stays_bounded_under_many_users() {
        let memory = NameMemory::new(100);
        for i in 0..1000 {
            memory.remember(&format!("user{i}"), "x");
        }
        assert_eq!(memory.len(), 100);
        assert_eq!(memory.recall("user999").as_deref(), Some("x"));
        assert_eq!(memory.recall("user0"), None);
    }
}
