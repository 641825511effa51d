//! The JSON bodies of the API: the handlers send these types and the OpenAPI document
//! describes them, so the document cannot drift from what is sent. Fields are in the
//! order the answers have always had (an error's `reason` before its `status`).

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, Type};

use super::jobs::rfc3339;
use crate::jobs::ClusterNode;
use crate::wall::{self, ProfileSummary};

/// The `Content-Type` of a JSON answer, a static header value that is never copied:
/// actix-web's `.json()` and `ContentType::json()` copy it for every answer.
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A 200 with `value` as its JSON body.
pub fn ok_json(value: &impl Serialize) -> HttpResponse {
    json_with(HttpResponse::Ok(), value)
}

/// The answer `response` (its status and headers) with `value` as its JSON body.
pub fn json_with(mut response: HttpResponseBuilder, value: &impl Serialize) -> HttpResponse {
    match json_bytes(value) {
        Ok(body) => json_body(&mut response, body),
        Err(error) => error.error_response(),
    }
}

/// The answer `response` with `body`, already JSON.
fn json_body(response: &mut HttpResponseBuilder, body: Bytes) -> HttpResponse {
    response.insert_header((CONTENT_TYPE, JSON)).body(body)
}

/// `value` as JSON, ready to send (or to keep and send again).
pub fn json_bytes(value: &impl Serialize) -> Result<Bytes, super::ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|error| super::ApiError::Internal(error.to_string()))
}

/// A 200 with a body already made JSON. Made without a builder, whose header
/// conversions and checks the most frequent answers need not pay for.
pub fn ok_json_bytes(body: Bytes) -> HttpResponse {
    let mut response = HttpResponse::with_body(StatusCode::OK, BoxBody::new(body));
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// Every error: a real status code and this body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// One clear sentence; a validation error names where the input is wrong.
    pub reason: String,
    #[schema(value_type = String, pattern = "^error$")]
    pub status: &'static str,
}

impl ErrorBody {
    pub fn new(reason: String) -> ErrorBody {
        ErrorBody {
            reason,
            status: "error",
        }
    }
}

/// A wall config in the JSON form: profiles of section heights (integers 0 to 30, at
/// most 2000 a profile), left to right. Requests are parsed by `wall::parse_json`,
/// which checks the same rules with better messages; the server's own wall is answered
/// in this form.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WallConfigBody {
    #[schema(schema_with = profiles_schema)]
    pub profiles: Vec<Vec<u8>>,
    #[schema(minimum = 1, nullable)]
    pub num_teams: Option<i64>,
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
#[derive(Deserialize, ToSchema)]
#[schema(value_type = String, pattern = r"^\uFEFF?[ \t\f\r\n]*(-0+|0*(30|[12]?[0-9]))([ \t\f\r]+(-0+|0*(30|[12]?[0-9]))){0,1999}([ \t\f\r]*\n[ \t\f\r\n]*(-0+|0*(30|[12]?[0-9]))([ \t\f\r]+(-0+|0*(30|[12]?[0-9]))){0,1999})*[ \t\f\r\n]*$")]
pub struct WallConfigText(pub String);

#[derive(Serialize, ToSchema)]
pub struct JobAccepted {
    #[schema(format = Uuid)]
    pub job_id: String,
}

/// Status of a job; `data` when done, `reason` when failed.
#[derive(Serialize, ToSchema)]
pub struct JobResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[schema(value_type = String, pattern = "^(queued|running|done|failed)$")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Summary>,
}

/// A done job's summary with at most `--max-summary-profiles` rows; when rows were left
/// out it says how many there are, and only then, so that other answers keep their shape.
#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub days: u64,
    #[schema(nullable)]
    pub num_teams: Option<u64>,
    pub ice: u64,
    pub cost: u64,
    /// At most `--max-summary-profiles` rows (1000 by default), the first ones; the
    /// rest are read with `/api/jobs/{id}/profiles`.
    pub profiles: Vec<ProfileSummary>,
    /// Only when rows were left out: how many profiles the wall has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles_total: Option<usize>,
    /// Only when rows were left out: `true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(value_type = Option<bool>)]
    pub profiles_truncated: bool,
}

impl Summary {
    /// The summary of a wall of `total` profiles, `summary` holding its first rows.
    pub fn bounded(summary: wall::Summary, total: usize) -> Summary {
        let truncated = total > summary.profiles.len();
        Summary {
            days: summary.days,
            num_teams: summary.num_teams,
            ice: summary.ice,
            cost: summary.cost,
            profiles: summary.profiles,
            profiles_total: truncated.then_some(total),
            profiles_truncated: truncated,
        }
    }
}

/// A page of a done job's per-profile summary rows, in profile order.
#[derive(Serialize, ToSchema)]
pub struct ProfilePage {
    pub profiles: Vec<ProfileSummary>,
    /// The `after` of the next page; `null` on the last one.
    #[schema(nullable, minimum = 1)]
    pub next_after: Option<usize>,
}

/// A page of a finished job's wall config: the heights of its profiles, in order.
#[derive(Serialize, ToSchema)]
pub struct ConfigPage {
    /// Each profile's section heights in feet, left to right.
    #[schema(schema_with = config_profiles_schema)]
    pub profiles: Vec<Vec<u8>>,
    /// `null`: unlimited crews.
    #[schema(minimum = 1)]
    pub num_teams: Option<u64>,
    /// How many profiles the wall has.
    pub profiles_total: usize,
    /// The `after` of the next page; `null` on the last one.
    #[schema(nullable, minimum = 1)]
    pub next_after: Option<usize>,
}

/// A page of profiles: as many as asked, possibly none past the last one.
fn config_profiles_schema() -> Array {
    let mut profiles = profiles_schema();
    profiles.min_items = None;
    profiles
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub data: Vec<JobListEntry>,
    #[schema(value_type = String, pattern = "^done$")]
    pub status: &'static str,
}

/// A row of the job list.
#[derive(Serialize, ToSchema)]
pub struct JobListEntry {
    #[schema(format = Uuid)]
    pub job_id: String,
    #[schema(value_type = String, pattern = "^(queued|running|done|failed)$")]
    pub status: &'static str,
    /// RFC 3339 in UTC, from the job id (in cluster mode, when the database took it).
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// RFC 3339 in UTC; `null` until the job is done or failed.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NumJobs {
    pub num_jobs: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ShuttingDown {
    pub pending: usize,
    #[schema(value_type = String, pattern = "^shutting_down$")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    #[schema(format = Uuid)]
    pub job_id: String,
    #[schema(value_type = String, pattern = "^(deleted|cancelled)$")]
    pub status: &'static str,
}

/// `ice(p, d)`: cubic yards of ice used on day `day`.
#[derive(Serialize, ToSchema)]
pub struct IceAnswer {
    pub day: u64,
    pub ice_amount: u64,
}

/// Gold Dragons spent on days 1..=`day` (`null`: the whole wall).
#[derive(Serialize, ToSchema)]
pub struct CostAnswer {
    #[schema(nullable)]
    pub day: Option<u64>,
    pub cost: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(value_type = String, pattern = "^(ok|ready)$")]
    pub status: &'static str,
}

/// A node of the cluster, as its own heartbeat last left it in the database.
#[derive(Serialize, ToSchema)]
pub struct Node {
    #[schema(format = Uuid)]
    pub node_id: String,
    /// Where the node listens, as it bound it.
    pub address: String,
    pub workers: u32,
    /// Jobs running under its lease: claimed and not yet finished (a dead node's fall
    /// to 0 as the others take them back).
    pub running: u32,
    /// When it joined, RFC 3339 in UTC.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// Milliseconds since its last heartbeat, by the database's clock. A live node beats
    /// every third of `--lease`.
    pub heartbeat_age_ms: u64,
    /// No heartbeat for a whole `--lease`: the node is gone or cut off, and its jobs run
    /// again elsewhere. It is listed until an hour after its last heartbeat.
    pub stale: bool,
}

impl Node {
    pub fn of(node: ClusterNode) -> Node {
        Node {
            node_id: node.id.to_string(),
            address: node.address,
            workers: node.workers,
            running: node.running,
            started_at: rfc3339(node.started_ms),
            heartbeat_age_ms: u64::try_from(node.heartbeat_age.as_millis()).unwrap_or(u64::MAX),
            stale: node.is_stale,
        }
    }
}
