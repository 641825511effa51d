//! Endpoints for operators: Prometheus metrics, the overview's numbers, liveness and
//! readiness.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::bodies::{ErrorBody, Health, Node, ok_json};
use super::{ApiError, ApiState};
use crate::metrics::{Interval, Spread};

/// Jobs known, by state.
#[derive(Serialize, ToSchema)]
pub struct JobCounts {
    queued: usize,
    running: usize,
    done: usize,
    failed: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Workers {
    /// Workers running a job.
    busy: usize,
    total: usize,
}

/// Jobs finished per interval, oldest first; the last interval is the one under way.
/// The intervals are counted from the server's start, not the clock's minutes.
#[derive(Serialize, ToSchema)]
pub struct Throughput {
    interval_seconds: u64,
    /// How much of the last interval, the one under way, has passed: less than
    /// `interval_seconds`, so its counts are of that much time only.
    current_interval_ms: u64,
    /// How many of the first intervals came before the server started (all but the last
    /// in its first minute): zeros that counted nothing, not an idle server.
    intervals_before_start: usize,
    intervals: Vec<Interval>,
}

/// What the page's overview shows: read from memory on a node on its own, from the
/// database in cluster mode.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    jobs: JobCounts,
    /// Jobs waiting for a worker.
    queue_depth: usize,
    workers: Workers,
    /// False once a shutdown has begun: new jobs are refused.
    accepting: bool,
    throughput: Throughput,
    /// From acceptance to the start of a run, over the latest 1000 jobs.
    queue_wait: Spread,
    /// From the start of a run to its stored result, over the latest 1000 jobs.
    run_time: Spread,
    /// Cluster mode only: every node sharing the database, in the order they joined;
    /// absent on a node on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<Node>>,
    /// The widest `/api/jobs/<id>/chart` this server draws (`--max-chart-width`): the
    /// page asks for no more, as a wider screen would be refused.
    max_chart_width: usize,
}

/// The Prometheus text exposition of every metric.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Metrics in the Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let text = state.metrics.render(&state.jobs.snapshot());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// The overview: jobs by state, queue depth, busy workers, throughput over the last
/// hour and the spread of recent waits and run times; in cluster mode, the nodes.
#[utoipa::path(get, path = "/api/stats", responses(
    (status = 200, description = "The server's numbers now", body = Stats),
    (status = 503, description = "Cluster mode: the database did not answer", body = ErrorBody)))]
pub async fn stats(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let now = state.jobs.snapshot();
    let [queued, running, done, failed] = state.jobs.counts().await?;
    let recent = state.metrics.recent();
    let nodes = state
        .jobs
        .nodes()
        .await?
        .map(|nodes| nodes.into_iter().map(Node::of).collect());
    Ok(ok_json(&Stats {
        jobs: JobCounts {
            queued,
            running,
            done,
            failed,
        },
        queue_depth: now.queue_depth,
        workers: Workers {
            busy: now.running_here.min(now.workers),
            total: now.workers,
        },
        accepting: state.jobs.is_accepting(),
        throughput: Throughput {
            interval_seconds: 60,
            current_interval_ms: recent.current_minute_ms,
            intervals_before_start: recent.before_start,
            intervals: recent.throughput,
        },
        queue_wait: recent.queue_wait,
        run_time: recent.run_time,
        nodes,
        max_chart_width: state.max_chart_width,
    }))
}

/// Alive: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The server is alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    ok_json(&Health { status: "ok" })
}

/// Ready for new jobs: not shutting down, the result store takes a write, and its file
/// system has the free space `--min-free-space` asks for.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "The server takes new jobs", body = Health),
    (status = 503, description = "Starting, shutting down, the result store cannot be written, or its disk is below --min-free-space", body = ErrorBody,
        headers(("Retry-After" = u32)))))]
pub async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    if !state.jobs.is_accepting() {
        return Err(ApiError::Unavailable(
            "the server is shutting down".to_owned(),
        ));
    }
    let jobs = state.jobs.clone();
    web::block(move || jobs.probe_store())
        .await?
        .map_err(|error| {
            ApiError::Unavailable(format!("the result store cannot be written: {error}"))
        })?;
    Ok(ok_json(&Health { status: "ready" }))
}
