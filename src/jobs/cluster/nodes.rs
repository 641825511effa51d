//! The cluster's nodes as the operators see them (`/api/stats`, the page's overview):
//! each node's row in `icewall_nodes`, kept by its own heartbeat (see `claim`), read
//! with the time since that heartbeat measured by the database's clock, so that the
//! nodes' own clocks need not agree.

use std::time::Duration;

use uuid::Uuid;

use super::{ClusterJobs, unavailable};
use crate::jobs::Unavailable;

/// A node of the cluster, as its last heartbeat left it.
#[derive(Clone, Debug)]
pub struct ClusterNode {
    pub id: Uuid,
    /// Where it listens.
    pub address: String,
    pub workers: u32,
    /// Jobs running under its lease now: claimed and not yet finished, and not yet
    /// taken back from it if it died (its own count, at its last heartbeat, would stay).
    pub running: u32,
    /// When it joined, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub heartbeat_age: Duration,
    /// Silent for a whole lease of its own: the other nodes are taking its jobs back. Its row goes
    /// at the first retention sweep an hour after its last heartbeat.
    pub is_stale: bool,
}

impl ClusterJobs {
    /// Every node in the nodes table, in the order they joined. A node that stopped
    /// cleanly has removed its row; one that died is listed, stale, until swept.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn nodes(&self) -> Result<Vec<ClusterNode>, Unavailable> {
        let lease = self.inner.settings.lease;
        self.on_db(move |client| Box::pin(async move {
            let rows = client
                .query(
                    "SELECT id, address, workers,
                            (SELECT count(*) FROM icewall_jobs AS job
                             WHERE job.state = 'running' AND job.lease_owner = node.id)::int4,
                            (extract(epoch FROM started_at) * 1000)::int8,
                            greatest(extract(epoch FROM clock_timestamp() - heartbeat_at) * 1000, 0)::int8,
                            coalesce(lease_ms, $1)
                     FROM icewall_nodes AS node ORDER BY started_at, id",
                    &[&super::claim::millis(lease)],
                )
                .await
                .map_err(unavailable)?;
            let count = |value: i32| u32::try_from(value).unwrap_or(0);
            let nodes = rows
                .iter()
                .map(|row| {
                    let heartbeat_age =
                        Duration::from_millis(u64::try_from(row.get::<_, i64>(5)).unwrap_or(0));
                    ClusterNode {
                        id: row.get(0),
                        address: row.get(1),
                        workers: count(row.get(2)),
                        running: count(row.get(3)),
                        started_ms: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
                        heartbeat_age,
                        // By its own lease, as the reapers judge it.
                        is_stale: heartbeat_age.as_secs_f64() * 1000.0 >= row.get::<_, f64>(6),
                    }
                })
                .collect();
            Ok(nodes)
        }))
        .await
    }
}
