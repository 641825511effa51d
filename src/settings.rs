//! Settings of `icewall serve`: every limit and location is a flag (and an `ICEWALL_*`
//! environment variable) with a sane default, validated once by clap.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use crate::jobs::TeamLogs;
use crate::telemetry::{LogFormat, LogTarget};
use crate::wall::{self, Limits};

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(value) if value >= 1 => Ok(value),
        _ => Err(format!("expected an integer of at least 1, got `{text}`")),
    }
}

/// An address to listen on as binding takes it: `IP:PORT`, `[IPv6]:PORT` or
/// `HOST:PORT`, the host name resolved when the server binds. Anything else is a usage
/// error naming the flag, rather than a failure to listen (exit 1) found later.
fn bind_address(text: &str) -> Result<String, String> {
    let well_formed = text.parse::<std::net::SocketAddr>().is_ok()
        || text.rsplit_once(':').is_some_and(|(host, port)| {
            port.parse::<u16>().is_ok()
                && (host.parse::<std::net::IpAddr>().is_ok()
                    || (!host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')))
        });
    if well_formed {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected an address and a port as in `127.0.0.1:8080`, `[::1]:8080`, \
             `0.0.0.0:0` or `localhost:8080`, got `{text}`"
        ))
    }
}

/// A host name as a `Host` header carries it (without the port), or `*`.
fn host_name(text: &str) -> Result<String, String> {
    let valid = text == "*"
        || (!text.is_empty()
            && text.len() <= 253
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if valid {
        // A fully qualified `example.com.` is the same name; requests' hosts are
        // matched without their trailing dot too.
        let name = text
            .strip_suffix('.')
            .filter(|name| !name.is_empty())
            .unwrap_or(text);
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected a host name (letters, digits, `-`, `.`) or `*`, got `{text}`"
        ))
    }
}

/// An admin token must be something a client can send back in `Authorization: Bearer`:
/// HTTP trims the header value, so an empty or padded token could never be matched.
pub(crate) fn admin_token(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the admin token is empty: give a token, or leave the flag out".to_owned());
    }
    if text.trim() != text {
        return Err(
            "the admin token starts or ends with whitespace, which no Authorization \
             header can carry: remove it"
                .to_owned(),
        );
    }
    if text.chars().any(char::is_control) {
        return Err(
            "the admin token holds a control character, which no Authorization \
             header can carry"
                .to_owned(),
        );
    }
    // Its place, not the character: the token is a secret.
    if let Some(place) = text.chars().position(|c| !c.is_ascii()) {
        return Err(format!(
            "the admin token holds a character that is not ASCII (character {}): use \
             visible ASCII only, as an Authorization header is read as ASCII",
            place + 1
        ));
    }
    Ok(text.to_owned())
}

/// Units a size may carry, longest first so that `MiB` is not read as `B`.
const SIZE_UNITS: [(&str, u64); 7] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("B", 1),
];

/// A size in bytes: a plain number of bytes (`1048576`) or a whole number with a unit,
/// `B`, `KiB`, `MiB`, `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000), in
/// any case and with an optional space (`16MiB`, `16 mib`).
///
/// # Errors
/// A malformed number, an unknown unit, or a size beyond `u64`, as one sentence.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let unit = unit.trim_start();
    let expected = || {
        format!(
            "expected a size in bytes, or with a unit as in `16MiB` (B, KiB, MiB, GiB, KB, MB, GB), got `{text}`"
        )
    };
    let number: u64 = number.parse().map_err(|_| expected())?;
    let scale = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, scale)| *scale)
            .ok_or_else(expected)?
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A size that fits in memory; 0 allowed.
fn parse_size_usize(text: &str) -> Result<usize, String> {
    usize::try_from(parse_size(text)?).map_err(|_| format!("`{text}` is too large"))
}

/// A size of at least one byte that fits in memory, for limits on what is held.
fn nonzero_size(text: &str) -> Result<usize, String> {
    match usize::try_from(parse_size(text)?) {
        Ok(0) => Err(format!("expected a size of at least 1 byte, got `{text}`")),
        Ok(bytes) => Ok(bytes),
        Err(_) => Err(format!("`{text}` is too large")),
    }
}

/// A duration: a unit-ful one as `humantime` reads it (`30s`, `500ms`, `7days`,
/// `1h 30m`), or a bare number of seconds, which is what these flags took before they
/// had units.
///
/// # Errors
/// Text that is neither, as one sentence.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let duration = match trimmed.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(trimmed).map_err(|error| {
            format!("expected a duration as in `30s`, `500ms` or `7days` (a bare number is seconds), got `{text}`: {error}")
        })?,
    };
    // Deadlines are `now + duration`: a duration of ages would overflow the clock.
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than the longest duration taken, 1000 years"
        ));
    }
    Ok(duration)
}

/// The longest duration any flag takes: more than any deadline needs, far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(1000 * 31_557_600);

/// A duration longer than zero, for timeouts where zero would mean "never".
///
/// # Errors
/// A message naming `text` when it is not a duration, or is zero.
pub fn nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("expected a duration above zero, got `{text}`")),
        duration => Ok(duration),
    }
}

/// A lease of at least a second: a node beats every third of its lease but no more
/// often than every 50 ms, so that below 150 ms it would look dead between its own beats.
pub fn lease_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        lease if lease < Duration::from_secs(1) => {
            Err(format!("expected a lease of at least 1s, got `{text}`"))
        }
        lease => Ok(lease),
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Address to listen on: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`; port 0 picks a
    /// free port (printed at start-up).
    #[arg(long, env = "ICEWALL_BIND", default_value = "127.0.0.1:8080", value_parser = bind_address)]
    pub bind: String,
    /// Simulation worker threads.
    #[arg(long, env = "ICEWALL_WORKERS", default_value_t = cores(), value_parser = at_least_one)]
    pub workers: usize,
    /// HTTP worker threads.
    #[arg(long, env = "ICEWALL_HTTP_WORKERS", default_value_t = cores(), value_parser = at_least_one)]
    pub http_workers: usize,
    /// Where job requests, results and team logs are kept.
    #[arg(long, env = "ICEWALL_RESULTS_DIR", default_value = "results")]
    pub results_dir: PathBuf,
    /// Where the server log (icewall.log, rotated by size) is written.
    #[arg(long, env = "ICEWALL_LOGS_DIR", default_value = "logs")]
    pub logs_dir: PathBuf,
    /// The server's own wall, answered by /profiles/...; the example wall if absent.
    #[arg(long, env = "ICEWALL_PROFILES")]
    pub profiles: Option<PathBuf>,
    /// Teams building the server's own wall; unlimited crews if absent.
    #[arg(long, env = "ICEWALL_NUM_TEAMS", value_parser = wall::parse_num_teams)]
    pub num_teams: Option<NonZeroU64>,
    /// Jobs waiting to run, beyond which submissions get 503.
    #[arg(long, env = "ICEWALL_MAX_QUEUE", default_value_t = 10_000, value_parser = at_least_one)]
    pub max_queue: usize,
    /// Memory the queued jobs may hold, beyond which submissions get 503: bytes, or a
    /// size with a unit (`KiB`, `MiB`, `GiB`, or `KB`, `MB`, `GB`), e.g. `256MiB`.
    #[arg(long, env = "ICEWALL_MAX_QUEUE_BYTES", value_name = "SIZE", default_value = "256MiB", value_parser = nonzero_size)]
    pub max_queue_bytes: usize,
    /// Largest request body (413 beyond): bytes, or with a unit (`16MiB`, `500KB`).
    #[arg(long, env = "ICEWALL_MAX_BODY", value_name = "SIZE", default_value = "16MiB", value_parser = nonzero_size)]
    pub max_body: usize,
    /// Free space the results file system must keep (`64MiB`; plain bytes too); below
    /// it submissions get 503, as their jobs could not store their results.
    #[arg(long, env = "ICEWALL_MIN_FREE_SPACE", value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub min_free_space: u64,
    /// Where a done job's team log is kept: `inline`, inside its result file (one file
    /// per job), or `files`, in `<id>.log` beside it (a second file per job, which costs
    /// about a third of the jobs/s on ext4).
    #[arg(long, env = "ICEWALL_TEAM_LOGS", value_enum, default_value_t = TeamLogs::Inline)]
    pub team_logs: TeamLogs,
    /// Most per-profile rows in a `/api/get_results` summary; a wall with more profiles
    /// gets the first ones, `profiles_total` and `profiles_truncated`, and the rest are
    /// read with `/api/jobs/<id>/profiles`.
    #[arg(long, env = "ICEWALL_MAX_SUMMARY_PROFILES", default_value_t = 1000, value_parser = at_least_one)]
    pub max_summary_profiles: usize,
    /// Bytes of answers on done jobs' results (`/api/get_results/<id>` and the questions
    /// of `/api/jobs/<id>/profiles/...`) kept in memory, so that a repeated one needs no
    /// file read (a done job's answers never change, and a deleted job's are never
    /// served); 0 keeps none.
    #[arg(long, env = "ICEWALL_ANSWER_CACHE_BYTES", value_name = "SIZE", default_value = "16MiB", value_parser = parse_size_usize)]
    pub answer_cache_bytes: usize,
    /// Most buckets per series in a `/api/jobs/<id>/chart` answer (its `width`): the
    /// days are cut into at most this many, whatever the wall.
    #[arg(long, env = "ICEWALL_MAX_CHART_WIDTH", default_value_t = 4000, value_parser = at_least_one)]
    pub max_chart_width: usize,
    /// Most team rows in a chart's Gantt (the first teams): each row holds one value
    /// per bucket.
    #[arg(long, env = "ICEWALL_MAX_GANTT_TEAMS", default_value_t = 100, value_parser = at_least_one)]
    pub max_gantt_teams: usize,
    /// Most sections in one job's wall.
    #[arg(long, env = "ICEWALL_MAX_SECTIONS", default_value_t = Limits::DEFAULT_MAX_SECTIONS, value_parser = at_least_one)]
    pub max_sections: usize,
    /// Most sections in one profile.
    #[arg(long, env = "ICEWALL_MAX_PROFILE_SECTIONS", default_value_t = Limits::DEFAULT_MAX_SECTIONS_PER_PROFILE, value_parser = at_least_one)]
    pub max_profile_sections: usize,
    /// Time a client has to send a request's headers, and then its body (408 beyond),
    /// above zero: `30s`, `500ms` (a bare number is seconds). The headers' clock starts
    /// when the connection opens or the previous answer is sent, so an idle keep-alive
    /// connection lasts at most this long too.
    #[arg(long, env = "ICEWALL_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = nonzero_duration)]
    pub request_timeout: Duration,
    /// How long an answer may wait on a client that takes none of it (its receive
    /// window shut) or acknowledges none of it (gone from the network), above zero: then
    /// the connection is closed, by the kernel's TCP user timeout (Linux), whose probes
    /// back off, so it may take up to twice as long. A slow client that keeps reading
    /// is not cut off.
    #[arg(long, env = "ICEWALL_SEND_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = nonzero_duration)]
    pub send_timeout: Duration,
    /// How long an idle keep-alive connection is kept open: `5s` (a bare number is
    /// seconds; 0 closes each connection after its response).
    #[arg(long, env = "ICEWALL_KEEP_ALIVE", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub keep_alive: Duration,
    /// Time in-flight HTTP requests get to finish once the job queue has drained: `10s`
    /// (a bare number is seconds).
    #[arg(long, env = "ICEWALL_SHUTDOWN_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Longest `?wait=` a `/api/get_results` request may ask for (`60s`, `2m`; a bare
    /// number is seconds; 0 allows no waiting); a longer one gets 400. Each waiting
    /// request holds a connection, not a thread.
    #[arg(long, env = "ICEWALL_MAX_WAIT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// How long a finished job is kept (e.g. `7days`, `12h`, `30s`; a bare number is
    /// seconds), above zero; then it answers 404 like an unknown job and its file is
    /// removed.
    #[arg(long, env = "ICEWALL_RESULT_TTL", value_name = "DURATION", default_value = "7days", value_parser = nonzero_duration)]
    pub result_ttl: Duration,
    /// Most finished jobs kept; beyond it the oldest are removed.
    #[arg(long, env = "ICEWALL_MAX_RESULTS", default_value_t = 1_000_000, value_parser = at_least_one)]
    pub max_results: usize,
    /// Most bytes the finished jobs' results (and team log files) may take on disk;
    /// beyond it the oldest are removed (`10GiB`, `500MB`; plain bytes too). A result
    /// larger than this alone is removed at the next sweep.
    #[arg(long, env = "ICEWALL_MAX_RESULTS_BYTES", value_name = "SIZE", default_value = "10GiB", value_parser = nonzero_size)]
    pub max_results_bytes: usize,
    /// Cluster mode: the PostgreSQL database this node shares with the others
    /// (`postgres://user:password@host:5432/icewall`). Without it the node runs on its
    /// own with the file store in --results-dir. See the README's cluster section.
    #[arg(long, env = "ICEWALL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Cluster mode: the node's pool of connections to the database: about four go to
    /// its own tasks, the rest to concurrent requests. It keeps two more beside the
    /// pool (one to LISTEN, one to extend its leases).
    #[arg(long, env = "ICEWALL_DATABASE_POOL_SIZE", default_value_t = 16, value_parser = at_least_one)]
    pub database_pool_size: usize,
    /// Cluster mode: how long a request waits for the database before it answers 503.
    #[arg(long, env = "ICEWALL_DATABASE_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = nonzero_duration)]
    pub database_timeout: Duration,
    /// Cluster mode: how long a node that cannot reach its database at start-up waits
    /// for it (a node and its database started together), alive and not ready, trying
    /// again every 2 s at most; 0s tries once. A failure that waiting cannot mend (a
    /// bad URL, a refused login, no such database) stops the node at once.
    #[arg(long, env = "ICEWALL_DATABASE_START_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub database_start_timeout: Duration,
    /// Cluster mode: how long a job this node runs stays its own without a heartbeat
    /// (heartbeats come every third of it); a job whose node stopped answering for
    /// this long runs again on another node. At least 1s.
    #[arg(long, env = "ICEWALL_LEASE", value_name = "DURATION", default_value = "30s", value_parser = lease_duration)]
    pub lease: Duration,
    /// Cluster mode: runs of a job whose node stopped answering before the job is
    /// failed with that reason.
    #[arg(long, env = "ICEWALL_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Cluster mode: most jobs claimed beyond the free workers, so that a worker finds
    /// its next job on the node; fewer when jobs run long (no more than the workers
    /// finish in about 50 ms), so that long jobs spread over the nodes.
    #[arg(long, env = "ICEWALL_CLAIM_AHEAD", default_value_t = 32)]
    pub claim_ahead: usize,
    /// Cluster mode: how often an idle node looks for queued jobs when no
    /// notification reached it.
    #[arg(long, env = "ICEWALL_CLAIM_POLL", value_name = "DURATION", default_value = "1s", value_parser = nonzero_duration)]
    pub claim_poll: Duration,
    /// Cluster mode: bytes of results read from the database that a node keeps in
    /// memory to answer repeated questions.
    #[arg(long, env = "ICEWALL_RESULT_CACHE_BYTES", value_name = "SIZE", default_value = "256MiB", value_parser = parse_size_usize)]
    pub result_cache_bytes: usize,
    /// Token required (as `Authorization: Bearer <token>`) for admin actions. Without
    /// one they are open on a loopback address and refused on any other.
    #[arg(long, env = "ICEWALL_ADMIN_TOKEN", hide_env_values = true, value_parser = admin_token)]
    pub admin_token: Option<String>,
    /// Host names (comma-separated) the server answers to besides IP addresses and, on a
    /// loopback or every-address bind, `localhost`; `*` allows any. Other names get 421,
    /// so a web page cannot reach the server through DNS rebinding.
    #[arg(long, env = "ICEWALL_ALLOWED_HOSTS", value_delimiter = ',', value_parser = host_name)]
    pub allowed_hosts: Vec<String>,
    /// Size at which logs/icewall.log is rotated: bytes, or with a unit (`10MiB`).
    #[arg(long, env = "ICEWALL_LOG_MAX_BYTES", value_name = "SIZE", default_value = "10MiB", value_parser = nonzero_size)]
    pub log_max_bytes: usize,
    /// Rotated log files kept.
    #[arg(long, env = "ICEWALL_LOG_KEEP", default_value_t = 5)]
    pub log_keep: usize,
    /// Format of the server log: `text` (`<time> <LEVEL> <message>, key: value`) or
    /// `json` (one object a line with `ts`, `level`, `msg` and the event's keys).
    #[arg(long, env = "ICEWALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where the server log goes: `file` (icewall.log in --logs-dir, rotated by
    /// --log-max-bytes) or `stdout` (for containers and systemd), after the listening line.
    #[arg(long, env = "ICEWALL_LOG_TARGET", value_enum, default_value_t = LogTarget::File)]
    pub log_target: LogTarget,
    /// Test hook: milliseconds every job sleeps before simulating.
    #[arg(long, hide = true, default_value_t = 0)]
    pub debug_job_delay_ms: u64,
    /// Test hook: every job waits, before simulating, until this file exists; a test
    /// holds jobs for exactly as long as it needs, then creates the file.
    #[arg(long, hide = true)]
    pub debug_job_gate: Option<std::path::PathBuf>,
    /// Test hook: a job with this num_teams panics.
    #[arg(long, hide = true)]
    pub debug_panic_on_num_teams: Option<u64>,
    /// Test hook: milliseconds every accept waits once its request is journaled.
    #[arg(long, hide = true, default_value_t = 0)]
    pub debug_accept_delay_ms: u64,
    /// Test hook: the size past which the idempotency-key file is rewritten without the
    /// records of removed jobs while the server runs (and at each doubling after).
    #[arg(long, hide = true, default_value_t = crate::jobs::COMPACTION_FLOOR)]
    pub debug_compaction_bytes: u64,
    /// Test hook: start-up waits, once the listener is bound and before the jobs are
    /// recovered, until this file exists.
    #[arg(long, hide = true)]
    pub debug_start_gate: Option<std::path::PathBuf>,
    /// Test hook: milliseconds a cluster node's claim waits between taking jobs and
    /// handing them to its workers.
    #[arg(long, hide = true, default_value_t = 0)]
    pub debug_claim_delay_ms: u64,
    /// Test hook: a cluster node's finisher panics when handed a failed job.
    #[arg(long, hide = true)]
    pub debug_finisher_panics: bool,
}

impl Settings {
    pub fn limits(&self) -> Limits {
        Limits {
            max_sections_per_profile: self.max_profile_sections,
            max_sections: self.max_sections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_bytes_or_a_unit() {
        for (text, bytes) in [
            ("0", 0),
            ("1000", 1000),
            ("7B", 7),
            ("1KiB", 1024),
            ("16MiB", 16 * 1024 * 1024),
            ("2GiB", 2 * 1024 * 1024 * 1024),
            ("5KB", 5_000),
            ("64MB", 64_000_000),
            ("3GB", 3_000_000_000),
            ("16 mib", 16 * 1024 * 1024),
            (" 10kb ", 10_000),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn a_size_without_a_known_unit_or_number_is_refused() {
        for text in [
            "", "MiB", "16XB", "16 M", "1.5GiB", "-1", "+1", "16MiBs", "16 MiB B",
        ] {
            let error = parse_size(text).unwrap_err();
            assert!(error.contains("KiB"), "{text}: {error}");
        }
        assert!(
            parse_size("20000000000GiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            nonzero_size("0KiB")
                .unwrap_err()
                .contains("at least 1 byte")
        );
        assert_eq!(nonzero_size("1KiB"), Ok(1024));
    }

    #[test]
    fn a_bind_address_is_an_address_or_a_host_name_with_a_port() {
        for text in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "[::1]:8080",
            "::1:8080",
            "localhost:8080",
            "icewall-1.example.com:80",
        ] {
            assert_eq!(bind_address(text).as_deref(), Ok(text), "{text}");
        }
        for text in [
            "nonsense",
            "127.0.0.1",
            "127.0.0.1:",
            ":8080",
            "127.0.0.1:65536",
            "127.0.0.1:http",
            "local host:8080",
            "",
        ] {
            let error = bind_address(text).unwrap_err();
            assert!(error.contains("`127.0.0.1:8080`"), "{text}: {error}");
        }
    }

    #[test]
    fn durations_take_a_unit_or_bare_seconds() {
        for (text, duration) in [
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("500ms", Duration::from_millis(500)),
            ("7days", Duration::from_secs(7 * 24 * 3600)),
            ("1h 30m", Duration::from_secs(5400)),
        ] {
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        assert!(
            parse_duration("1001years")
                .unwrap_err()
                .contains("1000 years")
        );
        assert!(parse_duration("18446744073709551615").is_err());
        assert!(parse_duration("1000years").is_ok());
        for text in ["", "s", "10 parsecs", "-1", "1.5"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("bare number is seconds"), "{text}: {error}");
        }
        assert!(nonzero_duration("0s").unwrap_err().contains("above zero"));
        // Below 150 ms a node's beats, every 50 ms at the most, would come less often
        // than its lease: it would look dead to the others between them.
        assert!(lease_duration("149ms").unwrap_err().contains("at least 1s"));
        assert_eq!(lease_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(nonzero_duration("1"), Ok(Duration::from_secs(1)));
    }
}
