//! The connection to a server: requests sent over HTTP or HTTPS, and what the server or
//! the network answers turned into the `ClientError` the user is shown.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use ureq::rustls::pki_types::CertificateDer;
use ureq::rustls::pki_types::pem::PemObject;
use ureq::{ErrorKind, rustls};

use super::args::{parse_server_url, shown_url};
use super::deadline::{self, Deadline};
use super::{ClientError, ServerArgs};
use crate::cli::PrintableText;

#[derive(Clone)]
pub(super) struct Client {
    base: String,
    /// `base` as messages show it (see `shown_url`).
    shown: String,
    pub(super) agent: ureq::Agent,
    /// How long the server may say nothing (to the lookup of its name, a connect, or
    /// between bytes) before the client gives up: `--debug-silence-timeout`, a minute
    /// unless a test shortens it.
    silence: Duration,
}

/// The largest JSON answer read: an icewall answer is far smaller (a summary holds
/// `--max-summary-profiles` rows, 1000 by default, a page at most 1000), and a wrong or
/// hostile server must not make the client read until memory runs out.
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// How long to wait for the server's answer to the headers of a request whose body it
/// stopped reading (see `Client::post`).
const REFUSAL_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer of `GET /api/get_results/<id>`; `data` is kept as the server's bytes so
/// that `--json` prints the API's summary exactly, keys in the API's order.
#[derive(Deserialize)]
pub(super) struct JobResult {
    pub(super) status: String,
    #[serde(default)]
    pub(super) data: Option<Box<RawValue>>,
    #[serde(default)]
    pub(super) reason: Option<String>,
}

impl Client {
    /// # Errors
    /// `Input` when `--server` is not a URL requests can be sent to, or `--ca-cert`
    /// cannot be read or holds no certificate.
    pub(super) fn new(server: &ServerArgs) -> Result<Client, ClientError> {
        Client::looking_up_by(server, system_lookup)
    }

    /// A client that finds the server's addresses by `lookup` (a test's, or the
    /// system's).
    fn looking_up_by(server: &ServerArgs, lookup: Lookup) -> Result<Client, ClientError> {
        // Silence, not length, is what ends a request: a long download that keeps coming
        // goes on.
        let silence = server.debug_silence_timeout;
        let tls = server.ca_cert.as_deref().map(tls_config).transpose()?;
        let base = parse_server_url(&server.server)
            .map_err(|error| ClientError::Input(format!("invalid --server: {error}")))?;
        let base = base.trim_end_matches('/').to_owned();
        Ok(Client {
            shown: shown_url(&base),
            base,
            agent: agent(silence, tls.as_ref(), lookup),
            silence,
        })
    }

    /// The server's URL as messages show it.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Turns what ureq says into the answer or the error the user is shown.
    pub(super) fn answer(
        &self,
        sent: Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, ClientError> {
        match sent {
            Ok(response) if (300..400).contains(&response.status()) => Err(redirected(&response)),
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => Err(refusal(status, response)),
            Err(error) => Err(self.unreachable(&error)),
        }
    }

    /// A failure of the network or of the server's side of it; one that ran out of time
    /// says so plainly, as ureq's own words for it (`Error encountered in the status
    /// line`) do not tell a stalled server from a garbled answer.
    fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> ClientError {
        let transport = match error.downcast_ref::<ureq::Error>() {
            Some(ureq::Error::Transport(transport)) => Some(transport),
            _ => None,
        };
        // A name lookup that ran out of time is no silence of the server's.
        let lookup_failed = transport.is_some_and(|transport| transport.kind() == ErrorKind::Dns);
        let detail = if is_timeout(error) && !lookup_failed {
            format!(
                "nothing came from it for {}; giving up",
                humantime::format_duration(self.silence)
            )
        } else if let Some(transport) = transport {
            // Its own words begin with the request's URL, which the message has.
            let mut detail = transport.kind().to_string();
            let causes = transport
                .message()
                .map(str::to_owned)
                .into_iter()
                .chain(std::error::Error::source(transport).map(ToString::to_string));
            for cause in causes {
                detail = format!("{detail}: {cause}");
            }
            detail
        } else {
            error.to_string()
        };
        ClientError::Unreachable {
            server: self.shown.clone(),
            detail,
        }
    }

    pub(super) fn send(
        &self,
        request: ureq::Request,
        body: Option<(&str, &[u8])>,
    ) -> Result<ureq::Response, ClientError> {
        match body {
            Some((content_type, bytes)) => self.answer(
                self.post(request, content_type, bytes)
                    .map_err(|error| *error),
            ),
            None => self.answer(request.call()),
        }
    }

    /// Sends a body. A server that refuses a request on its headers (a 413 for a
    /// declared length far over its limit) answers and closes without reading the
    /// body; ureq, still writing, then fails with a broken pipe or a reset and drops
    /// the answer. The same headers with the declared length but no body get that same
    /// answer, which is what the user needs to see; they cannot make a job, as the body
    /// never comes.
    pub(super) fn post(
        &self,
        request: ureq::Request,
        content_type: &str,
        body: &[u8],
    ) -> Result<ureq::Response, Box<ureq::Error>> {
        let request = request.set("Content-Type", content_type);
        match request.clone().send_bytes(body) {
            Err(ureq::Error::Transport(transport)) if stopped_reading(&transport) => {
                match request
                    .set("Content-Length", &body.len().to_string())
                    .timeout(REFUSAL_PROBE_TIMEOUT)
                    .send(io::empty())
                {
                    Err(refused @ ureq::Error::Status(..)) => Err(Box::new(refused)),
                    _ => Err(Box::new(ureq::Error::Transport(transport))),
                }
            }
            other => other.map_err(Box::new),
        }
    }

    pub(super) fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.send(self.agent.get(&format!("{}{path}", self.base)), None)?;
        self.read_json(response)
    }

    /// The answer's body as JSON, read whole up to `MAX_JSON_BYTES`. A body that is cut
    /// off or stalls is the network's failure (exit 3), not an answer to read.
    pub(super) fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        response: ureq::Response,
    ) -> Result<T, ClientError> {
        let body = json_body(response).map_err(|error| self.unreachable(&error))?;
        parse_json(&body)
    }

    /// Copies the answer's body to `out` as it comes, its control characters escaped
    /// but for its lines: a team log may be tens of MB, and a slow link may take
    /// minutes over it.
    pub(super) fn copy_body(&self, path: &str, out: &mut impl Write) -> Result<(), ClientError> {
        let mut body = self
            .send(self.agent.get(&format!("{}{path}", self.base)), None)?
            .into_reader();
        let mut out = PrintableText::new(out);
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match body.read(&mut buffer) {
                Ok(0) => return Ok(out.finish()?),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.unreachable(&error)),
            };
            out.write(&buffer[..read])?;
        }
    }

    /// A job's result, the server holding the answer up to `wait` for the job to
    /// finish (a wait's deadline is the caller's, see `deadline::by`).
    pub(super) fn job_result(&self, id: &str, wait: Duration) -> Result<JobResult, ClientError> {
        let mut request = self.agent.get(&self.url(&format!("/api/get_results/{id}")));
        if !wait.is_zero() {
            // The server says nothing while it holds the request: that silence was
            // asked for, and only what follows it counts. (This timeout replaces the
            // silence timeout between reads.)
            request = request
                .query("wait", &format!("{:.3}", wait.as_secs_f64()))
                .timeout(wait.saturating_add(self.silence));
        }
        self.read_json(self.send(request, None)?)
    }
}

/// The answer's body, up to one byte over `MAX_JSON_BYTES`, so that a larger one is
/// known to be and is not read on.
fn json_body(response: ureq::Response) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut body)?;
    Ok(body)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    if body.len() as u64 > MAX_JSON_BYTES {
        return Err(unreadable(
            "it is larger than 16 MiB, more than any icewall answer, and was not read on",
        ));
    }
    serde_json::from_slice(body).map_err(|error| unreadable(&error.to_string()))
}

/// Finds the addresses of a `host:port`.
type Lookup = fn(&str) -> io::Result<Vec<SocketAddr>>;

/// The system's resolver, as ureq's own.
fn system_lookup(netloc: &str) -> io::Result<Vec<SocketAddr>> {
    netloc.to_socket_addrs().map(Iterator::collect)
}

/// The addresses of `netloc` by `lookup`, given up on after `within`: ureq bounds a
/// lookup by nothing, and the system's resolver, its DNS server silent, takes as long
/// as its own configuration says (tens of seconds by default, more with more servers
/// or search domains), past the silence timeout and any `--timeout`.
fn look_up_within(netloc: &str, within: Duration, lookup: Lookup) -> io::Result<Vec<SocketAddr>> {
    let name = netloc.to_owned();
    deadline::by(Some(Deadline::after(within)), move || lookup(&name)).unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no address came for it within {}; giving up",
                humantime::format_duration(within)
            ),
        ))
    })
}

/// An agent that gives up on a server silent for `silence`, a connect's and the lookup
/// of its name included.
fn agent(
    silence: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
    lookup: Lookup,
) -> ureq::Agent {
    let mut agent = ureq::AgentBuilder::new()
        .resolver(move |netloc: &str| look_up_within(netloc, silence, lookup))
        // An icewall server never redirects: following one would send the request,
        // its config or admin token included, where --server does not point.
        .redirects(0)
        // ureq clears a connection's timeouts when it goes back to the pool, and sets
        // them again only on a new one: a request on a kept-alive connection would
        // wait for a stalled server for ever. A new connection per request is cheap
        // at the client's pace (one per held wait, one per page).
        .max_idle_connections(0)
        .timeout_connect(silence)
        .timeout_read(silence)
        .timeout_write(silence);
    if let Some(tls) = tls {
        agent = agent.tls_config(Arc::clone(tls));
    }
    agent.build()
}

/// An answer without what the client needs from it: another server's, or a wrong one.
pub(super) fn unreadable(what: &str) -> ClientError {
    ClientError::Input(format!(
        "the server sent an answer this client cannot read: {what}"
    ))
}

/// An answer of status `status`, 4xx or 5xx, as the error the user is shown: the
/// server's `reason`, or else the start of what it sent (a proxy's HTML page, say) on
/// one line, both cut short (control characters are escaped where every error is
/// printed).
pub(super) fn refusal(status: u16, response: ureq::Response) -> ClientError {
    let content_type = response.content_type().to_owned();
    let mut body = Vec::new();
    // Cut off or not, what came is shown.
    let _ = response
        .into_reader()
        .take(MAX_ERROR_BYTES)
        .read_to_end(&mut body);
    let reason = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body["reason"].as_str().map(excerpt))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body);
            let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if words.is_empty() {
                format!("HTTP {status}, with no reason given")
            } else {
                format!("HTTP {status} ({content_type}): {}", excerpt(&words))
            }
        });
    ClientError::Refused { status, reason }
}

/// Most of an error answer read: an icewall one is a sentence, and more of another
/// server's page would not be shown.
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// `text` cut to `MAX_SHOWN_CHARS`: enough for any icewall reason and to recognise
/// another server's page, short enough to leave the terminal readable.
fn excerpt(text: &str) -> String {
    const MAX_SHOWN_CHARS: usize = 300;
    crate::telemetry::truncate(text, MAX_SHOWN_CHARS).into_owned()
}

/// A redirect, reported and not followed (see `Client::new`); it names where it
/// points, since a wrong --server (`http://` for `https://`, a missing path) is the
/// usual cause.
fn redirected(response: &ureq::Response) -> ClientError {
    let status = response.status();
    let location = response
        .header("Location")
        .map_or_else(|| "nowhere".to_owned(), excerpt);
    ClientError::Refused {
        status,
        reason: format!(
            "the server answered HTTP {status}, a redirect to {location}, which an icewall \
             server never sends; it was not followed (is --server right?)"
        ),
    }
}

/// Whether `error`, or one it came from, is an I/O error of one of `kinds`.
fn caused_by(error: &(dyn std::error::Error + 'static), kinds: &[io::ErrorKind]) -> bool {
    std::iter::successors(Some(error), |error| error.source()).any(|error| {
        error
            .downcast_ref::<io::Error>()
            .is_some_and(|error| kinds.contains(&error.kind()))
    })
}

/// Whether `error` is a timeout (on Unix a socket's read timeout shows as `WouldBlock`).
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by(error, &[io::ErrorKind::TimedOut, io::ErrorKind::WouldBlock])
}

/// Whether a send failed because the server closed the connection while the body was
/// still being written.
fn stopped_reading(transport: &ureq::Transport) -> bool {
    caused_by(
        transport,
        &[io::ErrorKind::BrokenPipe, io::ErrorKind::ConnectionReset],
    )
}

/// TLS that trusts the bundled Mozilla roots (so a static binary in an empty container
/// still verifies public servers) and the certificates of `ca_cert`.
fn tls_config(ca_cert: &Path) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let unreadable = |error: &dyn std::fmt::Display| {
        ClientError::Input(format!(
            "cannot read CA certificates from {}: {error}",
            ca_cert.display()
        ))
    };
    let certificates = CertificateDer::pem_file_iter(ca_cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| unreadable(&error))?;
    if certificates.is_empty() {
        return Err(unreadable(&"no PEM certificate in it"));
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in certificates {
        roots.add(certificate).map_err(|error| unreadable(&error))?;
    }
    // ureq's own default is the ring provider; naming it avoids relying on a process
    // default that another dependency could make ambiguous.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_lookup_that_hangs_is_given_up_on_after_the_silence_timeout() {
        fn hangs(_: &str) -> io::Result<Vec<SocketAddr>> {
            loop {
                std::thread::park();
            }
        }
        let server = ServerArgs {
            server: "http://icewall.test:8080".to_owned(),
            ca_cert: None,
            debug_silence_timeout: Duration::from_millis(500),
        };
        let client = Client::looking_up_by(&server, hangs).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(client.job_result("x", Duration::ZERO)));
        let answer = receiver
            .recv_timeout(Duration::from_secs(5))
            .expect("the lookup was given up on");
        let Err(ClientError::Unreachable { detail, .. }) = answer else {
            panic!("reached a server that has no address");
        };
        assert_eq!(
            detail,
            "Dns Failed: resolve dns name 'icewall.test:8080': no address came for it \
             within 500ms; giving up"
        );
    }
}
