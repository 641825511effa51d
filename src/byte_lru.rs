//! A least-recently-used map bounded by the bytes its values take (plus a fixed cost per
//! entry): the one eviction policy behind the node's caches of answers and of results.

use std::hash::Hash;

use lru::LruCache;
use parking_lot::Mutex;

pub struct ByteLru<K: Hash + Eq, V> {
    entries: Mutex<Entries<K, V>>,
    max_bytes: usize,
    /// What an entry costs besides its value's bytes (its key, its node, its slot).
    entry_bytes: usize,
}

struct Entries<K: Hash + Eq, V> {
    values: LruCache<K, V>,
    bytes: usize,
}

impl<K: Hash + Eq, V: AsRef<[u8]> + Clone> ByteLru<K, V> {
    /// A map of at most `max_bytes`, each entry counted as its value's length plus
    /// `entry_bytes`; 0 keeps nothing.
    pub fn new(max_bytes: usize, entry_bytes: usize) -> ByteLru<K, V> {
        ByteLru {
            entries: Mutex::new(Entries {
                values: LruCache::unbounded(),
                bytes: 0,
            }),
            max_bytes,
            entry_bytes,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().values.get(key).cloned()
    }

    /// Keeps a value, the least recently read going first; one larger than the whole
    /// map is not kept (and evicts nothing).
    pub fn insert(&self, key: K, value: V) {
        let cost = self.entry_bytes + value.as_ref().len();
        if cost > self.max_bytes {
            return;
        }
        let mut entries = self.entries.lock();
        entries.bytes += cost;
        if let Some(earlier) = entries.values.put(key, value) {
            entries.bytes -= self.entry_bytes + earlier.as_ref().len();
        }
        while entries.bytes > self.max_bytes {
            match entries.values.pop_lru() {
                Some((_, evicted)) => {
                    entries.bytes -= self.entry_bytes + evicted.as_ref().len();
                }
                None => break,
            }
        }
    }

    pub fn remove(&self, key: &K) {
        let mut entries = self.entries.lock();
        if let Some(removed) = entries.values.pop(key) {
            entries.bytes -= self.entry_bytes + removed.as_ref().len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        vec![0; n]
    }

    #[test]
    fn a_replaced_or_removed_value_gives_its_bytes_back() {
        let map = ByteLru::new(10, 0);
        map.insert(1, bytes(4));
        map.insert(1, bytes(8));
        map.insert(2, bytes(2));
        assert_eq!(
            map.get(&1).map(|value| value.len()),
            Some(8),
            "counted once"
        );
        assert!(map.get(&2).is_some());
        map.remove(&1);
        map.insert(3, bytes(8));
        assert!(
            map.get(&2).is_some() && map.get(&3).is_some(),
            "the removed value's bytes are free again"
        );
    }

    #[test]
    fn each_entry_costs_its_fixed_bytes_besides_its_value() {
        let map = ByteLru::new(10, 3);
        map.insert(1, bytes(4));
        map.insert(2, bytes(4));
        assert!(map.get(&1).is_none(), "7 + 7 bytes are over 10");
        assert!(map.get(&2).is_some());
        map.insert(3, bytes(8));
        assert!(map.get(&3).is_none(), "8 + 3 bytes never fit");
        assert!(map.get(&2).is_some(), "and evict nothing");
    }
}
