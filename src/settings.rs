//! Settings of `icewall serve`: every limit and location is a flag (and an `ICEWALL_*`
//! environment variable) with a sane default, validated once by clap.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use crate::jobs::TeamLogs;
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

/// A host name as a `Host` header carries it (without the port), or `*`.
fn host_name(text: &str) -> Result<String, String> {
    let valid = text == "*"
        || (!text.is_empty()
            && text.len() <= 253
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected a host name (letters, digits, `-`, `.`) or `*`, got `{text}`"
        ))
    }
}

/// An admin token must be something a client can send back in `Authorization: Bearer`:
/// HTTP trims the header value, so an empty or padded token could never be matched.
fn admin_token(text: &str) -> Result<String, String> {
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
    Ok(text.to_owned())
}

/// A size of at least one byte: a number of bytes, with an optional unit.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => 0,
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|number| number.checked_mul(scale))
        .filter(|&bytes| bytes >= 1)
        .ok_or_else(|| {
            format!(
                "expected a size of at least 1 byte, such as `268435456`, `256MiB` or `1GB`, got `{text}`"
            )
        })
}

#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    #[arg(long, env = "ICEWALL_BIND", default_value = "127.0.0.1:8080")]
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
    #[arg(long, env = "ICEWALL_MAX_QUEUE_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub max_queue_bytes: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "ICEWALL_MAX_BODY", default_value_t = 16 * 1024 * 1024, value_parser = at_least_one)]
    pub max_body: usize,
    /// Free bytes the results file system must keep; below it submissions get 503, as
    /// their jobs could not store their results.
    #[arg(long, env = "ICEWALL_MIN_FREE_SPACE", default_value_t = 64 * 1024 * 1024)]
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
    /// Most sections in one job's wall.
    #[arg(long, env = "ICEWALL_MAX_SECTIONS", default_value_t = Limits::DEFAULT_MAX_SECTIONS, value_parser = at_least_one)]
    pub max_sections: usize,
    /// Most sections in one profile.
    #[arg(long, env = "ICEWALL_MAX_PROFILE_SECTIONS", default_value_t = Limits::DEFAULT_MAX_SECTIONS_PER_PROFILE, value_parser = at_least_one)]
    pub max_profile_sections: usize,
    /// Seconds a client has to send a request's headers, and then its body (408 beyond).
    /// The headers' clock starts when the connection opens or the previous answer is
    /// sent, so an idle keep-alive connection lasts at most this long too.
    #[arg(
        long = "request-timeout",
        env = "ICEWALL_REQUEST_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub request_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long = "keep-alive", env = "ICEWALL_KEEP_ALIVE", default_value_t = 5)]
    pub keep_alive_secs: u64,
    /// Seconds in-flight HTTP requests get to finish once the job queue has drained.
    #[arg(
        long = "shutdown-timeout",
        env = "ICEWALL_SHUTDOWN_TIMEOUT",
        default_value_t = 10
    )]
    pub shutdown_timeout_secs: u64,
    /// How long a finished job is kept (e.g. `7days`, `12h`, `30s`); then it answers
    /// 404 like an unknown job and its file is removed.
    #[arg(long, env = "ICEWALL_RESULT_TTL", default_value = "7days", value_parser = humantime::parse_duration)]
    pub result_ttl: Duration,
    /// Most finished jobs kept; beyond it the oldest are removed.
    #[arg(long, env = "ICEWALL_MAX_RESULTS", default_value_t = 1_000_000, value_parser = at_least_one)]
    pub max_results: usize,
    /// Token required (as `Authorization: Bearer <token>`) for admin actions. Without
    /// one they are open on a loopback address and refused on any other.
    #[arg(long, env = "ICEWALL_ADMIN_TOKEN", hide_env_values = true, value_parser = admin_token)]
    pub admin_token: Option<String>,
    /// Host names (comma-separated) the server answers to besides IP addresses and, on a
    /// loopback or every-address bind, `localhost`; `*` allows any. Other names get 421,
    /// so a web page cannot reach the server through DNS rebinding.
    #[arg(long, env = "ICEWALL_ALLOWED_HOSTS", value_delimiter = ',', value_parser = host_name)]
    pub allowed_hosts: Vec<String>,
    /// Size in bytes at which logs/icewall.log is rotated.
    #[arg(long, env = "ICEWALL_LOG_MAX_BYTES", default_value_t = 10 * 1024 * 1024, value_parser = at_least_one)]
    pub log_max_bytes: usize,
    /// Rotated log files kept.
    #[arg(long, env = "ICEWALL_LOG_KEEP", default_value_t = 5)]
    pub log_keep: usize,
    /// Test hook: milliseconds every job sleeps before simulating.
    #[arg(long, hide = true, default_value_t = 0)]
    pub debug_job_delay_ms: u64,
    /// Test hook: a job with this num_teams panics.
    #[arg(long, hide = true)]
    pub debug_panic_on_num_teams: Option<u64>,
    /// Test hook: milliseconds every accept waits once its request is journaled.
    #[arg(long, hide = true, default_value_t = 0)]
    pub debug_accept_delay_ms: u64,
}

impl Settings {
    pub fn limits(&self) -> Limits {
        Limits {
            max_sections_per_profile: self.max_profile_sections,
            max_sections: self.max_sections,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("2 KiB"), Ok(2048));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        for bad in [
            "",
            "0",
            "MiB",
            "1.5MiB",
            "-1",
            "12 parsecs",
            "99999999999999999999GiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }
}
