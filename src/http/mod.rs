//! The HTTP API of API.md: routes, the state handlers share, and JSON answers for
//! unknown routes and wrong methods (never an HTML or empty error page).

mod admin;
mod error;
mod jobs;
mod openapi;
mod operations;
mod own_wall;
mod queries;
mod submit;

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, Resource, web};

pub use admin::AdminPolicy;
pub use error::ApiError;
pub use own_wall::OwnWall;

use std::sync::Arc;

use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::wall::Limits;

/// The id of an HTTP request, from its `X-Request-Id` or made up, set by the request
/// middleware and carried on the log lines of the request and its job.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's id if it is 1 to 128 visible ASCII characters; a new one otherwise.
    pub fn from_header(value: Option<&str>) -> RequestId {
        let valid = |id: &&str| {
            (1..=128).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
        };
        match value.filter(valid) {
            Some(id) => RequestId(id.to_owned()),
            None => RequestId(uuid::Uuid::now_v7().simple().to_string()),
        }
    }
}

/// What every handler can reach, shared through `web::Data`.
pub struct ApiState {
    pub jobs: Jobs,
    pub metrics: Arc<Metrics>,
    pub own_wall: OwnWall,
    pub shutdown: Shutdown,
    pub admin: AdminPolicy,
    pub limits: Limits,
    pub max_body: usize,
    /// Most per-profile rows in a summary answer (see `Settings::max_summary_profiles`).
    pub max_summary_profiles: usize,
    pub request_timeout: Duration,
}

/// A resource that answers other methods with a JSON 405 naming the allowed ones.
fn endpoint(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |request: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            method: request.method().to_string(),
            allow,
        })
    }))
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::BadRequest(format!("bad query string: {error}")).into()
        }))
        .service(endpoint("/api/openapi.json", "GET").route(web::get().to(openapi::openapi)))
        .service(endpoint("/metrics", "GET").route(web::get().to(operations::metrics)))
        .service(endpoint("/healthz", "GET").route(web::get().to(operations::healthz)))
        .service(endpoint("/readyz", "GET").route(web::get().to(operations::readyz)))
        .service(endpoint("/api/simulate", "POST").route(web::post().to(submit::submit)))
        .service(endpoint("/api/get_results/{id}", "GET").route(web::get().to(jobs::results)))
        .service(endpoint("/api/jobs", "GET").route(web::get().to(jobs::list)))
        .service(endpoint("/api/num_jobs", "GET").route(web::get().to(jobs::count)))
        .service(
            endpoint("/api/graceful_shutdown", "GET, POST")
                .route(web::get().to(jobs::graceful_shutdown))
                .route(web::post().to(jobs::graceful_shutdown)),
        )
        .service(
            endpoint("/api/jobs/{id}/profiles/{p}/days/{d}", "GET").route(web::get().to(jobs::ice)),
        )
        .service(
            endpoint("/api/jobs/{id}/profiles/{p}/overview/{d}", "GET")
                .route(web::get().to(jobs::profile_cost)),
        )
        .service(
            endpoint("/api/jobs/{id}/profiles/overview/{d}", "GET")
                .route(web::get().to(jobs::wall_cost)),
        )
        .service(
            endpoint("/api/jobs/{id}/profiles/overview", "GET")
                .route(web::get().to(jobs::total_cost)),
        )
        .service(endpoint("/api/jobs/{id}/profiles", "GET").route(web::get().to(jobs::profiles)))
        .service(endpoint("/api/jobs/{id}/log", "GET").route(web::get().to(jobs::log)))
        .service(endpoint("/api/jobs/{id}", "DELETE").route(web::delete().to(jobs::delete)))
        .service(endpoint("/profiles/{p}/days/{d}", "GET").route(web::get().to(own_wall::ice)))
        .service(
            endpoint("/profiles/{p}/overview/{d}", "GET")
                .route(web::get().to(own_wall::profile_cost)),
        )
        .service(
            endpoint("/profiles/overview/{d}", "GET").route(web::get().to(own_wall::wall_cost)),
        )
        .service(endpoint("/profiles/overview", "GET").route(web::get().to(own_wall::total_cost)))
        .service(endpoint("/profiles/config", "GET").route(web::get().to(own_wall::config)))
        .service(endpoint("/profiles/logs", "GET").route(web::get().to(own_wall::log)))
        .default_service(web::to(not_found));
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        request.method(),
        crate::wall::truncate_for_message(request.path())
    )))
}
