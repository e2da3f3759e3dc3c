//! A map of at most `capacity` entries that, for each new key past it, drops the
//! least recently used one, in constant time (amortised).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// The map. Every use of a key appends it to `order` with a new stamp; an older
/// stamp of that key is skipped when it comes up. `order` is compacted when it
/// grows past twice the capacity.
#[derive(Debug)]
pub struct Lru<K, V> {
    entries: HashMap<K, (V, u64)>,
    order: VecDeque<(K, u64)>,
    next_stamp: u64,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V> Lru<K, V> {
    pub fn new(capacity: usize) -> Self {
        Lru {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
            capacity: capacity.max(1),
        }
    }

    /// The value of `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let stamp = self.stamp();
        let (_, used) = self.entries.get_mut(key)?;
        *used = stamp;
        self.order.push_back((key.clone(), stamp));
        self.compact();
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Sets `key` (the most recently used), dropping the least recently used
    /// entry when the map is full.
    pub fn insert(&mut self, key: K, value: V) {
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.capacity {
                self.evict();
            }
        }
        let stamp = self.stamp();
        self.entries.insert(key.clone(), (value, stamp));
        self.order.push_back((key, stamp));
        self.compact();
    }

    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    fn is_current(&self, key: &K, stamp: u64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|(_, used)| *used == stamp)
    }

    fn evict(&mut self) {
        while let Some((key, stamp)) = self.order.pop_front() {
            if self.is_current(&key, stamp) {
                self.entries.remove(&key);
                return;
            }
        }
        // Every entry's key and stamp are in `order`: not reached with entries left.
        self.entries.clear();
    }

    fn compact(&mut self) {
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(key, stamp)| entries.get(key).is_some_and(|(_, used)| used == stamp));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut lru = Lru::new(3);
        for key in ["a", "b", "c"] {
            lru.insert(key, key.len());
        }
        assert!(lru.get(&"a").is_some(), "a is now the most recently used");
        lru.insert("d", 1);
        assert!(lru.get(&"b").is_none(), "b was the least recently used");
        assert!(lru.get(&"a").is_some() && lru.get(&"c").is_some() && lru.get(&"d").is_some());
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn a_flood_of_new_keys_never_grows_it_and_order_stays_bounded() {
        let mut lru = Lru::new(10);
        lru.insert(0u64, ());
        for key in 1..100_000u64 {
            lru.get(&0);
            lru.insert(key, ());
            assert!(lru.len() <= 10 && lru.order.len() <= 21);
        }
        assert!(lru.get(&0).is_some(), "kept in use, never evicted");
    }
}
