//! The node's way to its database in cluster mode: the connection pool, the small Tokio
//! runtime it lives on (shut down without blocking, wherever it is dropped), and the
//! database's errors as a client of the API sees them.

use std::future::Future;
use std::io;
use std::panic;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures_util::future::BoxFuture;
use tokio_postgres::{CancelToken, NoTls};

use super::ClusterSettings;
use crate::jobs::Unavailable;
use crate::jobs::service::StartError;

/// A connection pool of `size`. Connections are made when first needed: a database
/// that is down at this moment is waited for by the migration that follows (see
/// `joining`).
pub(super) fn connect(
    cluster: &ClusterSettings,
    size: usize,
    role: &str,
) -> Result<Pool, StartError> {
    let manager = Manager::from_config(
        config(cluster, role)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(cluster.timeout))
        .create_timeout(Some(cluster.timeout))
        .recycle_timeout(Some(cluster.timeout))
        .build()
        .map_err(|error| StartError::Database(error.to_string()))
}

/// How the node connects: `--database-url`, within `--database-timeout` (unless the
/// URL says otherwise), and a connection whose route is gone is
/// closed by the kernel, so that a new one is made, instead of waiting for TCP's
/// retries (some 15 minutes): one whose sent bytes go unacknowledged for a lease
/// (`tcp_user_timeout`), and an idle one (the `LISTEN` connection) whose keepalive
/// probes go unanswered. Each connection is named after its node and its `role`
/// (`pg_stat_activity.application_name`), so that an operator sees which node holds
/// what. What the URL sets itself wins.
pub(super) fn config(
    cluster: &ClusterSettings,
    role: &str,
) -> Result<tokio_postgres::Config, StartError> {
    let mut config = tokio_postgres::Config::from_str(&cluster.database_url)
        .map_err(|error| StartError::Database(format!("a bad --database-url: {error}")))?;
    if config.get_application_name().is_none() {
        config.application_name(format!("icewall {} {role}", cluster.node));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(cluster.lease);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(cluster.timeout);
    }
    if !cluster.database_url.contains("keepalives") {
        config
            .keepalives(true)
            .keepalives_idle((cluster.lease / 3).max(Duration::from_secs(1)))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
    }
    Ok(config)
}

/// The node's database runtime. Dropping a Tokio runtime blocks, which panics inside
/// actix's threads (where a failed start, or the last handle of a node, drops it): this
/// one is shut down without waiting instead.
pub(super) struct DbRuntime(Option<tokio::runtime::Runtime>);

impl DbRuntime {
    /// Two threads, `icewall-db`: the database work is waiting, not computing.
    pub(super) fn start() -> io::Result<DbRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("icewall-db")
            .enable_all()
            .build()?;
        Ok(DbRuntime(Some(runtime)))
    }

    pub(super) fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("a runtime until shut down")
            .handle()
            .clone()
    }

    pub(super) fn shut_down(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for DbRuntime {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Waits for `work` on the node's runtime from a thread of its own: start-up runs
/// inside actix's system, where blocking a thread on another runtime is refused.
pub(super) fn block_on_aside<T: Send>(
    handle: &tokio::runtime::Handle,
    work: impl Future<Output = T> + Send,
) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| handle.block_on(work))
            .join()
            .unwrap_or_else(|panic| panic::resume_unwind(panic))
    })
}

/// A database error as the client sees it.
pub(super) fn unavailable(error: impl std::error::Error) -> Unavailable {
    Unavailable(describe(&error))
}

/// Work on one connection: a future that borrows it.
pub(super) type ConnectionWork<'c, T> = BoxFuture<'c, Result<T, Unavailable>>;

/// `work` on a connection of `db`, the wait for the connection and the work within
/// `timeout` together. Its statement is cancelled a `cancel_grace` before the end, so
/// that what the database answers (done, or cancelled) is what the caller is told: a
/// claim, a cancel or a delete given up without that answer could commit after it.
/// Work left too little time by the wait is not sent. With no answer by the end the
/// connection is given up (see `abandon`): it may be silent (a route gone, a failover
/// behind one address), or busy with the statement for a while yet, and back in the
/// pool it would be handed out again. To be awaited on the database runtime.
pub(super) async fn on_connection<T>(
    db: &Pool,
    timeout: Duration,
    work: impl for<'c> FnOnce(&'c mut Object) -> ConnectionWork<'c, T>,
) -> Result<T, Unavailable> {
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::from_std(started) + timeout;
    let client = tokio::time::timeout_at(deadline, db.get())
        .await
        .map_err(|_| timed_out(timeout))?
        .map_err(unavailable)?;
    let (answer, client) =
        answered_in_time(client, started, timeout, async |client| work(client).await).await?;
    // An error once cancelled is the cancel's own, most likely.
    answer.map_err(|error| match client {
        Some(_) => error,
        None => timed_out(timeout),
    })
}

/// `work` on `client` within `timeout` from `started` (the wait for the connection
/// counted), not sent if too little of it is left, its statement cancelled a
/// `cancel_grace` before the end: the database's answer, and the connection unless a
/// cancel may be on its way to it (see `pooled_unless_cancelled`). With no answer by
/// the end, the connection is given up and the work timed out. To be awaited on the
/// database runtime.
pub(super) async fn answered_in_time<T>(
    mut client: Object,
    started: std::time::Instant,
    timeout: Duration,
    work: impl AsyncFnOnce(&mut Object) -> Result<T, Unavailable>,
) -> Result<(Result<T, Unavailable>, Option<Object>), Unavailable> {
    if !in_time_to_send(started, std::time::Instant::now(), timeout) {
        return Err(timed_out(timeout));
    }
    let deadline = tokio::time::Instant::from_std(started) + timeout;
    let cancel_at = deadline - cancel_grace(timeout);
    let cancel = client.cancel_token();
    // Its own statement, so that the work's borrow of the connection ends here.
    let outcome = cancelled_before(cancel, cancel_at, deadline, work(&mut client)).await;
    let Ok(answer) = outcome else {
        abandon(client);
        return Err(timed_out(timeout));
    };
    Ok((answer, pooled_unless_cancelled(client, cancel_at)))
}

/// What a connection's work bounded by `timeout` came to: its own answer, or, once
/// it ran out of time, `Unavailable`, and the connection given up.
pub(super) fn settle<T>(
    client: Object,
    outcome: Result<Result<T, Unavailable>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<T, Unavailable> {
    outcome.unwrap_or_else(|_| {
        abandon(client);
        Err(timed_out(timeout))
    })
}

/// How long before its deadline a statement that could commit is cancelled, so that
/// the database's own answer (committed, or cancelled) still comes back in time. A
/// statement given up without that answer may commit after a 503 was sent for it.
fn cancel_grace(timeout: Duration) -> Duration {
    (timeout / 4).min(Duration::from_millis(500))
}

/// Whether work that began at `started` still has the time for its statement to run
/// and, if it must be cancelled, for the cancel's answer to come back.
pub(super) fn in_time_to_send(
    started: std::time::Instant,
    now: std::time::Instant,
    timeout: Duration,
) -> bool {
    let waited = now.saturating_duration_since(started);
    timeout.saturating_sub(waited) >= 2 * cancel_grace(timeout)
}

/// `work` on the connection of `cancel` until `deadline`, its statement cancelled at
/// `cancel_at` if it still runs: what the database then answers (its rows, or the
/// cancel's error) says whether it committed. Elapsed means no answer came at all, and
/// the connection is to be given up (`abandon`). To be awaited on the database runtime.
async fn cancelled_before<T>(
    cancel: CancelToken,
    cancel_at: tokio::time::Instant,
    deadline: tokio::time::Instant,
    work: impl Future<Output = Result<T, Unavailable>>,
) -> Result<Result<T, Unavailable>, tokio::time::error::Elapsed> {
    let mut work = std::pin::pin!(work);
    if let Ok(answered) = tokio::time::timeout_at(cancel_at, &mut work).await {
        return Ok(answered);
    }
    tokio::spawn(async move {
        let _ = cancel.cancel_query(NoTls).await;
    });
    tokio::time::timeout_at(deadline, work).await
}

/// `client` back to its pool, unless a cancel may be on its way to its backend
/// (`cancelled_before` passed `cancel_at`): closed then, lest the cancel, come late,
/// stop whichever statement runs there next.
fn pooled_unless_cancelled(client: Object, cancel_at: tokio::time::Instant) -> Option<Object> {
    if tokio::time::Instant::now() < cancel_at {
        return Some(client);
    }
    drop(Object::take(client));
    None
}

/// The error of a database call given up after `timeout`.
pub(super) fn timed_out(timeout: Duration) -> Unavailable {
    Unavailable(format!("no answer within {timeout:?}"))
}

/// Gives up `client`, whose statement ran out of time: the statement is cancelled (the
/// database may still be running it, and would commit it, or hold its backend busy),
/// and the connection is closed rather than pooled, the pool making a new one when
/// needed. A cancel that comes too late finds the statement committed. To be called on
/// the database runtime.
pub(super) fn abandon(client: Object) {
    let cancel = client.cancel_token();
    drop(Object::take(client));
    tokio::spawn(async move {
        let _ = cancel.cancel_query(NoTls).await;
    });
}

/// An error with its causes ("error connecting to server: Connection refused"): the
/// database clients' errors say little on their own.
pub(super) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        cause = next.source();
    }
    text
}
