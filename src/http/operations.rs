//! Endpoints for operators: Prometheus metrics, liveness and readiness.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::openapi::*;
use super::{ApiError, ApiState};

/// The Prometheus text exposition of every metric.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Metrics in the Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let text = state.metrics.render(&state.jobs.snapshot());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// Alive: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The server is alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready for new jobs: not shutting down, the result store takes a write, and its file
/// system has the free space `--min-free-space` asks for.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "The server takes new jobs", body = Health),
    (status = 503, description = "Shutting down, the result store cannot be written, or its disk is below --min-free-space", body = ErrorBody,
        headers(("Retry-After" = u32)))))]
pub async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    if !state.jobs.is_accepting() {
        return Err(ApiError::Unavailable(
            "the server is shutting down".to_owned(),
        ));
    }
    let jobs = state.jobs.clone();
    web::block(move || jobs.probe_store()).await?.map_err(|error| {
        ApiError::Unavailable(format!("the result store cannot be written: {error}"))
    })?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
