//! Who may run admin actions (graceful shutdown, deleting or cancelling jobs): the
//! holder of the admin token, or, when no token is set, anyone on a loopback-only
//! server; never a web page of another site, which a browser would let trigger them (an
//! `<img>` pointing at the shutdown URL).

use actix_web::HttpRequest;
use actix_web::http::header;
use subtle::ConstantTimeEq;

use super::ApiError;
use super::gate::single_header;

#[derive(Clone, Debug)]
pub enum AdminPolicy {
    /// No token and a loopback address: only local users can reach the server.
    Local,
    /// `Authorization: Bearer <token>` is required.
    Token(String),
    /// No token on a reachable address: admin actions are refused (signals still work).
    Refused,
}

impl AdminPolicy {
    pub fn new(token: Option<String>, loopback_only: bool) -> AdminPolicy {
        match token {
            Some(token) => AdminPolicy::Token(token),
            None if loopback_only => AdminPolicy::Local,
            None => AdminPolicy::Refused,
        }
    }

    /// # Errors
    /// `Unauthorized` without credentials, `Forbidden` with wrong ones, when refused, or
    /// when the browser says another site's page sent the request.
    pub fn authorize(&self, request: &HttpRequest) -> Result<(), ApiError> {
        refuse_other_sites(request)?;
        match self {
            AdminPolicy::Local => Ok(()),
            AdminPolicy::Refused => Err(ApiError::Forbidden(
                "admin actions are disabled: the server listens beyond loopback without an admin token"
                    .to_owned(),
            )),
            AdminPolicy::Token(token) => {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .ok_or_else(|| ApiError::Unauthorized("this admin action needs `Authorization: Bearer <token>`".to_owned()))?;
                // Compared in constant time, so the answer's timing leaks nothing of it.
                if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden("the admin token is wrong".to_owned()))
                }
            }
        }
    }
}

/// Refuses a request that a browser marks as sent by another site: `Sec-Fetch-Site`
/// `cross-site` or `same-site` (another port of the same host is the same site), or an
/// `Origin` whose host and port are not the request's `Host`. Requests without these
/// headers (curl, scripts, the icewall client) pass.
fn refuse_other_sites(request: &HttpRequest) -> Result<(), ApiError> {
    let headers = request.headers();
    // A browser sends each once; a second could pass where only the first was checked.
    let fetch_site = single_header(headers, "Sec-Fetch-Site")?.map(|value| value.as_bytes());
    if matches!(fetch_site, Some(b"cross-site" | b"same-site")) {
        return Err(ApiError::Forbidden(
            "admin actions cannot be sent by another site's web page (Sec-Fetch-Site)".to_owned(),
        ));
    }
    let Some(origin) = single_header(headers, "Origin")? else {
        return Ok(());
    };
    let origin_authority = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority);
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    match (origin_authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "admin actions cannot be sent by another site's web page (its Origin is not this server)"
                .to_owned(),
        )),
    }
}
