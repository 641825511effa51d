//! The cluster's tables in PostgreSQL and the migrations that make them, applied at
//! start-up by whichever node gets there first: each runs under one transaction-level
//! advisory lock, so nodes starting at once migrate once.
//!
//! The shape follows the PostgreSQL job queues (River, Oban, graphile-worker): a narrow
//! jobs table that changes often (state, attempt, lease), write-once tables beside it
//! for the request, the result and its team log, and partial indexes that stay as
//! small as the queue, the running jobs and the finished jobs each are.

use deadpool_postgres::{Pool, PoolError};

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A newer node migrated the database: this one must not run on it.
    #[error(
        "the database's schema is version {found}, newer than this build's {known}: \
         upgrade this node"
    )]
    Newer { found: usize, known: usize },
    #[error("{}", super::describe(.0))]
    Connection(#[from] PoolError),
    #[error("{}", super::describe(.0))]
    Statement(#[from] tokio_postgres::Error),
}

/// The advisory lock key of migrations ("icewall" in ASCII, plus one).
const MIGRATION_LOCK: i64 = 0x6963_6577_616c_6c01;

/// Each migration, in order; the version of one is its place in this list, from 1.
/// Never edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE icewall_jobs (
    id uuid PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempt integer NOT NULL DEFAULT 0,
    lease_owner uuid,
    lease_expires_at timestamptz,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    idempotency_key text,
    request_fingerprint text,
    replayed boolean NOT NULL DEFAULT false,
    failure text,
    profiles integer,
    sections integer,
    num_teams bigint,
    result_bytes bigint NOT NULL DEFAULT 0
);
-- Every change of state writes a new row version and an entry in each index whose
-- predicate it meets: each index below is one a job passes through once. Claiming
-- takes the oldest queued jobs (ids are v7 UUIDs, which sort by creation); the running
-- jobs are few, and their leases are checked among them; retention goes by finish
-- time; the job list walks the primary key, or one of these for one state. A lease's
-- extension changes no indexed column, so the heartbeat's updates stay on their page.
CREATE INDEX icewall_jobs_queued ON icewall_jobs (id) WHERE state = 'queued';
CREATE INDEX icewall_jobs_running ON icewall_jobs (id) WHERE state = 'running';
CREATE INDEX icewall_jobs_finished ON icewall_jobs (finished_at) WHERE state IN ('done', 'failed');
CREATE INDEX icewall_jobs_failed ON icewall_jobs (id) WHERE state = 'failed';
CREATE UNIQUE INDEX icewall_jobs_idempotency ON icewall_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Written once beside a job's row, removed with it (by `delete` and the sweep, in the
-- transaction that removes the row). No foreign keys: a key check would lock the
-- job's row for each insert, on the path every job takes.
CREATE TABLE icewall_requests (
    job_id uuid PRIMARY KEY,
    body bytea NOT NULL
);
-- A done job's result in the file store's binary layout, its team log inline unless
-- it is large; a large log is in icewall_team_logs, in chunks read one at a time.
CREATE TABLE icewall_results (
    job_id uuid PRIMARY KEY,
    body bytea NOT NULL
);
CREATE TABLE icewall_team_logs (
    job_id uuid NOT NULL,
    chunk integer NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (job_id, chunk)
);
-- Results and logs are binary and mostly incompressible: no time spent trying.
ALTER TABLE icewall_results ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE icewall_team_logs ALTER COLUMN bytes SET STORAGE EXTERNAL;
CREATE TABLE icewall_nodes (
    id uuid PRIMARY KEY,
    address text NOT NULL,
    workers integer NOT NULL,
    running integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
",
    r"
-- Whether a node lives is judged by its own lease, which may not be the judge's (a
-- rolling change of --lease); a node of an older build leaves it NULL, and is judged
-- by the judge's. The readiness probe writes probed_at: heartbeat_at is the lease
-- keeper's alone, so that a node whose keeper cannot beat is not taken for alive.
ALTER TABLE icewall_nodes ADD COLUMN lease_ms float8, ADD COLUMN probed_at timestamptz;
",
];

/// Brings the schema to this build's version.
///
/// # Errors
/// When the database cannot be reached or refuses a migration, or its schema is newer
/// than this build knows (a newer node migrated it: this one must not run on it).
pub async fn migrate(pool: &Pool) -> Result<usize, SchemaError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS icewall_schema (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let current: i32 = transaction
        .query_one("SELECT coalesce(max(version), 0) FROM icewall_schema", &[])
        .await?
        .get(0);
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(SchemaError::Newer {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i32::try_from(index + 1).expect("few migrations");
        transaction.batch_execute(migration).await?;
        transaction
            .execute(
                "INSERT INTO icewall_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(MIGRATIONS.len() - current)
}
