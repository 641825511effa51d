//! A bounded cache of the results this node has read from the database, by bytes:
//! a result is written once and never changes, so the only way one goes stale is its
//! job's deletion, which every read checks in the database first.

use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::jobs::JobId;

pub(super) struct ResultCache {
    entries: Mutex<Entries>,
    max_bytes: usize,
}

struct Entries {
    results: LruCache<JobId, Arc<[u8]>>,
    bytes: usize,
}

impl ResultCache {
    pub(super) fn new(max_bytes: usize) -> ResultCache {
        ResultCache {
            entries: Mutex::new(Entries {
                results: LruCache::unbounded(),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    pub(super) fn get(&self, id: JobId) -> Option<Arc<[u8]>> {
        self.entries.lock().results.get(&id).cloned()
    }

    /// Keeps a result, the least recently read going first; one larger than the whole
    /// cache is not kept.
    pub(super) fn insert(&self, id: JobId, result: Arc<[u8]>) {
        if result.len() > self.max_bytes {
            return;
        }
        let mut entries = self.entries.lock();
        entries.bytes += result.len();
        if let Some(earlier) = entries.results.put(id, result) {
            entries.bytes -= earlier.len();
        }
        while entries.bytes > self.max_bytes {
            match entries.results.pop_lru() {
                Some((_, evicted)) => entries.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    pub(super) fn remove(&self, id: JobId) {
        let mut entries = self.entries.lock();
        if let Some(removed) = entries.results.pop(&id) {
            entries.bytes -= removed.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_read_result_goes_first_when_the_bytes_are_over() {
        let cache = ResultCache::new(10);
        let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
        cache.insert(a, Arc::from(vec![0; 4]));
        cache.insert(b, Arc::from(vec![0; 4]));
        assert!(cache.get(a).is_some());
        cache.insert(c, Arc::from(vec![0; 4]));
        assert!(cache.get(b).is_none(), "b was read least recently");
        assert!(cache.get(a).is_some() && cache.get(c).is_some());
        cache.insert(JobId::generate(), Arc::from(vec![0; 11]));
        assert!(
            cache.get(a).is_some(),
            "a result over the bound is not kept"
        );
    }
}
