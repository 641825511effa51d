//! Paths are routed without a trailing slash or repeated slashes (`/profiles/1/days/1/`
//! is `/profiles/1/days/1`), as `NormalizePath::trim` does, but with nothing done for a
//! path that has none: that middleware copies and regex-scans every path.

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::http::uri::PathAndQuery;
use actix_web::web::Bytes;

/// For `App::wrap_fn`: rewrites the request's path when it needs it, then routes it.
pub fn normalize_path<S, B>(mut request: ServiceRequest, service: &S) -> S::Future
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    if let Some(path) = normalized(request.path()) {
        let uri = &request.head().uri;
        let path_and_query = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = uri.clone().into_parts();
        // Slashes removed from a valid path leave a valid one, so these do not fail; if
        // one did, the path would be routed as it came (a 404), never a panic.
        if let Ok(path_and_query) = PathAndQuery::from_maybe_shared(Bytes::from(path_and_query)) {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(parts) {
                request.match_info_mut().get_mut().update(&uri);
                request.head_mut().uri = uri;
            }
        }
    }
    service.call(request)
}

/// `path` without its trailing slash and with each run of slashes made one, or `None`
/// when it is that already.
fn normalized(path: &str) -> Option<String> {
    if path.len() < 2 || !(path.ends_with('/') || path.contains("//")) {
        return None;
    }
    // The usual case, the original API's trailing slash, without taking the path apart.
    let trimmed = path.trim_end_matches('/');
    if !trimmed.contains("//") {
        return Some(match trimmed {
            "" => "/".to_owned(),
            trimmed => trimmed.to_owned(),
        });
    }
    let mut normal = String::with_capacity(path.len());
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Some(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_path_with_extra_slashes_is_rewritten() {
        for path in ["/", "/profiles/overview", "/api/jobs/a%2F/b", "*"] {
            assert_eq!(normalized(path), None, "{path}");
        }
        for (path, normal) in [
            ("/profiles/overview/", "/profiles/overview"),
            ("//", "/"),
            ("///", "/"),
            ("//profiles//1///days/1//", "/profiles/1/days/1"),
            ("/api/jobs/", "/api/jobs"),
            ("/api/jobs///", "/api/jobs"),
            ("//api/jobs/", "/api/jobs"),
            ("/a//b", "/a/b"),
        ] {
            assert_eq!(normalized(path).as_deref(), Some(normal), "{path}");
        }
    }
}
