//! The HTTP API of API.md: routes, the state handlers share, and JSON answers for
//! unknown routes and wrong methods (never an HTML or empty error page).

mod admin;
mod answer_cache;
mod at_once;
pub mod bodies;
mod chart;
mod connection;
mod endpoint;
mod error;
mod gate;
mod job_results;
mod jobs;
mod lookup;
mod openapi;
mod operations;
mod own_wall;
mod page;
mod queries;
mod request_id;
mod request_log;
mod starting;
mod submit;
mod unread_body;

use std::time::Duration;

use actix_web::http::Method;
use actix_web::web;

pub use admin::AdminPolicy;
pub use answer_cache::AnswerCache;
pub use at_once::AtOnceReads;
pub use connection::{Connection, RequestOnConnection, TimedStream};
pub use error::ApiError;
pub use gate::HostPolicy;
pub use own_wall::OwnWall;
pub use request_id::RequestId;
pub use request_log::{InFlightRequests, RequestLog, RequestTag, log_request};
pub use starting::StartingAnswers;
pub use unread_body::BodyDrain;

use std::sync::Arc;

use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::wall::Limits;
use endpoint::{Endpoint, Endpoints, endpoint, only, read};

/// What every handler can reach, shared through `web::Data`.
pub struct ApiState {
    pub jobs: Jobs,
    pub metrics: Arc<Metrics>,
    pub own_wall: OwnWall,
    pub shutdown: Shutdown,
    pub admin: AdminPolicy,
    pub hosts: HostPolicy,
    pub limits: Limits,
    pub max_body: usize,
    /// Most per-profile rows in a summary answer (see `Settings::max_summary_profiles`).
    pub max_summary_profiles: usize,
    /// Most buckets per chart series (see `Settings::max_chart_width`).
    pub max_chart_width: usize,
    /// Most team rows in a chart's Gantt (see `Settings::max_gantt_teams`).
    pub max_gantt_teams: usize,
    pub request_timeout: Duration,
    /// The longest `?wait=` of `/api/get_results`.
    pub max_wait: Duration,
    /// Answers to questions on done jobs (see `Settings::answer_cache_bytes`).
    pub answers: AnswerCache,
}

/// The methods of an endpoint for reading, as its 405 names them.
const GET: &str = "GET, HEAD";

/// The routes: the endpoints in one table (see `endpoint`), which reads what a handler
/// left of a body as `drain` bounds.
pub fn routes(config: &mut web::ServiceConfig, drain: BodyDrain) {
    config
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::BadRequest(format!("bad query string: {error}")).into()
        }))
        .default_service(Endpoints::new(endpoints(), drain));
}

/// The reads answered at once beneath actix-web (see `at_once`): the endpoints that can.
pub fn reads_at_once() -> Vec<at_once::ReadAtOnce> {
    endpoints()
        .into_iter()
        .filter_map(Endpoint::into_read_at_once)
        .collect()
}

/// Every endpoint, in the order they are tried; no two patterns match the same path, so
/// the order decides nothing else.
fn endpoints() -> Vec<Endpoint> {
    let mut endpoints = vec![endpoint("/", GET, &[], vec![read().to(page::index)])];
    endpoints.extend(api_endpoints());
    endpoints.extend(own_wall_endpoints());
    endpoints.extend([
        endpoint("/metrics", GET, &[], vec![read().to(operations::metrics)]),
        endpoint("/healthz", GET, &[], vec![read().to(operations::healthz)]),
        endpoint("/readyz", GET, &[], vec![read().to(operations::readyz)]),
        endpoint("/assets/{name}", GET, &[], vec![read().to(page::asset)]),
    ]);
    endpoints
}

/// Under `/api`: the jobs, their results, and the server's own operations.
fn api_endpoints() -> Vec<Endpoint> {
    vec![
        endpoint("/api/stats", GET, &[], vec![read().to(operations::stats)]),
        endpoint(
            "/api/openapi.json",
            GET,
            &[],
            vec![read().to(openapi::openapi)],
        ),
        endpoint(
            "/api/simulate",
            "POST",
            &["num_teams"],
            vec![only(Method::POST).to(submit::submit)],
        ),
        endpoint(
            "/api/jobs",
            GET,
            &["limit", "after", "status", "order"],
            vec![read().to(jobs::list)],
        ),
        endpoint("/api/num_jobs", GET, &[], vec![read().to(jobs::count)]),
        // No HEAD: it is a safe method, and link checkers and prefetchers send it freely.
        endpoint(
            "/api/graceful_shutdown",
            "GET, POST",
            &[],
            vec![
                only(Method::GET).to(jobs::graceful_shutdown),
                only(Method::POST).to(jobs::graceful_shutdown),
            ],
        ),
        endpoint(
            "/api/get_results/{id}",
            GET,
            &["wait"],
            vec![read().to(jobs::results)],
        )
        .at_once(jobs::results_at_once),
        endpoint(
            "/api/jobs/{id}/profiles/{p}/days/{d}",
            GET,
            &[],
            vec![read().to(job_results::ice)],
        )
        .at_once(job_results::ice_at_once),
        endpoint(
            "/api/jobs/{id}/profiles/{p}/overview/{d}",
            GET,
            &[],
            vec![read().to(job_results::profile_cost)],
        )
        .at_once(job_results::profile_cost_at_once),
        endpoint(
            "/api/jobs/{id}/profiles/overview/{d}",
            GET,
            &[],
            vec![read().to(job_results::wall_cost)],
        )
        .at_once(job_results::wall_cost_at_once),
        endpoint(
            "/api/jobs/{id}/profiles/overview",
            GET,
            &[],
            vec![read().to(job_results::total_cost)],
        )
        .at_once(job_results::total_cost_at_once),
        endpoint(
            "/api/jobs/{id}/profiles",
            GET,
            &["after", "limit"],
            vec![read().to(job_results::profiles)],
        ),
        endpoint(
            "/api/jobs/{id}/config",
            GET,
            &["after", "limit"],
            vec![read().to(job_results::config)],
        ),
        endpoint(
            "/api/jobs/{id}/chart",
            GET,
            &["width"],
            vec![read().to(chart::chart)],
        ),
        endpoint(
            "/api/jobs/{id}/log",
            GET,
            &[],
            vec![read().to(job_results::log)],
        ),
        endpoint(
            "/api/jobs/{id}/cancel",
            "POST",
            &[],
            vec![only(Method::POST).to(jobs::cancel)],
        ),
        endpoint(
            "/api/jobs/{id}",
            "GET, HEAD, DELETE",
            &[],
            vec![
                read().to(jobs::details),
                only(Method::DELETE).to(jobs::delete),
            ],
        ),
    ]
}

/// Under `/profiles`: the original problem's endpoints, for the server's own wall.
fn own_wall_endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(
            "/profiles/overview",
            GET,
            &[],
            vec![read().to(own_wall::total_cost)],
        )
        .at_once(own_wall::total_cost_at_once),
        endpoint(
            "/profiles/config",
            GET,
            &[],
            vec![read().to(own_wall::config)],
        ),
        endpoint("/profiles/logs", GET, &[], vec![read().to(own_wall::log)]),
        endpoint(
            "/profiles/{p}/days/{d}",
            GET,
            &[],
            vec![read().to(own_wall::ice)],
        ),
        endpoint(
            "/profiles/{p}/overview/{d}",
            GET,
            &[],
            vec![read().to(own_wall::profile_cost)],
        ),
        endpoint(
            "/profiles/overview/{d}",
            GET,
            &[],
            vec![read().to(own_wall::wall_cost)],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `handler` returns, the future actix-web boxes for every request.
    fn future_size<Handler, A, B, C, Answer>(_: &Handler) -> usize
    where
        Handler: Fn(A, B, C) -> Answer,
    {
        std::mem::size_of::<Answer>()
    }

    fn future_size_2<Handler, A, B, Answer>(_: &Handler) -> usize
    where
        Handler: Fn(A, B) -> Answer,
    {
        std::mem::size_of::<Answer>()
    }

    /// The reads that the layer beneath actix-web answers when their answer is at hand
    /// (see `at_once`): an endpoint that lost its `.at_once` would still answer, only
    /// slower, which no answer shows.
    #[test]
    fn the_hottest_reads_are_answered_at_once() {
        let patterns: Vec<&str> = reads_at_once()
            .iter()
            .map(|read| read.pattern.text)
            .collect();
        assert_eq!(
            patterns,
            [
                "/api/get_results/{id}",
                "/api/jobs/{id}/profiles/{p}/days/{d}",
                "/api/jobs/{id}/profiles/{p}/overview/{d}",
                "/api/jobs/{id}/profiles/overview/{d}",
                "/api/jobs/{id}/profiles/overview",
                "/profiles/overview",
            ]
        );
    }

    /// A read's future is allocated and moved for every request: the state of rare paths
    /// (a wait, a disk read, a cluster node's database round trip) is boxed where it is
    /// taken, so that it does not size the common one (`get_results` was 3 KiB, past the
    /// allocator's fast sizes).
    #[test]
    fn the_reads_futures_stay_small() {
        for (read, size) in [
            ("get_results", future_size(&jobs::results)),
            ("day query", future_size_2(&job_results::ice)),
            ("a job's overview", future_size_2(&job_results::total_cost)),
            ("a job's details", future_size_2(&jobs::details)),
        ] {
            assert!(size <= 1024, "{read}: {size} bytes");
        }
    }
}
