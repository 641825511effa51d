//! The OpenAPI 3 description of the API, served at `/api/openapi.json`: the paths come
//! from the `#[utoipa::path]` annotations on the handlers, the bodies from the types in
//! `bodies`, which the handlers send (schemathesis checks the answers against it).

use std::collections::HashSet;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::web;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::ApiState;
use super::bodies::{
    ConfigPage, CostAnswer, Deleted, ErrorBody, Health, IceAnswer, JobAccepted, JobList,
    JobListEntry, JobResult, Node, NumJobs, ProfilePage, ShuttingDown, Summary, WallConfigBody,
    WallConfigText,
};
use super::{chart, job_results, jobs, operations, own_wall, submit};

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

/// Every route refuses unknown query parameters with 400: an operation whose annotation
/// names no 400 of its own gets that one.
struct UnknownParameters;

impl Modify for UnknownParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let refusal = ResponseBuilder::new()
            .description("An unknown query parameter, named in the reason")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.head,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry("400".to_owned())
                    .or_insert_with(|| refusal.clone().into());
            }
        }
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
        jobs::cancel,
        job_results::ice,
        job_results::profile_cost,
        job_results::wall_cost,
        job_results::total_cost,
        job_results::log,
        job_results::profiles,
        job_results::config,
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
    components(schemas(ErrorBody, ConfigPage, WallConfigBody, WallConfigText, JobAccepted, JobResult, Summary, crate::wall::ProfileSummary, ProfilePage, JobList,
        JobListEntry, jobs::JobDetails, NumJobs, ShuttingDown, Deleted, IceAnswer, CostAnswer, Health, chart::Chart,
        chart::IceSeries, chart::TeamChart, crate::wall::GanttRow, operations::Stats, operations::JobCounts, operations::Workers,
        operations::Throughput, Node, crate::metrics::Interval, crate::metrics::Spread)),
    modifiers(&AdminToken, &DistinctOperationIds, &UnknownParameters),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The page (`/` and its assets) is for people, not part of the API.
    const NOT_IN_THE_API: [&str; 2] = ["/", "/assets/{name}"];

    #[test]
    fn the_document_describes_exactly_the_endpoints_the_server_answers() {
        let document: serde_json::Value = serde_json::from_str(&document(60.0, 4000)).unwrap();
        let described: BTreeMap<String, Vec<String>> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, item)| {
                let methods = item.as_object().unwrap().keys().cloned().collect();
                (path.clone(), methods)
            })
            .collect();
        let answered: BTreeMap<String, Vec<String>> = super::super::endpoints()
            .iter()
            .filter(|endpoint| !NOT_IN_THE_API.contains(&endpoint.pattern()))
            .map(|endpoint| {
                let mut methods: Vec<String> = endpoint
                    .allow()
                    .split(", ")
                    .filter(|method| *method != "HEAD")
                    .map(str::to_lowercase)
                    .collect();
                methods.sort();
                (endpoint.pattern().to_owned(), methods)
            })
            .collect();
        assert_eq!(described, answered);
    }

    #[test]
    fn the_overviews_numbers_name_the_widest_chart() {
        let document: serde_json::Value = serde_json::from_str(&document(60.0, 4000)).unwrap();
        let stats = &document["components"]["schemas"]["Stats"];
        assert!(
            stats["properties"]["max_chart_width"].is_object(),
            "{stats}"
        );
        assert!(
            stats["required"]
                .as_array()
                .unwrap()
                .contains(&"max_chart_width".into()),
            "{stats}"
        );
    }

    #[test]
    fn every_operation_documents_the_400_of_an_unknown_parameter() {
        let document: serde_json::Value = serde_json::from_str(&document(60.0, 4000)).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert!(
                    operation["responses"]["400"].is_object(),
                    "{method} {path} has no 400"
                );
            }
        }
    }
}
