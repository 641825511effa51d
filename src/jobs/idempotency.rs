//! Idempotency keys: a client's `Idempotency-Key`, the durable record that ties it to
//! the job it made, and the table of live keys a submission claims before its job is
//! stored (the store makes the record durable with the request; recovery reloads it).

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde::{Deserialize, Serialize};

use super::JobId;

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Option<IdempotencyKey> {
        let visible = text.bytes().all(|byte| (0x21..=0x7e).contains(&byte));
        (visible && (1..=255).contains(&text.len())).then(|| IdempotencyKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An idempotency key, the job it made, and a digest of that job's request: what the
/// store keeps durably beside the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key: String,
    pub job_id: String,
    pub fingerprint: String,
}

/// What a key points at. `accepted` is false while the first request with the key is
/// being stored: a second one then waits its turn (409) rather than get an id that
/// might not be kept.
#[derive(Clone)]
struct KeyEntry {
    id: JobId,
    fingerprint: String,
    accepted: bool,
}

/// What a claim found.
pub enum KeyClaim {
    /// An earlier request with the key and the same body made this job.
    Replay(JobId),
    /// The key is this job's now; the record goes to the store with the request.
    Claimed(KeyRecord),
}

/// Why a key cannot be claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyConflict {
    /// The key was used with a different request.
    Reused,
    /// The first request with the key is still being stored.
    InProgress,
}

/// The keys of the jobs that still exist.
#[derive(Default)]
pub struct Keys {
    entries: DashMap<String, KeyEntry>,
}

impl Keys {
    /// Takes back the keys found on disk at start-up.
    pub fn restore(&self, records: Vec<KeyRecord>) {
        for record in records {
            if let Ok(id) = record.job_id.parse() {
                let entry = KeyEntry {
                    id,
                    fingerprint: record.fingerprint,
                    accepted: true,
                };
                self.entries.insert(record.key, entry);
            }
        }
    }

    /// Claims `key` for job `id`, or finds the job an earlier request with it made;
    /// `exists` tells whether that job is still known (a key whose job was removed is
    /// free again).
    ///
    /// # Errors
    /// `Reused` for another request with the key, `InProgress` while its first request
    /// is being stored.
    pub fn claim(
        &self,
        key: &IdempotencyKey,
        id: JobId,
        request: &[u8],
        exists: impl Fn(JobId) -> bool,
    ) -> Result<KeyClaim, KeyConflict> {
        let fingerprint = fingerprint(request);
        let claim = KeyEntry {
            id,
            fingerprint: fingerprint.clone(),
            accepted: false,
        };
        match self.entries.entry(key.0.clone()) {
            Entry::Occupied(mut entry) => {
                let earlier = entry.get().clone();
                if !earlier.accepted {
                    return Err(KeyConflict::InProgress);
                }
                if exists(earlier.id) {
                    return if earlier.fingerprint == fingerprint {
                        Ok(KeyClaim::Replay(earlier.id))
                    } else {
                        Err(KeyConflict::Reused)
                    };
                }
                entry.insert(claim);
            }
            Entry::Vacant(entry) => {
                entry.insert(claim);
            }
        }
        Ok(KeyClaim::Claimed(KeyRecord {
            key: key.0.clone(),
            job_id: id.to_string(),
            fingerprint,
        }))
    }

    /// The claim's job is stored: later requests with the key replay it.
    pub fn confirm(&self, key: &IdempotencyKey) {
        if let Some(mut entry) = self.entries.get_mut(&key.0) {
            entry.accepted = true;
        }
    }

    /// The claim's job could not be stored: the key is free again.
    pub fn release(&self, key: &IdempotencyKey, id: JobId) {
        self.entries.remove_if(&key.0, |_, entry| entry.id == id);
    }

    /// The record of every key held, claims under way included (a claim whose request
    /// is never stored leaves a record for a job that does not exist, which the store's
    /// next start-up drops).
    pub fn records(&self) -> Vec<KeyRecord> {
        self.entries
            .iter()
            .map(|entry| KeyRecord {
                key: entry.key().clone(),
                job_id: entry.id.to_string(),
                fingerprint: entry.fingerprint.clone(),
            })
            .collect()
    }

    /// Forgets the keys of jobs that no longer exist (claims in progress stay).
    pub fn forget_removed(&self, exists: impl Fn(JobId) -> bool) {
        self.entries
            .retain(|_, entry| !entry.accepted || exists(entry.id));
    }
}

/// SHA-256 of the normalized request, in hex: equal for the same wall and teams,
/// whichever form they were sent in.
pub fn fingerprint(request: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(request)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::parse(text).unwrap()
    }

    #[test]
    fn a_key_is_visible_ascii_of_1_to_255_bytes() {
        assert!(IdempotencyKey::parse("order-17").is_some());
        assert!(IdempotencyKey::parse("").is_none());
        assert!(IdempotencyKey::parse("with space").is_none());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_none());
    }

    #[test]
    fn a_confirmed_key_replays_its_job_for_the_same_request_only() {
        let keys = Keys::default();
        let (first, second) = (JobId::generate(), JobId::generate());
        assert!(matches!(
            keys.claim(&key("a"), first, b"wall", |_| true),
            Ok(KeyClaim::Claimed(_))
        ));
        assert!(matches!(
            keys.claim(&key("a"), second, b"wall", |_| true),
            Err(KeyConflict::InProgress)
        ));
        keys.confirm(&key("a"));
        assert!(matches!(
            keys.claim(&key("a"), second, b"wall", |_| true),
            Ok(KeyClaim::Replay(id)) if id == first
        ));
        assert!(matches!(
            keys.claim(&key("a"), second, b"other wall", |_| true),
            Err(KeyConflict::Reused)
        ));
    }

    #[test]
    fn a_key_is_free_again_once_its_job_is_gone_or_was_never_stored() {
        let keys = Keys::default();
        let (first, second) = (JobId::generate(), JobId::generate());
        assert!(keys.claim(&key("a"), first, b"wall", |_| true).is_ok());
        keys.release(&key("a"), first);
        assert!(matches!(
            keys.claim(&key("a"), second, b"other wall", |_| true),
            Ok(KeyClaim::Claimed(record)) if record.job_id == second.to_string()
        ));
        keys.confirm(&key("a"));
        keys.forget_removed(|_| false);
        assert!(matches!(
            keys.claim(&key("a"), first, b"wall", |_| true),
            Ok(KeyClaim::Claimed(_))
        ));
    }

    #[test]
    fn the_records_are_those_claimed_and_not_forgotten_as_they_were_claimed() {
        let keys = Keys::default();
        let (kept, claimed, removed) = (JobId::generate(), JobId::generate(), JobId::generate());
        let mut made = Vec::new();
        for (text, id) in [("kept", kept), ("claimed", claimed), ("removed", removed)] {
            match keys.claim(&key(text), id, text.as_bytes(), |_| true) {
                Ok(KeyClaim::Claimed(record)) => made.push(record),
                _ => panic!("{text} not claimed"),
            }
        }
        keys.confirm(&key("kept"));
        keys.confirm(&key("removed"));
        // A claim under way stays whatever the check says: its job is not stored yet.
        keys.forget_removed(|id| id == kept);
        let mut records = keys.records();
        records.sort_by(|a, b| a.key.cmp(&b.key));
        made.sort_by(|a, b| a.key.cmp(&b.key));
        made.retain(|record| record.key != "removed");
        assert_eq!(records, made);
    }
}
