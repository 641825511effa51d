//! A finished job's request read back (for `/api/jobs/<id>/config`): cluster mode keeps
//! every request in `icewall_requests` from its accept until its job is deleted, so
//! the results in the database keep none of their own.

use super::{ClusterJobs, unavailable};
use crate::jobs::{JobId, StoreError, Unavailable};

impl ClusterJobs {
    /// A job's request as it was accepted. Blocks.
    ///
    /// # Errors
    /// `Missing` when the job is gone, or `Unavailable`.
    pub fn kept_request(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        let request = self.block_on_db(move |client| {
            Box::pin(async move {
                let row = client
                    .query_opt(
                        "SELECT body FROM icewall_requests WHERE job_id = $1",
                        &[&id.uuid()],
                    )
                    .await
                    .map_err(unavailable)?;
                Ok::<_, Unavailable>(row.map(|row| row.get::<_, Vec<u8>>(0)))
            })
        })?;
        request.map(Some).ok_or(StoreError::Missing)
    }
}
