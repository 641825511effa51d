//! Answers on done jobs' results (`/api/get_results/<id>` and the questions of
//! `/api/jobs/<id>/profiles/...`), kept in memory by bytes so that a repeated read is
//! neither a hop to the blocking pool nor a file read. A done job's answers never
//! change, and the cache is read only after the job is known done, so a deleted job
//! answers 404 whatever the cache holds (its entries leave by eviction); and only while
//! the store's files are in place (`Jobs::results_in_place`), so that a results directory
//! removed from under the server shows (a 500, within 100 ms) however often its results
//! were read.

use actix_web::web::Bytes;

use super::queries::Question;
use crate::byte_lru::ByteLru;
use crate::jobs::JobId;

/// What an answer is kept for: a job's result, and what was asked of it.
pub type AnswerKey = (JobId, Asked);

/// What was asked of a done job's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Asked {
    /// Its summary, as `/api/get_results` answers it.
    Summary,
    /// A question of the query table.
    Question(Question),
}

/// What an entry costs besides its body: the key, the cache's node and its slot in the
/// hash table (a day's answer is ~25 bytes: the body alone would undercount).
const ENTRY_BYTES: usize = 128;

pub struct AnswerCache(ByteLru<AnswerKey, Bytes>);

impl AnswerCache {
    /// A cache of at most `max_bytes` of answers; 0 keeps none.
    pub fn new(max_bytes: usize) -> AnswerCache {
        AnswerCache(ByteLru::new(max_bytes, ENTRY_BYTES))
    }

    pub fn get(&self, key: AnswerKey) -> Option<Bytes> {
        self.0.get(&key)
    }

    /// Keeps an answer, the least recently read going first; one larger than the whole
    /// cache is not kept.
    pub fn insert(&self, key: AnswerKey, answer: Bytes) {
        self.0.insert(key, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_read_answer_goes_first_when_the_bytes_are_over() {
        let cache = AnswerCache::new(3 * ENTRY_BYTES + 10);
        let [a, b, c] = [JobId::generate(), JobId::generate(), JobId::generate()]
            .map(|id| (id, Asked::Question(Question::TotalCost)));
        cache.insert(a, Bytes::from(vec![0; 4]));
        cache.insert(b, Bytes::from(vec![0; 4]));
        assert!(cache.get(a).is_some());
        cache.insert(c, Bytes::from(vec![0; 4]));
        assert!(cache.get(b).is_none(), "b was read least recently");
        assert!(cache.get(a).is_some() && cache.get(c).is_some());
        let other_day = (a.0, Asked::Question(Question::WallCost { day: 1 }));
        assert!(
            cache.get(other_day).is_none(),
            "each question is kept apart"
        );
        assert!(
            cache.get((a.0, Asked::Summary)).is_none(),
            "and apart from the summary"
        );
        let large = (JobId::generate(), Asked::Summary);
        cache.insert(large, Bytes::from(vec![0; 3 * ENTRY_BYTES]));
        assert!(
            cache.get(large).is_none(),
            "an answer larger than the cache is not kept"
        );
        assert!(cache.get(a).is_some(), "and it evicts nothing");
        let none = AnswerCache::new(0);
        none.insert(a, Bytes::from(vec![0; 1]));
        assert!(none.get(a).is_none(), "0 bytes keeps nothing");
    }
}
