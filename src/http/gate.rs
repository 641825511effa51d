//! The checks every request passes before it is routed: its framing must be
//! unambiguous (request smuggling) and its `Host` one of the server's own (DNS
//! rebinding). Refusals get the JSON error body like any other.

use std::net::{IpAddr, Ipv6Addr};
use std::rc::Rc;

use actix_web::dev::{RequestHead, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{ConnectionType, Uri, Version};
use actix_web::{ResponseError, web};

use super::connection::{Connection, Refused};
use super::{ApiError, ApiState};

/// The names a request's `Host` may carry. IP addresses always pass: DNS rebinding
/// needs a name the attacker controls, and a page whose origin is this server's own
/// address is this server's.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    any: bool,
    names: Vec<String>,
    localhost: bool,
}

impl HostPolicy {
    /// `allowed`: lowercase names from `--allowed-hosts`, where `*` allows any;
    /// `localhost` is allowed too when the server listens on loopback or every address.
    pub fn new(allowed: &[String], bound: IpAddr) -> HostPolicy {
        HostPolicy {
            any: allowed.iter().any(|name| name == "*"),
            names: allowed.to_vec(),
            localhost: bound.is_loopback() || bound.is_unspecified(),
        }
    }

    /// The request's host, from its target when that is in absolute form
    /// (`GET http://name/path`), where RFC 9112 3.2.2 has the server ignore `Host`, or
    /// else from `Host`.
    ///
    /// # Errors
    /// `BadRequest` for a missing (in HTTP/1.1), repeated or malformed `Host` (RFC 9112
    /// 3.2 asks for 400), `MisdirectedRequest` for a well-formed name that is not ours.
    fn check(&self, headers: &HeaderMap, version: Version, uri: &Uri) -> Result<(), ApiError> {
        let host = single_header(headers, "Host")?;
        // HTTP/1.0 may omit it; browsers, the rebinding vector, never do.
        if host.is_none() && version != Version::HTTP_10 {
            return Err(ApiError::BadRequest(
                "the request has no Host header".to_owned(),
            ));
        }
        if let Some(authority) = uri.authority() {
            return self.judge(authority.as_str(), "the request target's host");
        }
        let Some(host) = host else {
            return Ok(());
        };
        match host.to_str() {
            Ok(host) => self.judge(host, "the Host header"),
            Err(_) => Err(malformed(
                &String::from_utf8_lossy(host.as_bytes()),
                "the Host header",
            )),
        }
    }

    /// Whether `value` (`name`, `name:port`, `[v6]:port`), which `what` names in an
    /// error, is one of the server's own.
    fn judge(&self, value: &str, what: &str) -> Result<(), ApiError> {
        let name = host_name(value).ok_or_else(|| malformed(value, what))?;
        let name = name.strip_suffix('.').unwrap_or(name);
        let allowed = self.any
            || name.parse::<IpAddr>().is_ok()
            || (self.localhost && name.eq_ignore_ascii_case("localhost"))
            || self
                .names
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name));
        if allowed {
            Ok(())
        } else {
            Err(ApiError::MisdirectedRequest(format!(
                "this server does not answer for the host `{}`; its operator can allow it with --allowed-hosts",
                crate::wall::truncate_for_message(name)
            )))
        }
    }
}

fn malformed(value: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{what} `{}` is not a host name or address with an optional port",
        crate::wall::truncate_for_message(value)
    ))
}

/// The host of a `Host` value (`name`, `name:port`, `[v6]:port`), or `None` if malformed.
fn host_name(value: &str) -> Option<&str> {
    if let Some(rest) = value.strip_prefix('[') {
        let (address, port) = rest.split_once(']')?;
        address.parse::<Ipv6Addr>().ok()?;
        let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(is_port);
        return port_ok.then_some(address);
    }
    let (name, port_ok) = match value.split_once(':') {
        Some((name, port)) => (name, is_port(port)),
        None => (value, true),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (port_ok && name_ok).then_some(name)
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// The one value of the header `name`, if any: a request that repeats a header that
/// holds one value is refused (400), as which of its values was meant is the sender's
/// to say.
///
/// # Errors
/// `BadRequest` naming the header.
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a header::HeaderValue>, ApiError> {
    let mut values = headers.get_all(name);
    let value = values.next();
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!(
            "the request has more than one {name} header"
        )));
    }
    Ok(value)
}

/// What no endpoint may see (see the module docs), answered before the request is
/// routed: `Ok` gives the request back to be routed, `Err` is its refusal.
pub fn refused(request: ServiceRequest) -> Result<ServiceRequest, ServiceResponse> {
    // Looked up only for a Host not let through on the connection before.
    let hosts = || {
        &request
            .app_data::<web::Data<ApiState>>()
            .expect("the API state is registered with the app")
            .hosts
    };
    match refusal(request.head(), request.conn_data::<Rc<Connection>>(), hosts) {
        None => Ok(request),
        Some(Refusal { error, close: true }) => Err(refuse_and_close(request, error)),
        Some(Refusal {
            error,
            close: false,
        }) => Err(request.error_response(error)),
    }
}

struct Refusal {
    error: ApiError,
    /// No further request is read on the connection.
    close: bool,
}

/// Whether a request passes every check (see `refused`), for a layer beneath
/// actix-web's routing, which hands it on otherwise (see `at_once`).
pub fn lets_through(
    head: &RequestHead,
    connection: Option<&Rc<Connection>>,
    hosts: &HostPolicy,
) -> bool {
    refusal(head, connection, || hosts).is_none()
}

fn refusal<'h>(
    request: &RequestHead,
    connection: Option<&Rc<Connection>>,
    hosts: impl FnOnce() -> &'h HostPolicy,
) -> Option<Refusal> {
    if let Some(why) = connection.and_then(|connection| connection.refused()) {
        let why = match why {
            Refused::AmbiguousFraming => "this connection sent an ambiguously framed request",
            Refused::Closed => {
                "a request before this one closed the connection (Connection: close)"
            }
        };
        return Some(Refusal {
            error: ApiError::BadRequest(format!("{why}; no further request is read on it")),
            close: true,
        });
    }
    let headers = &request.headers;
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        // A proxy framing by Content-Length would pass on, as this request's body, a
        // request hidden after its last chunk: refuse both, and whatever follows.
        if let Some(connection) = connection {
            connection.refuse_further_requests(Refused::AmbiguousFraming);
        }
        return Some(Refusal {
            error: ApiError::BadRequest(
                "a request must not have both Content-Length and Transfer-Encoding".to_owned(),
            ),
            close: true,
        });
    }
    // The Host check comes last: a connection whose Host was let through before skips
    // it, and would skip any check put after it. A target in absolute form names its
    // host itself, and is checked each time.
    let absolute_form = request.uri.authority().is_some();
    if !absolute_form && connection.is_some_and(|connection| connection.has_allowed_host(headers)) {
        return None;
    }
    match hosts().check(headers, request.version, &request.uri) {
        Ok(()) => {
            if let Some(connection) = connection.filter(|_| !absolute_form) {
                connection.allow_host(headers);
            }
            None
        }
        Err(error) => Some(Refusal {
            error,
            close: false,
        }),
    }
}

fn refuse_and_close(request: ServiceRequest, error: ApiError) -> ServiceResponse {
    let mut response = error.error_response();
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    request.into_response(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_are_split_from_their_port() {
        assert_eq!(host_name("localhost:8080"), Some("localhost"));
        assert_eq!(host_name("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:80"), Some("::1"));
        assert_eq!(host_name("Example.COM."), Some("Example.COM."));
        for malformed in [
            "", ":80", "a:", "a:x", "a:123456", "[::1", "[x]:1", "a b", "a/b", "a:1:2",
        ] {
            assert_eq!(host_name(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn only_own_names_and_addresses_pass() {
        let policy = HostPolicy::new(
            &["icewall.example".to_owned()],
            "127.0.0.1".parse().unwrap(),
        );
        let check = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            policy.check(&headers, Version::HTTP_11, &Uri::from_static("/"))
        };
        for good in [
            "127.0.0.1:1",
            "10.1.2.3",
            "[::1]:8080",
            "localhost",
            "LOCALHOST.:9",
            "icewall.example:443",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "icewall.example.evil",
        ] {
            assert!(
                matches!(check(bad), Err(ApiError::MisdirectedRequest(_))),
                "{bad}"
            );
        }
        assert!(matches!(check("a b"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            policy.check(&HeaderMap::new(), Version::HTTP_11, &Uri::from_static("/")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(
            policy
                .check(&HeaderMap::new(), Version::HTTP_10, &Uri::from_static("/"))
                .is_ok()
        );
        let remote = HostPolicy::new(&[], "10.0.0.5".parse().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "localhost".parse().unwrap());
        assert!(
            remote
                .check(&headers, Version::HTTP_11, &Uri::from_static("/"))
                .is_err()
        );
        assert!(
            HostPolicy::new(&["*".to_owned()], "10.0.0.5".parse().unwrap())
                .check(&headers, Version::HTTP_11, &Uri::from_static("/"))
                .is_ok()
        );
    }
}
