//! The `/api/get_results` answers of done jobs, kept in memory by bytes so that a
//! repeated read is neither a hop to the blocking pool nor a file read. A done job's
//! answer never changes; the cache is read only after the job is known done (so a
//! deleted job answers 404 whatever the cache holds), and a delete drops its entry.

use actix_web::web::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

use crate::jobs::JobId;

pub struct AnswerCache {
    entries: Mutex<Entries>,
    max_bytes: usize,
}

struct Entries {
    answers: LruCache<JobId, Bytes>,
    bytes: usize,
}

impl AnswerCache {
    /// A cache of at most `max_bytes` of answers; 0 keeps none.
    pub fn new(max_bytes: usize) -> AnswerCache {
        AnswerCache {
            entries: Mutex::new(Entries {
                answers: LruCache::unbounded(),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    pub fn get(&self, id: JobId) -> Option<Bytes> {
        self.entries.lock().answers.get(&id).cloned()
    }

    /// Keeps an answer, the least recently read going first; one larger than the whole
    /// cache is not kept.
    pub fn insert(&self, id: JobId, answer: Bytes) {
        if answer.len() > self.max_bytes {
            return;
        }
        let mut entries = self.entries.lock();
        entries.bytes += answer.len();
        if let Some(earlier) = entries.answers.put(id, answer) {
            entries.bytes -= earlier.len();
        }
        while entries.bytes > self.max_bytes {
            match entries.answers.pop_lru() {
                Some((_, evicted)) => entries.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    pub fn remove(&self, id: JobId) {
        let mut entries = self.entries.lock();
        if let Some(removed) = entries.answers.pop(&id) {
            entries.bytes -= removed.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_read_answer_goes_first_when_the_bytes_are_over() {
        let cache = AnswerCache::new(10);
        let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
        cache.insert(a, Bytes::from(vec![0; 4]));
        cache.insert(b, Bytes::from(vec![0; 4]));
        assert!(cache.get(a).is_some());
        cache.insert(c, Bytes::from(vec![0; 4]));
        assert!(cache.get(b).is_none(), "b was read least recently");
        assert!(cache.get(a).is_some() && cache.get(c).is_some());
        cache.insert(JobId::generate(), Bytes::from(vec![0; 11]));
        assert!(
            cache.get(a).is_some(),
            "an answer larger than the cache is not kept"
        );
        cache.remove(a);
        assert!(cache.get(a).is_none());
        let none = AnswerCache::new(0);
        none.insert(a, Bytes::from(vec![0; 1]));
        assert!(none.get(a).is_none(), "0 bytes keeps nothing");
    }
}
