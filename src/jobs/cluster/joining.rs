//! How a node joins its cluster at start-up: the database's schema brought up to date
//! and the node registered, each step tried again while the database cannot be reached
//! yet, until `--database-start-timeout`. A node and its database are often started
//! together (docker compose, Kubernetes): the node waits for it, alive (`/healthz`) and
//! not ready meanwhile, rather than exit at once and count on being restarted. A failure
//! that waiting cannot mend (a bad URL, a refused login, a database that does not
//! exist, a schema newer than this build) ends the start at once, as does the deadline.
//!
//! SIGTERM and SIGINT stop a waiting node at once, as any start-up (see
//! `shutdown::SignalsWhileStarting`).

use std::io;
use std::time::Duration;

use deadpool_postgres::{Pool, PoolError};
use slog::{Logger, info, warn};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;

use super::schema::{self, SchemaError};
use super::{ClusterSettings, claim, database_clock, describe};
use crate::jobs::service::StartError;
use crate::telemetry::millis;

/// The first pause between two attempts, doubled after each failure up to
/// `LONGEST_PAUSE`: a database that comes up a moment after the node is found at once.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between two attempts: a database that has come up waits no longer
/// than this for the node to notice.
const LONGEST_PAUSE: Duration = Duration::from_secs(2);
/// A warning with another reason than the last one waits this long after it, so that
/// reasons that alternate (refused, then starting up) do not flood the log.
const WARNINGS_APART: Duration = Duration::from_secs(2);
/// A warning with the same reason as the last one waits this long, and says again how
/// long the node goes on trying.
const SAME_WARNING_AFTER: Duration = Duration::from_secs(10);

/// What the database answers while it cannot take the node for a while: it is starting
/// up or shutting down (a restart, a failover, a crash of one of its processes), or has
/// no connection free.
const PASSING_STATES: [SqlState; 4] = [
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::TOO_MANY_CONNECTIONS,
];

/// Brings the database's schema up to date and registers this node, waiting for the
/// database as `--database-start-timeout` allows; how far the database's clock is ahead
/// of this node's (see `database_clock`). To be awaited on the database runtime.
///
/// # Errors
/// `StartError::Database`: a failure that does not pass by waiting, at once; one that
/// might, once the timeout has passed, saying so.
pub(super) async fn join(
    db: &Pool,
    cluster: &ClusterSettings,
    workers: usize,
    logger: &Logger,
) -> Result<i64, StartError> {
    let mut patience = Patience::new(cluster.start_timeout, logger.clone());
    let applied = patience
        .attempt("migrating the schema", || async move {
            Ok(schema::migrate(db).await?)
        })
        .await?;
    info!(logger, "database schema ready"; "migrations_applied" => applied);
    patience
        .attempt("registering this node", || async move {
            let client = db.get().await?;
            claim::register_node(&client, cluster, workers).await?;
            Ok(database_clock::ahead_ms(&client).await?)
        })
        .await
}

/// An attempt that failed: why, and whether waiting may mend it.
#[derive(Debug)]
pub(super) struct Failure {
    reason: String,
    passes: bool,
}

impl From<PoolError> for Failure {
    /// A connection not had: a timeout passes (a database slow to answer as it starts,
    /// a route not there yet), and the connection's own error as `passes` says.
    fn from(error: PoolError) -> Failure {
        let passes = match &error {
            PoolError::Timeout(_) => true,
            PoolError::Backend(error) => passes(error),
            _ => false,
        };
        Failure {
            reason: describe(&error),
            passes,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Failure {
        Failure {
            passes: passes(&error),
            reason: describe(&error),
        }
    }
}

impl From<SchemaError> for Failure {
    fn from(error: SchemaError) -> Failure {
        match error {
            SchemaError::Newer { .. } => Failure {
                reason: error.to_string(),
                passes: false,
            },
            SchemaError::Connection(error) => error.into(),
            SchemaError::Statement(error) => error.into(),
        }
    }
}

/// Whether `error` may pass by waiting: the database refusing the node for a while (see
/// `PASSING_STATES`), or the network: a connection refused, reset, closed or timed out,
/// a host name not resolved (yet: a container's name resolves once it runs), a socket
/// file not there yet. Not what else the database says (a refused login, no such
/// database or role, no permission), nor a connection this side cannot make (a bad
/// setting, a malformed answer).
fn passes(error: &tokio_postgres::Error) -> bool {
    if let Some(state) = error.code() {
        return PASSING_STATES.contains(state);
    }
    error.is_closed()
        || io_cause(error).is_some_and(|cause| {
            !matches!(
                cause.kind(),
                io::ErrorKind::InvalidInput
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::Unsupported
            )
        })
}

/// The I/O error beneath `error`, if there is one.
fn io_cause<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e io::Error> {
    let mut cause = error.source();
    while let Some(next) = cause {
        if let Some(io) = next.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cause = next.source();
    }
    None
}

/// The attempts of one start-up against its deadline, and what they logged. On the
/// runtime's clock, which the tests pause.
struct Patience {
    /// `--database-start-timeout`, from `began`; zero makes one attempt.
    timeout: Duration,
    began: Instant,
    /// The pause before the next attempt.
    pause: Duration,
    /// Attempts that failed since the database last answered.
    failures: u32,
    /// The last warning's reason, and when it was logged.
    warned: Option<(String, Instant)>,
    logger: Logger,
}

impl Patience {
    fn new(timeout: Duration, logger: Logger) -> Patience {
        Patience {
            timeout,
            began: Instant::now(),
            pause: FIRST_PAUSE,
            failures: 0,
            warned: None,
            logger,
        }
    }

    /// `attempt`, tried again after a pause while it fails in a way that passes, until
    /// the timeout; `step` names it in the warnings. An attempt under way when the time
    /// is up is let finish (a connection's own wait is `--database-timeout`).
    ///
    /// # Errors
    /// The first failure that does not pass; the last one once the time is up.
    // A closure that makes a future rather than an async closure: the compiler cannot
    // show the latter's future `Send` for every lifetime of its borrows, which
    // `block_on_aside` needs.
    async fn attempt<T, F: Future<Output = Result<T, Failure>>>(
        &mut self,
        step: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, StartError> {
        loop {
            let failure = match attempt().await {
                Ok(done) => {
                    self.answered();
                    return Ok(done);
                }
                Err(failure) => failure,
            };
            if !failure.passes {
                return Err(StartError::Database(failure.reason));
            }
            let waited = self.began.elapsed();
            let left = self.timeout.saturating_sub(waited);
            if left.is_zero() {
                return Err(self.gave_up(waited, failure));
            }
            self.failures += 1;
            self.warn(step, &failure, waited, left);
            tokio::time::sleep(self.pause.min(left)).await;
            self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// The database answered: said if the node had waited for it.
    fn answered(&mut self) {
        if self.failures > 0 {
            info!(self.logger, "the database answered: starting";
                "waited_ms" => millis(self.began.elapsed()), "failed_attempts" => self.failures);
        }
        self.failures = 0;
        self.pause = FIRST_PAUSE;
        self.warned = None;
    }

    /// Logs `failure`, unless a warning went out too recently (see `WARNINGS_APART`
    /// and `SAME_WARNING_AFTER`).
    fn warn(&mut self, step: &str, failure: &Failure, waited: Duration, left: Duration) {
        let now = Instant::now();
        let due = self.warned.as_ref().is_none_or(|(reason, at)| {
            let since = now.duration_since(*at);
            since >= SAME_WARNING_AFTER || (since >= WARNINGS_APART && *reason != failure.reason)
        });
        if !due {
            return;
        }
        warn!(self.logger, "cannot reach the database yet: trying again until --database-start-timeout";
            "step" => step, "error" => &failure.reason,
            "waited_ms" => millis(waited), "gives_up_in_ms" => millis(left));
        self.warned = Some((failure.reason.clone(), now));
    }

    /// Why the start ends once the time is up: the last failure, and, when the node
    /// waited, for how long and which flag to lengthen.
    fn gave_up(&self, waited: Duration, failure: Failure) -> StartError {
        if self.timeout.is_zero() {
            return StartError::Database(failure.reason);
        }
        StartError::Database(format!(
            "gave up after waiting {:.1} s for it (--database-start-timeout {}): {}",
            waited.as_secs_f64(),
            humantime::format_duration(self.timeout),
            failure.reason
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn what_the_database_says_while_it_starts_or_stops_passes_and_a_refused_login_does_not() {
        let passes = |code: &str| PASSING_STATES.contains(&SqlState::from_code(code));
        for passing in ["57P03", "57P01", "57P02", "53300"] {
            assert!(passes(passing), "{passing}");
        }
        for lasting in ["28P01", "28000", "3D000", "42501", "42P01"] {
            assert!(!passes(lasting), "{lasting}");
        }
    }

    #[test]
    fn a_connection_timeout_passes_and_a_closed_pool_or_a_newer_schema_does_not() {
        let timeout = PoolError::Timeout(deadpool_postgres::TimeoutType::Create);
        assert!(Failure::from(timeout).passes);
        assert!(!Failure::from(PoolError::Closed).passes);
        let newer = Failure::from(SchemaError::Newer { found: 9, known: 2 });
        assert!(!newer.passes);
        assert!(
            newer.reason.contains("upgrade this node"),
            "{}",
            newer.reason
        );
    }

    fn failure(reason: &str, passes: bool) -> Failure {
        Failure {
            reason: reason.to_owned(),
            passes,
        }
    }

    /// The warnings a `Patience` logged.
    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<String>>>);

    impl slog::Drain for Warnings {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            if record.level() == slog::Level::Warning {
                self.0.lock().unwrap().push(record.msg().to_string());
            }
            Ok(())
        }
    }

    /// A `Patience` of `timeout` trying an attempt whose `n`th try (from 0) fails as
    /// `script(n)` says, or succeeds: the outcome, when each try was made (from the
    /// start, on a paused clock), and the warnings logged.
    fn run(
        timeout: Duration,
        script: impl Fn(usize) -> Option<Failure>,
    ) -> (Result<(), StartError>, Vec<Duration>, usize) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let warnings = Warnings::default();
        let mut tries = Vec::new();
        let outcome = runtime.block_on(async {
            let began = Instant::now();
            let logger = Logger::root(slog::Drain::fuse(warnings.clone()), slog::o!());
            let mut patience = Patience::new(timeout, logger);
            patience
                .attempt("testing", || {
                    let n = tries.len();
                    tries.push(began.elapsed());
                    std::future::ready(script(n).map_or(Ok(()), Err))
                })
                .await
        });
        let warned = warnings.0.lock().unwrap().len();
        (outcome, tries, warned)
    }

    fn millis(tries: &[Duration]) -> Vec<u128> {
        tries.iter().map(Duration::as_millis).collect()
    }

    #[test]
    fn passing_failures_are_tried_again_with_pauses_doubling_up_to_two_seconds() {
        let (outcome, tries, _) = run(Duration::from_secs(60), |n| {
            (n < 6).then(|| failure("refused", true))
        });
        assert!(outcome.is_ok());
        assert_eq!(millis(&tries), [0, 250, 750, 1750, 3750, 5750, 7750]);
    }

    #[test]
    fn a_lasting_failure_ends_the_start_at_once() {
        let (outcome, tries, _) = run(Duration::from_secs(60), |n| {
            Some(match n {
                0 => failure("refused", true),
                _ => failure("no such database", false),
            })
        });
        assert_eq!(tries.len(), 2);
        let error = outcome.unwrap_err().to_string();
        assert_eq!(error, "cannot start on the database: no such database");
    }

    #[test]
    fn at_the_timeout_the_start_ends_saying_how_long_it_waited_and_why() {
        let (outcome, tries, _) = run(Duration::from_secs(5), |_| Some(failure("refused", true)));
        // The last pause is cut short, and a last try made at the deadline.
        assert_eq!(millis(&tries), [0, 250, 750, 1750, 3750, 5000]);
        let error = outcome.unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot start on the database: gave up after waiting 5.0 s for it \
             (--database-start-timeout 5s): refused"
        );
    }

    #[test]
    fn no_timeout_makes_one_attempt_saying_only_why_it_failed() {
        let (outcome, tries, warned) = run(Duration::ZERO, |_| Some(failure("refused", true)));
        assert_eq!(tries.len(), 1);
        assert_eq!(warned, 0);
        let error = outcome.unwrap_err().to_string();
        assert_eq!(error, "cannot start on the database: refused");
    }

    #[test]
    fn warnings_come_once_for_each_reason_and_again_every_ten_seconds_at_most() {
        // One reason for a minute: at the start, then every ten seconds.
        let (_, _, warned) = run(Duration::from_secs(60), |_| Some(failure("refused", true)));
        assert_eq!(warned, 6);
        // Two reasons by turns: no more than one line every two seconds.
        let (_, tries, warned) = run(Duration::from_secs(60), |n| {
            Some(failure(
                if n % 2 == 0 { "refused" } else { "starting up" },
                true,
            ))
        });
        assert!(tries.len() > 30, "{}", tries.len());
        assert!((15..=31).contains(&warned), "{warned}");
    }
}
