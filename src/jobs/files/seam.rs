//! The file store as the job service's `Storage`: each method of the seam is the file
//! store's own, and a finished job stays pinned while its journal segment lives.

use std::fs::File;
use std::io;
use std::sync::{Arc, Weak};

use super::journal::{Segment, StoredRequest};
use super::{FileStore, StoreError, StoredWork};
use crate::jobs::JobId;
use crate::jobs::idempotency::KeyRecord;
use crate::jobs::storage::{Record, RecoveredJobs, RequestPin, Storage};
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
        FileStore::accept(self, id, request, key, then);
    }

    fn pin(request: &StoredRequest) -> Weak<Segment> {
        Arc::downgrade(&request.journal)
    }

    fn read_request(&self, request: &StoredRequest) -> Result<Vec<u8>, StoreError> {
        FileStore::read_request(self, request)
    }

    fn commit(
        &self,
        id: JobId,
        record: &Record<'_>,
        request: StoredRequest,
        then: impl FnOnce(Result<u64, StoreError>) + Send + 'static,
    ) {
        FileStore::commit(self, id, record, request, then);
    }

    fn recover(&self, warn: impl FnMut(String)) -> io::Result<RecoveredJobs<FileStore>> {
        FileStore::recover(self, warn)
    }

    fn bury(&self, id: JobId) -> io::Result<()> {
        FileStore::bury(self, id)
    }

    fn abandon(&self, id: JobId, request: StoredRequest) {
        FileStore::abandon(self, id, request);
    }

    fn remove_result(&self, id: JobId) -> io::Result<()> {
        FileStore::remove_result(self, id)
    }

    fn read_summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        FileStore::read_summary(self, id, first, limit)
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

    fn sync_removals(&self) -> io::Result<()> {
        self.sync_directory()
    }

    fn shutdown(&self) {
        FileStore::shutdown(self);
    }
}
