//! The OpenAPI 3 description of the API, served at `/api/openapi.json`: the paths come
//! from the `#[utoipa::path]` annotations on the handlers, the bodies from the schema
//! types here (which mirror what the handlers send; schemathesis checks that they do).

use std::collections::HashSet;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::web;
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::ApiState;

use super::{chart, jobs, operations, own_wall, submit};

/// Every error: a real status code and this body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    #[schema(pattern = "^error$")]
    status: String,
    /// One clear sentence; a validation error names where the input is wrong.
    reason: String,
}

/// A wall config in the JSON form: profiles of section heights (integers 0 to 30, at
/// most 2000 a profile), left to right.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct WallConfigBody {
    #[schema(schema_with = profiles_schema)]
    profiles: Vec<Vec<u8>>,
    #[schema(minimum = 1, nullable)]
    num_teams: Option<i64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobAccepted {
    #[schema(format = Uuid)]
    job_id: String,
}

/// Status of a job; `data` when done, `reason` when failed.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobResult {
    #[schema(pattern = "^(queued|running|done|failed)$")]
    status: String,
    data: Option<Summary>,
    reason: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Summary {
    days: u64,
    #[schema(nullable)]
    num_teams: Option<u64>,
    ice: u64,
    cost: u64,
    /// At most `--max-summary-profiles` rows (1000 by default), the first ones; the
    /// rest are read with `/api/jobs/{id}/profiles`.
    profiles: Vec<ProfileSummary>,
    /// Only when rows were left out: how many profiles the wall has.
    profiles_total: Option<u64>,
    /// Only when rows were left out: `true`.
    profiles_truncated: Option<bool>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProfileSummary {
    profile: u64,
    sections: u64,
    days: u64,
    ice: u64,
    cost: u64,
}

/// A page of a done job's per-profile summary rows, in profile order.
#[derive(ToSchema, serde::Serialize)]
pub struct ProfilePage {
    #[schema(value_type = Vec<ProfileSummary>)]
    pub profiles: Vec<crate::wall::ProfileSummary>,
    /// The `after` of the next page; `null` on the last one.
    #[schema(nullable, minimum = 1)]
    pub next_after: Option<usize>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobList {
    #[schema(pattern = "^done$")]
    status: String,
    data: Vec<JobListEntry>,
}

/// A row of the job list.
#[derive(ToSchema, serde::Serialize)]
pub struct JobListEntry {
    #[schema(format = Uuid)]
    pub job_id: String,
    #[schema(value_type = String, pattern = "^(queued|running|done|failed)$")]
    pub status: &'static str,
    /// RFC 3339 in UTC, from the job id.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// RFC 3339 in UTC; `null` until the job is done or failed.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NumJobs {
    num_jobs: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ShuttingDown {
    #[schema(pattern = "^shutting_down$")]
    status: String,
    pending: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Deleted {
    #[schema(format = Uuid)]
    job_id: String,
    #[schema(pattern = "^(deleted|cancelled)$")]
    status: String,
}

/// `ice(p, d)`: cubic yards of ice used on day `day`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IceAnswer {
    day: u64,
    ice_amount: u64,
}

/// Gold Dragons spent on days 1..=`day` (`null`: the whole wall).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CostAnswer {
    #[schema(nullable)]
    day: Option<u64>,
    cost: u64,
}

/// Profiles as the parser takes them: at least one, each of 1 to 2000 heights in 0..=30.
fn profiles_schema() -> Array {
    let height = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(30));
    let profile = ArrayBuilder::new()
        .items(height)
        .min_items(Some(1))
        .max_items(Some(2000));
    ArrayBuilder::new()
        .items(profile)
        .min_items(Some(1))
        .build()
}

/// The text form of a wall config, exactly as the parser takes it: lines of heights
/// (plain digits, value 0 to 30) separated by ASCII blanks, at most 2000 a line.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^\uFEFF?[ \t\f\r\n]*(-0+|0*(30|[12]?[0-9]))([ \t\f\r]+(-0+|0*(30|[12]?[0-9]))){0,1999}([ \t\f\r]*\n[ \t\f\r\n]*(-0+|0*(30|[12]?[0-9]))([ \t\f\r]+(-0+|0*(30|[12]?[0-9]))){0,1999})*[ \t\f\r\n]*$")]
#[allow(dead_code)]
pub struct WallConfigText(String);

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    #[schema(pattern = "^(ok|ready)$")]
    status: String,
}

struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// One annotation serving several methods (`method(get, post)`) gives each of them the
/// same operationId, which client generators refuse: every method after the first keeps
/// the id with its own name appended (`graceful_shutdown_post`), so ids stay stable.
struct DistinctOperationIds;

impl Modify for DistinctOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let mut taken = HashSet::new();
            for (method, operation) in [
                ("get", &mut item.get),
                ("head", &mut item.head),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("trace", &mut item.trace),
            ] {
                let Some(id) = operation
                    .as_mut()
                    .and_then(|operation| operation.operation_id.as_mut())
                else {
                    continue;
                };
                if !taken.insert(id.clone()) {
                    id.push('_');
                    id.push_str(method);
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "icewall", description = "A job server that simulates building the Wall."),
    paths(
        submit::submit,
        jobs::results,
        jobs::details,
        jobs::list,
        jobs::count,
        jobs::graceful_shutdown,
        jobs::delete,
        jobs::ice,
        jobs::profile_cost,
        jobs::wall_cost,
        jobs::total_cost,
        jobs::log,
        jobs::profiles,
        chart::chart,
        own_wall::ice,
        own_wall::profile_cost,
        own_wall::wall_cost,
        own_wall::total_cost,
        own_wall::config,
        own_wall::log,
        openapi,
        operations::metrics,
        operations::stats,
        operations::healthz,
        operations::readyz,
    ),
    components(schemas(ErrorBody, WallConfigBody, WallConfigText, JobAccepted, JobResult, Summary, ProfileSummary, ProfilePage, JobList,
        JobListEntry, jobs::JobDetails, NumJobs, ShuttingDown, Deleted, IceAnswer, CostAnswer, Health, chart::Chart,
        chart::IceSeries, chart::TeamChart, crate::wall::GanttRow, operations::Stats, operations::JobCounts, operations::Workers,
        operations::Throughput, crate::metrics::Interval, crate::metrics::Spread)),
    modifiers(&AdminToken, &DistinctOperationIds),
)]
struct ApiDoc;

/// This document, with the limits this server was started with.
#[utoipa::path(get, path = "/api/openapi.json", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi(state: web::Data<ApiState>) -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document =
        DOCUMENT.get_or_init(|| document(state.max_wait.as_secs_f64(), state.max_chart_width));
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.as_str())
}

/// The document, its flag-bound parameters given their maximum: a client (or a fuzzer)
/// reading it learns which values this server takes.
fn document(max_wait_secs: f64, max_chart_width: usize) -> String {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    for (path, name, maximum) in [
        (
            "/api/get_results/{id}",
            "wait",
            serde_json::json!(max_wait_secs),
        ),
        (
            "/api/jobs/{id}/chart",
            "width",
            serde_json::json!(max_chart_width),
        ),
    ] {
        let parameters = document["paths"][path]["get"]["parameters"].as_array_mut();
        let parameter = parameters
            .into_iter()
            .flatten()
            .find(|parameter| parameter["name"] == name)
            .expect("the parameter is documented");
        parameter["schema"]["maximum"] = maximum;
    }
    serde_json::to_string_pretty(&document).expect("the document serializes")
}
