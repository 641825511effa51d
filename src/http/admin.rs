//! Who may run admin actions (graceful shutdown, deleting jobs): the holder of the
//! admin token, or, when no token is set, anyone on a loopback-only server.

use actix_web::HttpRequest;
use actix_web::http::header;
use subtle::ConstantTimeEq;

use super::ApiError;

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
    /// `Unauthorized` without credentials, `Forbidden` with wrong ones or when refused.
    pub fn authorize(&self, request: &HttpRequest) -> Result<(), ApiError> {
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
