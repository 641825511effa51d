//! The file store as the job service's `Storage`: accept and commit written here, the
//! other methods the file store's own, and a finished job pinned while its journal
//! segment lives.

use std::fs::{self, File};
use std::io;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use super::journal::{Accept, Segment, StoredRequest};
use super::{FileStore, StoreError, StoredWork, Written};
use crate::jobs::JobId;
use crate::jobs::idempotency::KeyRecord;
use crate::jobs::storage::{LiveKeys, Record, RecoveredJobs, RequestPin, Storage};
use crate::wall::Summary;

/// A finished job is pinned while the journal segment that holds its request lives.
impl RequestPin for Weak<Segment> {
    fn is_held(&self) -> bool {
        self.strong_count() > 0
    }

    fn is_held_for_now(&self) -> bool {
        self.upgrade().is_some_and(|segment| !segment.is_kept())
    }
}

impl Storage for FileStore {
    type Request = StoredRequest;
    type Pin = Weak<Segment>;
    type Work = StoredWork;
    type Log = io::Take<File>;

    fn accept(
        &self,
        id: JobId,
        request: Vec<u8>,
        key: Option<&KeyRecord>,
        then: impl FnOnce(Result<StoredRequest, StoreError>) + Send + 'static,
    ) {
        // The job's lock lives from here until its result is written.
        self.inner.locks.hold(id);
        let store = self.clone();
        let accept = Accept {
            id,
            request,
            key_record: key.map(|key| serde_json::to_vec(key).expect("a key record serializes")),
        };
        self.inner.journal.accept(accept, move |stored| {
            if stored.is_err() {
                store.inner.locks.release(id);
            }
            then(stored.map_err(StoreError::from));
        });
    }

    fn pin(request: &StoredRequest) -> Weak<Segment> {
        Arc::downgrade(&request.journal)
    }

    fn read_request(&self, request: &StoredRequest) -> Result<Vec<u8>, StoreError> {
        FileStore::read_request(self, request)
    }

    fn set_aside(&self, id: JobId, request: StoredRequest) {
        FileStore::set_aside(self, id, request);
    }

    fn commit(
        &self,
        id: JobId,
        record: &Record<'_>,
        finished_at: SystemTime,
        request: StoredRequest,
        request_bytes: Option<&[u8]>,
        then: impl FnOnce(Result<u64, StoreError>) + Send + 'static,
    ) {
        // Written under the job's lock; the lock and the request let go of once the
        // next group sync has made the result durable, name and all.
        let written = {
            let _guard = self.lock_job(id);
            self.write_pending(id, record, finished_at, request_bytes)
        };
        let store = self.clone();
        let finish = move |stored: io::Result<u64>| {
            match &stored {
                Ok(_) => {
                    drop(request);
                    store.inner.locks.release(id);
                }
                Err(_) => {
                    // Nothing to find for a reader of this process; a restart would
                    // check a result left here whole before trusting it.
                    let _ = fs::remove_file(store.path(id, "result"));
                    let _ = fs::remove_file(store.path(id, "log"));
                    // The request must outlive this process so a restart reruns the job.
                    store.set_aside(id, request);
                }
            }
            then(stored.map_err(StoreError::from));
        };
        match written {
            Err(error) => finish(Err(error)),
            Ok(Written::Result(bytes)) => self
                .inner
                .sync
                .sync(move |synced| finish(synced.map(|()| bytes))),
            Ok(Written::AfterLog { log_len, result }) => {
                let store = self.clone();
                self.inner.sync.sync_then(move |synced| {
                    // On the sync thread, the log durable: one write of bytes at hand,
                    // answered after the next sync.
                    let written = synced.and_then(|()| {
                        let _guard = store.lock_job(id);
                        store.write_held_result(id, &result, finished_at)
                    });
                    match written {
                        Err(error) => {
                            finish(Err(error));
                            None
                        }
                        Ok(bytes) => Some(Box::new(move |synced: io::Result<()>| {
                            finish(synced.map(|()| log_len + bytes));
                        })),
                    }
                });
            }
        }
    }

    fn recover(&self, warn: impl FnMut(String)) -> io::Result<RecoveredJobs<FileStore>> {
        FileStore::recover(self, warn)
    }

    fn track_keys(&self, live: LiveKeys) {
        self.inner.journal.track_keys(live);
    }

    fn bury(&self, id: JobId) -> io::Result<()> {
        FileStore::bury(self, id)
    }

    fn rewrite_due(&self) -> bool {
        self.inner.tombstones.rewrite_due()
    }

    fn rewrite_grown(&self) -> io::Result<()> {
        self.inner.tombstones.rewrite_if_due()
    }

    fn abandon(&self, id: JobId, request: StoredRequest) {
        FileStore::abandon(self, id, request);
    }

    fn remove_result(&self, id: JobId) -> io::Result<()> {
        FileStore::remove_result(self, id)
    }

    fn restamp(&self, id: JobId, finished_at: SystemTime) -> io::Result<()> {
        FileStore::restamp(self, id, finished_at)
    }

    fn read_summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        FileStore::read_summary(self, id, first, limit)
    }

    fn read_kept_request(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        FileStore::read_kept_request(self, id)
    }

    fn open_work(&self, id: JobId) -> Result<StoredWork, StoreError> {
        FileStore::open_work(self, id)
    }

    fn open_log(&self, id: JobId) -> Result<(io::Take<File>, u64), StoreError> {
        FileStore::open_log(self, id)
    }

    fn probe(&self) -> io::Result<()> {
        FileStore::probe(self)
    }

    fn in_place(&self) -> bool {
        self.inner.lock.lately_in_place()
    }

    fn sync_removals(&self) -> io::Result<()> {
        self.sync_directory()
    }

    fn shutdown(&self) {
        FileStore::shutdown(self);
    }
}
