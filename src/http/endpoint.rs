//! Each endpoint's resource and its own middleware: other methods get a JSON 405, query
//! parameters it does not take a 400, and the request is tagged with the endpoint's
//! pattern, which the request log and the metrics label it by without matching the path
//! a second time.

use std::future::{Ready, ready};

use actix_web::body::BoxBody;
use actix_web::dev::{
    HttpServiceFactory, Service, ServiceRequest, ServiceResponse, Transform, forward_ready,
};
use actix_web::http::Method;
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, Resource, Route, guard, web};
use futures_util::future::Either;

use super::{ApiError, RequestTag};

/// A resource at `pattern` (inside the scope `scope`, a prefix of it) answering
/// `routes`; other methods get a JSON 405 naming the `allow`ed ones, and query
/// parameters other than `params` a 400 naming them (so a misspelt `?num_team=3` is
/// never silently ignored).
pub fn endpoint(
    scope: &str,
    pattern: &'static str,
    allow: &'static str,
    params: &'static [&'static str],
    routes: Vec<Route>,
) -> impl HttpServiceFactory + use<> {
    let path = pattern
        .strip_prefix(scope)
        .expect("an endpoint's pattern starts with its scope");
    let not_allowed = move |request: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            method: request.method().to_string(),
            allow,
        })
    };
    routes
        .into_iter()
        .fold(web::resource(path), Resource::route)
        .default_service(web::to(not_allowed))
        .wrap(EndpointChecks { pattern, params })
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

/// The endpoint's middleware (a `Transform` of its own rather than
/// `middleware::from_fn`, which would box every request's future).
struct EndpointChecks {
    pattern: &'static str,
    params: &'static [&'static str],
}

impl<S> Transform<S, ServiceRequest> for EndpointChecks
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error>,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = EndpointService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(EndpointService {
            service,
            pattern: self.pattern,
            params: self.params,
        }))
    }
}

pub struct EndpointService<S> {
    service: S,
    pattern: &'static str,
    params: &'static [&'static str],
}

impl<S> Service<ServiceRequest> for EndpointService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error>,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = Either<Ready<Result<Self::Response, Error>>, S::Future>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        if let Some(tag) = request.extensions().get::<RequestTag>() {
            tag.answered_by(self.pattern);
        }
        match unknown_params(self.params, request.query_string()) {
            Some(error) => Either::Left(ready(Ok(request.error_response(error)))),
            None => Either::Right(self.service.call(request)),
        }
    }
}

/// The 400 for query parameters other than `params`, naming them.
fn unknown_params(params: &[&str], query: &str) -> Option<ApiError> {
    if query.is_empty() {
        return None;
    }
    let unknown: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| !params.contains(&name.as_ref()))
        .map(|(name, _)| format!("`{}`", crate::wall::truncate_for_message(&name)))
        .collect();
    if unknown.is_empty() {
        return None;
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
