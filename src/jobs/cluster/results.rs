//! A done job's result in cluster mode: read from the database once and kept in the
//! node's cache (`cache`), opened in the file store's binary layout, and its team log,
//! inside the result or streamed from its chunks one at a time.

use std::io::{self, Read};
use std::sync::Arc;

use super::finish::LOG_CHUNK;
use super::{ClusterJobs, unavailable};
use crate::jobs::files::result_file::{HEADER_LEN, ResultFile};
use crate::jobs::modes::TeamLogReader;
use crate::jobs::{JobId, StoreError, StoredWork, Unavailable};
use crate::wall::Summary;

/// A result read from the database, open.
type FetchedResult = ResultFile<Arc<[u8]>>;

impl ClusterJobs {
    /// A done job's summary rows `first + 1 ..= first + limit`, and its profile count.
    /// Blocks.
    ///
    /// # Errors
    /// `Missing`, `Damaged`, or `Unavailable`.
    pub fn summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        self.result(id)?.summary(first, limit)
    }

    /// A done job's work tables. Blocks.
    ///
    /// # Errors
    /// `Missing`, `Damaged`, or `Unavailable`.
    pub fn work(&self, id: JobId) -> Result<StoredWork, StoreError> {
        self.result(id).map(StoredWork::Fetched)
    }

    /// A done job's team log, read from the database a chunk at a time as it is read.
    /// Blocks, and so does reading it.
    ///
    /// The first chunk is read with the length, in one statement, so that a delete
    /// racing the read gives either `Missing` (a 404) or a log that can be sent: never
    /// a length promised to the client with no bytes behind it. A log of one chunk
    /// (1 MiB, nearly every log) is then whole; a longer one deleted while it streams
    /// still ends early.
    ///
    /// # Errors
    /// `Missing`, or `Unavailable`.
    pub fn team_log(&self, id: JobId) -> Result<(TeamLogReader, u64), StoreError> {
        let (bytes, result) = self.result_bytes(id)?;
        if let Some(length) = result.log_file_len() {
            // The first chunk before the answer's headers: a log deleted meanwhile is a
            // 404, not a body cut short (a long one deleted while it streams still ends
            // early).
            let mut reader = ChunkedLog {
                jobs: self.clone(),
                id,
                next_chunk: 0,
                chunks: length.div_ceil(LOG_CHUNK as u64),
                chunk: Vec::new(),
                read: 0,
            };
            // Gone is a 404; a database that cannot answer is a 503, as for every read.
            let first = reader.fetch_chunk()?.ok_or(StoreError::Missing)?;
            reader.take_chunk(first);
            return Ok((Box::new(reader), length));
        }
        let (start, length) = result.inline_log_span()?;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
        if end > bytes.len() {
            return Err(StoreError::Damaged("its team log is cut short".to_owned()));
        }
        let mut log = io::Cursor::new(bytes);
        log.set_position(start as u64);
        Ok((Box::new(log.take(length)), length))
    }

    /// A done job's result, from the cache or the database, its header and trailer checked.
    fn result(&self, id: JobId) -> Result<FetchedResult, StoreError> {
        self.result_bytes(id).map(|(_, result)| result)
    }

    /// A done job's result and its bytes.
    fn result_bytes(&self, id: JobId) -> Result<(Arc<[u8]>, FetchedResult), StoreError> {
        let bytes = match self.inner.cache.get(id) {
            Some(bytes) => bytes,
            None => {
                let bytes: Arc<[u8]> = self
                    .block_on_db(move |client| {
                        Box::pin(async move {
                            let statement = client
                                .prepare_cached(
                                    "SELECT body FROM icewall_results WHERE job_id = $1",
                                )
                                .await
                                .map_err(unavailable)?;
                            let row = client
                                .query_opt(&statement, &[&id.uuid()])
                                .await
                                .map_err(unavailable)?;
                            Ok::<_, Unavailable>(row.map(|row| row.get::<_, Vec<u8>>(0)))
                        })
                    })?
                    .ok_or(StoreError::Missing)?
                    .into();
                self.inner.cache.insert(id, Arc::clone(&bytes));
                bytes
            }
        };
        let mut head = [0; HEADER_LEN as usize];
        let start = bytes
            .get(..head.len())
            .ok_or_else(|| StoreError::Damaged("its header is cut short".to_owned()))?;
        head.copy_from_slice(start);
        Ok((Arc::clone(&bytes), ResultFile::open(bytes, &head)?))
    }
}

/// A team log read from its chunks in order, one chunk in memory at a time.
struct ChunkedLog {
    jobs: ClusterJobs,
    id: JobId,
    next_chunk: u64,
    chunks: u64,
    chunk: Vec<u8>,
    read: usize,
}

impl ChunkedLog {
    /// The next chunk, from the database; `None` when it is gone (the job deleted
    /// meanwhile).
    fn fetch_chunk(&self) -> Result<Option<Vec<u8>>, Unavailable> {
        let (id, number) = (
            self.id.uuid(),
            i32::try_from(self.next_chunk).unwrap_or(i32::MAX),
        );
        let row = self.jobs.block_on_db(move |client| {
            Box::pin(async move {
                client
                    .query_opt(
                        "SELECT bytes FROM icewall_team_logs WHERE job_id = $1 AND chunk = $2",
                        &[&id, &number],
                    )
                    .await
                    .map_err(unavailable)
            })
        })?;
        Ok(row.map(|row| row.get(0)))
    }

    fn take_chunk(&mut self, chunk: Vec<u8>) {
        self.chunk = chunk;
        self.read = 0;
        self.next_chunk += 1;
    }

    /// Reads the next chunk into `chunk`.
    fn fetch_next(&mut self) -> io::Result<()> {
        let chunk = self
            .fetch_chunk()
            .map_err(io::Error::other)?
            // Deleted while it was read: the reader sees the log end early.
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        self.take_chunk(chunk);
        Ok(())
    }
}

impl Read for ChunkedLog {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read == self.chunk.len() {
            if self.next_chunk >= self.chunks {
                return Ok(0);
            }
            self.fetch_next()?;
        }
        let take = buf.len().min(self.chunk.len() - self.read);
        buf[..take].copy_from_slice(&self.chunk[self.read..self.read + take]);
        self.read += take;
        Ok(take)
    }
}
