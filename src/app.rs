//! The application: `App::build` binds the listener (port 0 in tests) and starts the
//! job service; `run_until_stopped` serves until the one shutdown path has drained
//! every job and stopped the HTTP server.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive};
use actix_service::{ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::{AppConfig, Server};
use actix_web::rt::net::TcpStream;

use actix_web::web;
use slog::{Logger, info, warn};

use crate::http::{
    self, AdminPolicy, ApiState, HostPolicy, InFlightRequests, OwnWall, RequestLog, TimedStream,
    log_request,
};
use crate::jobs::{
    ClusterJobs, ClusterSettings, DebugHooks, Jobs, JobsSettings, LocalJobs, Retention,
    StoreOptions,
};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::shutdown::{Shutdown, SignalsWhileStarting};
use crate::telemetry::{self, RequestLines};
use crate::wall::{self, ConfigError, Limits, WallConfig};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read the wall config {path}: {source}")]
    WallUnreadable { path: String, source: io::Error },
    #[error("bad wall config {path}: {source}")]
    WallInvalid { path: String, source: ConfigError },
    #[error("cannot start the job service: {0}")]
    Jobs(#[from] crate::jobs::StartError),
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: io::Error },
    #[error("cannot take SIGINT and SIGTERM: {0}")]
    Signals(io::Error),
    #[error(
        "the limit of open files is {limit}, below the {needed} a server with {http_workers} \
         HTTP workers needs to start and take a few connections: raise it (`ulimit -n`), \
         or lower --http-workers"
    )]
    TooFewOpenFiles {
        limit: u64,
        needed: u64,
        http_workers: usize,
    },
}

pub struct App {
    server: Server,
    /// A second signal: the drain is not waited for.
    signalled_again: tokio::sync::oneshot::Receiver<()>,
    address: SocketAddr,
    jobs: Jobs,
    shutdown: Shutdown,
    logger: Logger,
    requests: InFlightRequests,
    shutdown_timeout: Duration,
}

/// The descriptors a server needs before its first connection, and room for a few:
/// its files, logs and listener, and each HTTP worker's poller and wakers (measured:
/// 19, and 4 a worker). Below it the server cannot start, or starts with a worker
/// that panics at its first descriptor refused.
fn open_files_needed(http_workers: usize) -> u64 {
    24 + 4 * http_workers as u64 + 16
}

/// Raises the soft limit of open files to the hard one, and returns the limit now
/// (`None`: unlimited). Every connection and every result being written takes a
/// descriptor, and the soft limit a shell or systemd hands down (often 1024) is far
/// below what the process may have.
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum)
        && soft < hard
    {
        limit.current = Some(hard);
        // Refused (a sandbox, say): the server runs within the limit it was given.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current
}

/// How long the server waits, after the last response body is produced, before it
/// closes every connection.
const FLUSH_GRACE: Duration = Duration::from_millis(50);

impl App {
    /// Loads the server's own wall, binds the listener, then starts the job service
    /// (which locks the results directory and recovers jobs from it). Must run inside
    /// an actix system. `node` is the node's id in cluster mode (the loggers name it
    /// already), `None` on the file store.
    ///
    /// # Errors
    /// A bad own wall, an unusable results directory, or an address that cannot be bound.
    pub fn build(
        settings: &Settings,
        node: Option<uuid::Uuid>,
        logger: Logger,
        request_lines: RequestLines,
    ) -> Result<App, StartupError> {
        let signals_while_starting = SignalsWhileStarting::take().map_err(StartupError::Signals)?;
        let open_files = raise_open_files_limit();
        let needed = open_files_needed(settings.http_workers);
        if let Some(limit) = open_files.filter(|limit| *limit < needed) {
            return Err(StartupError::TooFewOpenFiles {
                limit,
                needed,
                http_workers: settings.http_workers,
            });
        }
        let own_wall = OwnWall::build(&load_own_wall(settings)?);
        let metrics = Arc::new(Metrics::new());
        // Bound before the job service starts: a server that cannot listen must leave
        // the results directory as it found it, with no recovery run on it.
        let bind_error = |source| StartupError::Bind {
            bind: settings.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.bind).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let starting = http::StartingAnswers::start(&listener).map_err(bind_error)?;
        if let Some(gate) = &settings.debug_start_gate {
            while !gate.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let shutdown = Shutdown::new();
        let jobs_settings = JobsSettings {
            results_dir: settings.results_dir.clone(),
            workers: settings.workers,
            max_queue: settings.max_queue,
            max_queue_bytes: settings.max_queue_bytes,
            store: StoreOptions {
                min_free_space: settings.min_free_space,
                team_logs: settings.team_logs,
                listening_on: Some(address),
                compaction_floor: settings.debug_compaction_bytes,
            },
            retention: Retention {
                ttl: settings.result_ttl,
                max_results: settings.max_results,
                max_bytes: settings.max_results_bytes as u64,
            },
            debug: DebugHooks {
                job_delay: Duration::from_millis(settings.debug_job_delay_ms),
                job_gate: settings.debug_job_gate.clone(),
                panic_on_num_teams: settings.debug_panic_on_num_teams,
                accept_delay: Duration::from_millis(settings.debug_accept_delay_ms),
                claim_delay: Duration::from_millis(settings.debug_claim_delay_ms),
                finisher_panics: settings.debug_finisher_panics,
            },
        };
        let jobs = match (&settings.database_url, node) {
            (Some(database_url), Some(node)) => {
                metrics.set_node(&node.to_string());
                let cluster = ClusterSettings {
                    database_url: database_url.clone(),
                    node,
                    address: address.to_string(),
                    pool_size: settings.database_pool_size,
                    timeout: settings.database_timeout,
                    start_timeout: settings.database_start_timeout,
                    lease: settings.lease,
                    max_attempts: settings.max_attempts,
                    claim_ahead: settings.claim_ahead,
                    poll: settings.claim_poll,
                    cache_bytes: settings.result_cache_bytes,
                };
                Jobs::Cluster(ClusterJobs::start(
                    &jobs_settings,
                    cluster,
                    shutdown.clone(),
                    logger.clone(),
                    Arc::clone(&metrics),
                )?)
            }
            _ => Jobs::Local(LocalJobs::start(
                &jobs_settings,
                shutdown.clone(),
                logger.clone(),
                Arc::clone(&metrics),
            )?),
        };
        let admin = AdminPolicy::new(settings.admin_token.clone(), address.ip().is_loopback());
        let hosts = HostPolicy::new(&settings.allowed_hosts, address.ip());
        if matches!(admin, AdminPolicy::Refused) {
            warn!(logger, "no --admin-token on a non-loopback address: admin actions are refused over HTTP; use SIGTERM to stop";
                "address" => %address);
        }
        let state = web::Data::new(ApiState {
            jobs: jobs.clone(),
            metrics: Arc::clone(&metrics),
            own_wall,
            shutdown: shutdown.clone(),
            admin,
            hosts,
            limits: settings.limits(),
            max_body: settings.max_body,
            max_summary_profiles: settings.max_summary_profiles,
            max_chart_width: settings.max_chart_width,
            max_gantt_teams: settings.max_gantt_teams,
            request_timeout: settings.request_timeout,
            max_wait: settings.max_wait,
            answers: http::AnswerCache::new(settings.answer_cache_bytes),
        });
        let requests = InFlightRequests::default();
        let request_metrics = Arc::clone(&metrics);
        let in_flight = requests.clone();
        // Per worker, so that its request lines, latency histogram and count of requests
        // in flight are its own, with no lock or atomic read-modify-write a request (see
        // `RequestLines`, `RequestTimes`, `WorkerInFlight`).
        let request_log = move || RequestLog {
            logger: request_lines.logger(),
            times: Rc::new(request_metrics.request_times()),
            in_flight: in_flight.for_worker(),
        };
        let request_timeout = settings.request_timeout;
        let keep_alive = settings.keep_alive;
        let send_timeout = settings.send_timeout;
        let body_drain = http::BodyDrain::new(settings.max_body, settings.request_timeout);
        // The app, beneath the reads answered at once (see `http::AtOnceReads`), with one
        // request log for both.
        let make_service = move || {
            let request_log = request_log();
            let app_log = request_log.clone();
            let app = actix_web::App::new()
                .app_data(state.clone())
                .configure(|config| http::routes(config, body_drain))
                .wrap_fn(move |request, service| log_request(request, service, &app_log));
            let app = map_config(app, move |()| {
                // Its host and address feed only URL generation and ConnectionInfo's
                // fallbacks, which icewall does not use; they have no public setter.
                AppConfig::default()
            });
            http::AtOnceReads::new(app, http::reads_at_once(), state.clone(), request_log)
        };
        // The listener is the HTTP server's from here on.
        drop(starting);
        // What actix-web's HttpServer assembles, but with each accepted stream wrapped:
        // actix-http times the headers of a connection's first request only.
        let server = actix_server::Server::build()
            .workers(settings.http_workers)
            .disable_signals()
            // Whole seconds here; `settle` below keeps the exact timeout.
            .shutdown_timeout(settings.shutdown_timeout.as_secs_f64().ceil() as u64)
            .listen("icewall", listener, move || {
                let app = make_service();
                fn_service(move |stream: TcpStream| async move {
                    // A response written in more than one piece (a streamed body) must not
                    // wait for the client's delayed ACK: without this, such answers took
                    // 40 ms more.
                    let _ = stream.set_nodelay(true);
                    // The kernel closes a connection whose client has taken none of its
                    // answer (its receive window shut), or acknowledged none of it, for
                    // this long: such a client would otherwise hold the connection, and
                    // the answer's body, for ever.
                    #[cfg(target_os = "linux")]
                    let _ = rustix::net::sockopt::set_tcp_user_timeout(
                        &stream,
                        u32::try_from(send_timeout.as_millis()).unwrap_or(u32::MAX),
                    );
                    let peer = stream.peer_addr().ok();
                    let stream = TimedStream::new(stream, request_timeout, keep_alive);
                    Ok::<_, DispatchError>((stream, peer))
                })
                .and_then(
                    HttpService::build()
                        // TimedStream times every request's headers, and idle connections.
                        .keep_alive(if keep_alive.is_zero() {
                            KeepAlive::Disabled
                        } else {
                            KeepAlive::Os
                        })
                        .client_request_timeout(Duration::ZERO)
                        .local_addr(address)
                        .on_connect_ext(|stream: &TimedStream, data| {
                            data.insert(stream.connection());
                        })
                        .h1(app),
                )
            })
            .map_err(bind_error)?
            .run();
        let started = logger.new(slog::o!(
            "address" => address.to_string(),
            "workers" => settings.workers,
            "http_workers" => settings.http_workers,
            "max_queue" => settings.max_queue,
            "max_body" => settings.max_body,
            "max_sections" => settings.max_sections,
            "open_files_limit" => open_files.map_or_else(|| "unlimited".to_owned(), |limit| limit.to_string()),
        ));
        // A node in cluster mode keeps nothing in the results directory.
        match node {
            Some(node) => info!(started, "started"; "cluster_mode" => true, "node_id" => %node),
            None => info!(started, "started"; "cluster_mode" => false,
                "results_dir" => %settings.results_dir.display(),
                "jobs_on_disk" => jobs.known_here()),
        }
        // Taken once the start-up's recovery is done (a signal during it stops the
        // process at once, see `SignalsWhileStarting`), and before the server says it
        // listens.
        let (impatient, signalled_again) = tokio::sync::oneshot::channel();
        let signals = (shutdown.clone())
            .on_signals(impatient)
            .map_err(StartupError::Signals)?;
        actix_web::rt::spawn(signals);
        // Only now: a signal in between is the one just taken's, for when the server runs.
        drop(signals_while_starting);
        Ok(App {
            server,
            signalled_again,
            address,
            jobs,
            shutdown,
            logger,
            requests,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    /// The address actually bound (with the real port when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until shutdown is triggered, then refuses new jobs, waits until every
    /// queued and running job has its result on disk, and stops the HTTP server
    /// (which keeps answering status polls during the drain).
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let handle = self.server.handle();
        let mut server = actix_web::rt::spawn(self.server);
        let mut signalled_again = self.signalled_again;
        tokio::select! {
            () = self.shutdown.triggered() => {}
            finished = &mut server => {
                return finished.unwrap_or_else(|error| Err(io::Error::other(error)));
            }
        }
        let pending = self.jobs.pending_here();
        info!(self.logger, "shutting down: draining the job queue"; "pending" => pending);
        let started = Instant::now();
        let jobs = self.jobs.clone();
        let (drained, drain_done) = tokio::sync::oneshot::channel();
        // A thread of its own, not the runtime's blocking pool, whose end the runtime's
        // would wait for: a second signal leaves the drain behind.
        std::thread::Builder::new()
            .name("drain".to_owned())
            .spawn(move || {
                jobs.drain();
                let _ = drained.send(());
            })?;
        tokio::select! {
            done = drain_done => {
                if done.is_err() {
                    warn!(self.logger, "the drain did not complete");
                }
            }
            Ok(()) = &mut signalled_again => {
                // Every accepted job is journaled: the next start runs what is left.
                warn!(self.logger, "a second signal: stopping without finishing the queue; \
                    its jobs run at the next start"; "pending" => self.jobs.pending_here());
                handle.stop(false).await;
                let _ = server.await;
                return Err(io::Error::other(
                    "stopped by a second signal before the job queue was drained",
                ));
            }
        }
        // No count of jobs here: submissions under way when the drain began may have
        // added some to `pending`.
        info!(self.logger, "job queue drained";
            "elapsed_ms" => telemetry::millis(started.elapsed()),
            "jobs_known" => self.jobs.known_here());
        // Requests still being answered get `shutdown_timeout`; idle connections none.
        self.requests.settle(self.shutdown_timeout).await;
        // A last answer's bytes may still be in a connection's buffer: let them go out.
        tokio::time::sleep(FLUSH_GRACE).await;
        handle.stop(false).await;
        let stopped = server
            .await
            .unwrap_or_else(|error| Err(io::Error::other(error)));
        self.jobs.close();
        info!(self.logger, "stopped");
        stopped
    }
}

fn load_own_wall(settings: &Settings) -> Result<WallConfig, StartupError> {
    let (path, text) = match &settings.profiles {
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read(path).map_err(|source| StartupError::WallUnreadable {
                path: shown.clone(),
                source,
            })?;
            (shown, text)
        }
        None => (
            "(built-in example)".to_owned(),
            wall::EXAMPLE_WALL.as_bytes().to_vec(),
        ),
    };
    let invalid = |source| StartupError::WallInvalid {
        path: path.clone(),
        source,
    };
    // The operator's wall obeys the problem's per-profile rule, not the per-job limit.
    let limits = Limits {
        max_sections_per_profile: settings.max_profile_sections,
        ..Limits::engine_bounds()
    };
    let config = wall::parse_config(&text, &limits).map_err(invalid)?;
    Ok(match settings.num_teams {
        Some(teams) => config.with_num_teams(Some(teams)),
        None => config,
    })
}
