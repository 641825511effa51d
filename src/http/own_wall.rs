//! The original problem's endpoints (`/profiles/...`), answered for the wall the server
//! was started with. It is simulated once at start-up and its bodies kept ready.

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};

use super::bodies::{CostAnswer, ErrorBody, IceAnswer, WallConfigBody, ok_json, ok_json_bytes};
use super::endpoint::{Params, PathParams};
use super::queries::Question;
use super::{ApiError, ApiState};
use crate::wall::{self, WallConfig, WorkTables};

pub struct OwnWall {
    work: WorkTables,
    config_body: Bytes,
    overview_body: Bytes,
    log_body: Bytes,
}

impl OwnWall {
    pub fn build(config: &WallConfig) -> OwnWall {
        let outcome = wall::simulate(config);
        let mut log = Vec::new();
        outcome
            .log
            .write_to(&mut log)
            .expect("writing to memory cannot fail");
        let overview = Question::TotalCost
            .answer(&outcome.work)
            .expect("the whole-wall cost has no profile to miss");
        OwnWall {
            config_body: serde_json::to_vec(config)
                .expect("a config serializes")
                .into(),
            // Kept for the life of the process, as the server's own wall is: a static
            // body is shared with each answer without the two atomic reference count
            // changes of a shared one (this is the most read endpoint of all). A few
            // dozen bytes once per start.
            overview_body: Bytes::from_static(Box::leak(
                serde_json::to_vec(&overview)
                    .expect("an answer serializes")
                    .into_boxed_slice(),
            )),
            log_body: log.into(),
            work: outcome.work,
        }
    }
}

fn own(state: &ApiState) -> &OwnWall {
    &state.own_wall
}

#[utoipa::path(get, path = "/profiles/{p}/days/{d}", operation_id = "own_wall_ice", params(("p" = u64, Path, minimum = 1, description = "Profile number, from 1"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Ice used by the profile on the day, for the server's own wall", body = IceAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "No such profile", body = ErrorBody)))]
pub async fn ice(path: PathParams, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let question = Question::ice(path.get("p"), path.get("d"))?;
    Ok(ok_json(&question.answer(&own(&state).work)?))
}

#[utoipa::path(get, path = "/profiles/{p}/overview/{d}", operation_id = "own_wall_profile_cost", params(("p" = u64, Path, minimum = 1, description = "Profile number, from 1"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Cost of the profile up to the day", body = CostAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "No such profile", body = ErrorBody)))]
pub async fn profile_cost(
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let question = Question::profile_cost(path.get("p"), path.get("d"))?;
    Ok(ok_json(&question.answer(&own(&state).work)?))
}

#[utoipa::path(get, path = "/profiles/overview/{d}", operation_id = "own_wall_cost", params(("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Cost of the wall up to the day", body = CostAnswer), (status = 400, description = "The day is not a positive integer", body = ErrorBody)))]
pub async fn wall_cost(
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let question = Question::wall_cost(path.get("d"))?;
    Ok(ok_json(&question.answer(&own(&state).work)?))
}

#[utoipa::path(get, path = "/profiles/overview", operation_id = "own_wall_total_cost", responses((status = 200, description = "Cost of the whole wall", body = CostAnswer)))]
pub async fn total_cost(state: web::Data<ApiState>) -> HttpResponse {
    overview(&state)
}

/// `total_cost` at once (see `endpoint::AtOnce`): its body is always at hand.
pub(super) fn total_cost_at_once(state: &ApiState, _: &Params<'_>) -> Option<HttpResponse> {
    Some(overview(state))
}

fn overview(state: &ApiState) -> HttpResponse {
    ok_json_bytes(own(state).overview_body.clone())
}

#[utoipa::path(get, path = "/profiles/config", responses((status = 200, description = "The server's own wall", body = WallConfigBody)))]
pub async fn config(state: web::Data<ApiState>) -> HttpResponse {
    ok_json_bytes(own(&state).config_body.clone())
}

#[utoipa::path(get, path = "/profiles/logs", operation_id = "own_wall_log", responses((status = 200, description = "Its team log", body = String, content_type = "text/plain")))]
pub async fn log(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(own(&state).log_body.clone())
}
