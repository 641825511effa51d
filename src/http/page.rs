//! The page for people at `/`: hand-written HTML, CSS and JavaScript from `web/`,
//! embedded in the binary at compile time and served with an ETag (a 304 when it
//! matches), gzip when the client takes it, and a Content-Security-Policy that allows
//! nothing but this server's own files (no inline script or style).

use std::io::Write;
use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::ApiError;
use super::endpoint::PathParams;

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// One embedded file, with its ETag and gzipped bytes made on first use.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    prepared: OnceLock<Prepared>,
}

struct Prepared {
    etag: HeaderValue,
    /// The gzipped bytes are another representation, with a tag of their own (RFC 9110
    /// 8.8.3: a strong tag names one representation).
    etag_gzipped: HeaderValue,
    gzipped: Vec<u8>,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $name)),
            prepared: OnceLock::new(),
        }
    };
}

static ASSETS: [Asset; 4] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

impl Asset {
    fn prepared(&self) -> &Prepared {
        self.prepared.get_or_init(|| {
            let digest = Sha256::digest(self.body);
            let hex: String = digest[..12]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
            gzip.write_all(self.body)
                .expect("compressing to memory cannot fail");
            Prepared {
                etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header"),
                etag_gzipped: HeaderValue::from_str(&format!("\"{hex}-gzip\""))
                    .expect("hex is a valid header"),
                gzipped: gzip.finish().expect("compressing to memory cannot fail"),
            }
        })
    }

    fn serve(&self, request: &HttpRequest) -> HttpResponse {
        let prepared = self.prepared();
        let gzipped = takes_gzip(request);
        let etag = if gzipped {
            &prepared.etag_gzipped
        } else {
            &prepared.etag
        };
        let status = if matches_etag(request, etag) {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        };
        let mut response = HttpResponse::build(status);
        response
            .insert_header((header::ETAG, etag.clone()))
            // Always revalidated (a 304 is a few bytes): a new binary's page shows at once.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::VARY, "Accept-Encoding"))
            .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"));
        if status == StatusCode::NOT_MODIFIED {
            return response.finish();
        }
        response.content_type(self.content_type);
        if gzipped {
            response
                .insert_header((header::CONTENT_ENCODING, "gzip"))
                .body(prepared.gzipped.clone())
        } else {
            response.body(self.body)
        }
    }
}

/// `If-None-Match` names this ETag (weakly or not), or is `*`.
fn matches_etag(request: &HttpRequest, etag: &HeaderValue) -> bool {
    let Some(etag) = etag.to_str().ok() else {
        return false;
    };
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// `Accept-Encoding` takes gzip: it lists gzip with a quality above zero, or does not
/// name gzip and lists `*` so (RFC 9110 12.5.3: `gzip;q=0, *` refuses gzip).
fn takes_gzip(request: &HttpRequest) -> bool {
    let (mut gzip, mut any) = (None, None);
    for coding in request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|parameter| {
            parameter
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") {
            gzip = Some(!refused);
        } else if name == "*" {
            any = Some(!refused);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// The page itself.
pub async fn index(request: HttpRequest) -> HttpResponse {
    ASSETS[0].serve(&request)
}

/// The page's script, style sheet and icon.
pub async fn asset(request: HttpRequest, path: PathParams) -> Result<HttpResponse, ApiError> {
    ASSETS[1..]
        .iter()
        .find(|asset| asset.name == path.get("name"))
        .map(|asset| asset.serve(&request))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no such asset: {}",
                crate::wall::truncate_for_message(path.get("name"))
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_page_weighs_under_150_kb_gzipped() {
        let total: usize = ASSETS
            .iter()
            .map(|asset| asset.prepared().gzipped.len())
            .sum();
        assert!(total < 150 * 1024, "{total} bytes gzipped");
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<script>") && !html.contains("<style"));
        assert!(!html.contains(" style="));
        // No event handler attributes (`onclick=` and the like).
        let handler = html.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler);
        assert!(html.contains("<script src=\"/assets/app.js\""));
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let with = |value: &str| {
            TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, value))
                .to_http_request()
        };
        assert!(takes_gzip(&with("gzip, deflate, br")));
        assert!(takes_gzip(&with("br;q=1, *;q=0.5")));
        assert!(!takes_gzip(&with("gzip;q=0, br")));
        assert!(!takes_gzip(&with("gzip;q=0, *")));
        assert!(!takes_gzip(&with("*, gzip;q=0")));
        assert!(takes_gzip(&with("br;q=0, *")));
        assert!(!takes_gzip(&with("identity")));
        assert!(!takes_gzip(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn a_matching_etag_answers_not_modified() {
        let etag = ASSETS[1].prepared().etag.to_str().unwrap().to_owned();
        let request = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, format!("\"x\", W/{etag}")))
            .to_http_request();
        assert_eq!(ASSETS[1].serve(&request).status(), StatusCode::NOT_MODIFIED);
        let other = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, "\"x\""))
            .to_http_request();
        assert_eq!(ASSETS[1].serve(&other).status(), StatusCode::OK);
    }

    #[test]
    fn the_gzipped_bytes_have_a_tag_of_their_own() {
        let plain = ASSETS[1].serve(&TestRequest::default().to_http_request());
        let gzip = TestRequest::default()
            .insert_header((header::ACCEPT_ENCODING, "gzip"))
            .to_http_request();
        let gzipped = ASSETS[1].serve(&gzip);
        let tag = |response: &HttpResponse| response.headers().get(header::ETAG).unwrap().clone();
        assert_ne!(tag(&plain), tag(&gzipped));
        // Each tag revalidates its own representation only.
        let asking = |accept: &str, tag: &HeaderValue| {
            TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, accept))
                .insert_header((header::IF_NONE_MATCH, tag.clone()))
                .to_http_request()
        };
        let status = |request| ASSETS[1].serve(&request).status();
        assert_eq!(
            status(asking("gzip", &tag(&gzipped))),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            status(asking("identity", &tag(&plain))),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(status(asking("identity", &tag(&gzipped))), StatusCode::OK);
        assert_eq!(status(asking("gzip", &tag(&plain))), StatusCode::OK);
    }
}
