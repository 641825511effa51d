//! A bounded cache of the results this node has read from the database, by bytes:
//! a result is written once and never changes, so the only way one goes stale is its
//! job's deletion, which every read checks in the database first.

use std::sync::Arc;

use crate::byte_lru::ByteLru;
use crate::jobs::JobId;

/// Results are large: their bytes are what counts.
pub(super) struct ResultCache(ByteLru<JobId, Arc<[u8]>>);

impl ResultCache {
    pub(super) fn new(max_bytes: usize) -> ResultCache {
        ResultCache(ByteLru::new(max_bytes, 0))
    }

    pub(super) fn get(&self, id: JobId) -> Option<Arc<[u8]>> {
        self.0.get(&id)
    }

    /// Keeps a result, the least recently read going first; one larger than the whole
    /// cache is not kept.
    pub(super) fn insert(&self, id: JobId, result: Arc<[u8]>) {
        self.0.insert(id, result);
    }

    pub(super) fn remove(&self, id: JobId) {
        self.0.remove(&id);
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
