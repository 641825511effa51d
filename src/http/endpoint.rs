//! The endpoints and the table that routes a request to one: each path is matched
//! against the endpoints' patterns segment by segment, in order; other methods get a
//! JSON 405, query parameters an endpoint does not take a 400, and the request is
//! tagged with the endpoint's pattern for its log line and metrics.
//!
//! actix-web's own router matches a pattern with parameters by a regex capture, which
//! was an eighth of the instructions of a read by job id; a comparison of segments
//! does the same work for these patterns, where a parameter is always a whole segment.
//!
//! The hottest reads may also be answered at once (`Endpoint::at_once`): a plain
//! function, called beneath actix-web (see `at_once`), for an answer already in memory
//! (a precomputed body, a kept answer of a done job). Where it is not at hand (a job not
//! done, a `?wait=`, a file to read, a cluster node's database to ask, any error) the
//! function says so and the endpoint's route answers, through the same code that made
//! the kept answer.

use std::future::{Ready, ready};
use std::rc::Rc;

use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{Error, FromRequest, HttpRequest, HttpResponse, Route, guard, web};
use futures_util::future::{Either, LocalBoxFuture, join_all};

use super::at_once::ReadAtOnce;
use super::unread_body::{BodyDrain, Unread};
use super::{ApiError, ApiState, RequestTag, gate};

mod pattern;

pub use pattern::{ParamSpans, Pattern, path_segments};

/// One endpoint: the pattern of its path (`{name}` for a parameter, a whole segment),
/// the routes that answer it, the methods its 405 names, and the query parameters it
/// takes (others are a 400, so a misspelt `?num_team=3` is never silently ignored).
pub struct Endpoint {
    pattern: Pattern,
    allow: &'static str,
    params: &'static [&'static str],
    routes: Vec<Route>,
    at_once: Option<AtOnce>,
}

/// An answer to a GET or HEAD without a query string, given without a future (see the
/// module docs): from the state and the path's parameters; `None` when the endpoint's
/// route is to answer.
pub type AtOnce = fn(&ApiState, &Params<'_>) -> Option<HttpResponse>;

pub fn endpoint(
    pattern: &'static str,
    allow: &'static str,
    params: &'static [&'static str],
    routes: Vec<Route>,
) -> Endpoint {
    // One bit each in `refused_params`.
    assert!(params.len() <= 32, "at most 32 query parameters: {pattern}");
    Endpoint {
        pattern: Pattern::parse(pattern),
        allow,
        params,
        routes,
        at_once: None,
    }
}

impl Endpoint {
    /// Tries `answer` first for a GET or HEAD, before the routes (see `at_once`).
    pub fn at_once(self, answer: AtOnce) -> Endpoint {
        Endpoint {
            at_once: Some(answer),
            ..self
        }
    }

    /// The endpoint's pattern and its answer at once, if it has one.
    pub fn into_read_at_once(self) -> Option<ReadAtOnce> {
        Some(ReadAtOnce {
            answer: self.at_once?,
            pattern: self.pattern,
        })
    }
}

/// For the test that holds the OpenAPI document to the table.
#[cfg(test)]
impl Endpoint {
    pub fn pattern(&self) -> &'static str {
        self.pattern.text
    }

    /// The methods it answers, as its 405 names them.
    pub fn allow(&self) -> &'static str {
        self.allow
    }
}

/// A route for reading: GET, and HEAD with the same headers (the server drops the body).
pub fn read() -> Route {
    web::route().guard(guard::fn_guard(|context| {
        matches!(context.head().method, Method::GET | Method::HEAD)
    }))
}

/// A route for `method` alone. actix-web's own method guards note each method they are
/// tried with in the request, an allocation per request; the 405 here is the
/// endpoint's own.
pub fn only(method: Method) -> Route {
    web::route().guard(guard::fn_guard(move |context| {
        context.head().method == method
    }))
}

/// The table of endpoints, the application's default service: every request reaches
/// it, as no route is registered with actix-web's router.
pub struct Endpoints {
    endpoints: Rc<[Endpoint]>,
    drain: BodyDrain,
}

impl Endpoints {
    pub fn new(endpoints: Vec<Endpoint>, drain: BodyDrain) -> Endpoints {
        Endpoints {
            endpoints: endpoints.into(),
            drain,
        }
    }
}

impl ServiceFactory<ServiceRequest> for Endpoints {
    type Response = ServiceResponse;
    type Error = Error;
    type Config = ();
    type Service = EndpointsService;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<EndpointsService, ()>>;

    fn new_service(&self, (): ()) -> Self::Future {
        let (endpoints, drain) = (Rc::clone(&self.endpoints), self.drain);
        let routes = endpoints
            .iter()
            .map(|endpoint| join_all(endpoint.routes.iter().map(|route| route.new_service(()))))
            .collect::<Vec<_>>();
        Box::pin(async move {
            let mut services = Vec::with_capacity(routes.len());
            for endpoint_routes in join_all(routes).await {
                services.push(
                    endpoint_routes
                        .into_iter()
                        .collect::<Result<Vec<_>, ()>>()?,
                );
            }
            Ok(EndpointsService {
                endpoints,
                services,
                drain,
            })
        })
    }
}

pub struct EndpointsService {
    endpoints: Rc<[Endpoint]>,
    /// Each endpoint's routes, ready to answer.
    services: Vec<Vec<<Route as ServiceFactory<ServiceRequest>>::Service>>,
    drain: BodyDrain,
}

type Answer = Result<ServiceResponse, Error>;

impl Service<ServiceRequest> for EndpointsService {
    type Response = ServiceResponse;
    type Error = Error;
    type Future = Either<Ready<Answer>, LocalBoxFuture<'static, Answer>>;

    actix_web::dev::always_ready!();

    fn call(&self, mut request: ServiceRequest) -> Self::Future {
        let Some(unread) = Unread::watch(&mut request) else {
            return self.route(request);
        };
        let drain = self.drain;
        let answer = self.route(request);
        Either::Right(Box::pin(async move {
            Ok(unread.finish(answer.await?, drain).await)
        }))
    }
}

impl EndpointsService {
    /// Answers `request` by the endpoint its path and method match.
    fn route(&self, request: ServiceRequest) -> <Self as Service<ServiceRequest>>::Future {
        // The gate's checks come before routing: a refused request learns nothing of
        // which endpoints exist. Here rather than in a middleware of their own, which
        // would be one more layer of futures and bodies on every request.
        let mut request = match gate::refused(request) {
            Ok(request) => request,
            Err(refusal) => return Either::Left(ready(Ok(refusal))),
        };
        let path = request.match_info().as_str();
        let matched = path_segments(path).and_then(|segments| {
            self.endpoints
                .iter()
                .enumerate()
                .find_map(|(index, endpoint)| Some((index, endpoint.pattern.matches(&segments)?)))
        });
        let Some((index, params)) = matched else {
            let error = not_found(&request);
            return Either::Left(ready(Ok(request.error_response(error))));
        };
        let endpoint = &self.endpoints[index];
        if let Some(tag) = RequestTag::of(request.request()) {
            tag.answered_by(endpoint.pattern.text, params);
        }
        if let Some(error) = refused_params(endpoint.params, request.query_string()) {
            return Either::Left(ready(Ok(request.error_response(error))));
        }
        match self.services[index]
            .iter()
            .find(|route| route.check(&mut request))
        {
            Some(route) => Either::Right(route.call(request)),
            None => {
                let error = ApiError::MethodNotAllowed {
                    method: request.method().to_string(),
                    allow: endpoint.allow,
                };
                Either::Left(ready(Ok(request.error_response(error))))
            }
        }
    }
}

/// The parameters of a matched path, by the names in its endpoint's pattern, where the
/// endpoint table found them.
pub struct Params<'a> {
    path: &'a str,
    spans: &'a ParamSpans,
}

impl<'a> Params<'a> {
    /// The parameters at `spans` of `path`.
    pub fn new(path: &'a str, spans: &'a ParamSpans) -> Params<'a> {
        Params { path, spans }
    }

    /// The parameter `name`; empty if the pattern has none of that name.
    pub fn get(&self, name: &str) -> &'a str {
        self.spans
            .iter()
            .find(|(param, _)| *param == name)
            .and_then(|(_, span)| self.path.get(span.clone()))
            .unwrap_or_default()
    }
}

/// The parameters of a request's path for a handler (see `Params`): read where the
/// endpoint table found them in `match_info().as_str()`, where `web::Path` would copy
/// and decode each one again (an eighth of a day query's instructions, for three of
/// them).
pub struct PathParams(HttpRequest, ParamSpans);

impl PathParams {
    /// The parameter `name`; empty if the pattern has none of that name.
    pub fn get(&self, name: &str) -> &str {
        Params {
            path: self.0.match_info().as_str(),
            spans: &self.1,
        }
        .get(name)
    }
}

impl FromRequest for PathParams {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<PathParams, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Every connection has a tag (see `TimedStream`); without one, no parameter is
        // found, and the handler answers as for an empty one.
        let spans = RequestTag::of(request)
            .map(RequestTag::params)
            .unwrap_or_default();
        ready(Ok(PathParams(request.clone(), spans)))
    }
}

fn not_found(request: &ServiceRequest) -> ApiError {
    ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        request.method(),
        crate::wall::truncate_for_message(request.path())
    ))
}

/// The 400 for query parameters other than `params`, naming them, or for one of
/// `params` given more than once.
fn refused_params(params: &[&str], query: &str) -> Option<ApiError> {
    if query.is_empty() {
        return None;
    }
    let mut unknown = Vec::new();
    // One bit for each of `params` given, so that a second is seen (see `endpoint`).
    let mut given = 0_u32;
    let mut repeated = None;
    for (name, _) in form_urlencoded::parse(query.as_bytes()) {
        match params.iter().position(|param| *param == name) {
            None => unknown.push(format!("`{}`", crate::wall::truncate_for_message(&name))),
            Some(index) if given & (1 << index) != 0 => {
                repeated.get_or_insert(params[index]);
            }
            Some(index) => given |= 1 << index,
        }
    }
    if unknown.is_empty() {
        // Which of a repeated parameter's values was meant is the client's to say (a
        // retry that appended `wait` again would otherwise get one of them).
        return repeated.map(|name| {
            ApiError::BadRequest(format!(
                "the query parameter `{name}` is given more than once; give it once"
            ))
        });
    }
    let takes = match params {
        [] => "this endpoint takes none".to_owned(),
        params => format!("this endpoint takes `{}`", params.join("`, `")),
    };
    Some(ApiError::BadRequest(format!(
        "unknown query parameter {}; {takes}",
        unknown.join(", ")
    )))
}
