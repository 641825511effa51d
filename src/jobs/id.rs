//! Job ids: UUID v7 (they sort by creation time), parsed strictly so that nothing but a
//! canonical UUID ever reaches the file system.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use uuid::timestamp::Timestamp;
use uuid::timestamp::context::ContextV7;

/// The clock of the ids this process makes.
static ID_CLOCK: IdClock = IdClock(Mutex::new(ContextV7::new()));

/// A clock of ids that never goes back, whatever the wall clock does (a step back leaves
/// it where it was, counting up within its millisecond), and that `pass` moves past the
/// ids found on disk.
struct IdClock(Mutex<ContextV7>);

impl IdClock {
    /// A new id, the wall clock reading `since_epoch`.
    fn make(&self, since_epoch: Duration) -> JobId {
        let context = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let timestamp =
            Timestamp::from_unix(&*context, since_epoch.as_secs(), since_epoch.subsec_nanos());
        JobId(Uuid::new_v7(timestamp))
    }

    /// Makes every later id sort after `known`.
    fn pass(&self, known: JobId) {
        if let Some(known_ms) = known.created_ms() {
            // Its next millisecond: within `known`'s own, the counter of a new id is
            // random and could sort before it.
            let next = Duration::from_millis(known_ms.saturating_add(1));
            let context = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            // Only the clock's position matters: the stamp this makes is not used.
            let _ = Timestamp::from_unix(&*context, next.as_secs(), next.subsec_nanos());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

/// A string that is not a job id.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a job id")]
pub struct InvalidJobId;

impl JobId {
    /// A new id, later than every id made before it in this process and every id given
    /// to `never_before`. A wall clock before 1970 counts as 1970 (rather than panic,
    /// as the uuid crate's own clock does).
    pub fn generate() -> JobId {
        JobId::generate_ahead_by(0)
    }

    /// A new id as `generate` makes it, on a clock `ms` milliseconds ahead of this
    /// machine's wall clock (behind, if negative): a cluster node makes its ids on the
    /// database's clock, so that they sort with the other nodes' in the order the jobs
    /// came, whatever the nodes' clocks say.
    pub fn generate_ahead_by(ms: i64) -> JobId {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ahead = Duration::from_millis(ms.unsigned_abs());
        let now = if ms >= 0 {
            wall.saturating_add(ahead)
        } else {
            wall.saturating_sub(ahead)
        };
        ID_CLOCK.make(now)
    }

    /// Makes every id generated from now on later than `known`: after a restart under a
    /// clock set back, new jobs must not sort before the ones kept, or "the oldest"
    /// (retention, the job list) would be the newest. Until the wall clock passes
    /// `known`, new ids carry its time, a millisecond on.
    pub fn never_before(known: JobId) {
        ID_CLOCK.pass(known);
    }

    /// The id as the database keeps it (cluster mode).
    pub fn uuid(self) -> Uuid {
        self.0
    }

    pub fn from_uuid(uuid: Uuid) -> JobId {
        JobId(uuid)
    }

    /// An id only in the spelling this server writes (lower case), as file names hold
    /// it: one name per job, so that another spelling is never taken for a second job.
    pub fn parse_canonical(text: &str) -> Result<JobId, InvalidJobId> {
        if text.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return Err(InvalidJobId);
        }
        text.parse()
    }

    /// When the id was made, in milliseconds since the Unix epoch, read from the v7
    /// UUID itself (so no record needs to keep it); `None` for an id of another version.
    pub fn created_ms(&self) -> Option<u64> {
        let (seconds, nanos) = self.0.get_timestamp()?.to_unix();
        Some(seconds * 1000 + u64::from(nanos) / 1_000_000)
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;

    /// Only the 36-character hyphenated form, in either case (a client may spell its
    /// id in upper case); see `parse_canonical` for file names.
    fn from_str(text: &str) -> Result<JobId, InvalidJobId> {
        if text.len() != 36 {
            return Err(InvalidJobId);
        }
        Uuid::try_parse(text).map(JobId).map_err(|_| InvalidJobId)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_creation() {
        let first = JobId::generate();
        let second = JobId::generate();
        assert!(first < second);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let created = first.created_ms().unwrap();
        assert!(created <= now && now - created < 60_000, "{created} {now}");
        let random: JobId = "1b4e28ba-2fa1-41d2-883f-0016d3cca427".parse().unwrap();
        assert_eq!(random.created_ms(), None);
        assert_eq!(first.to_string().parse::<JobId>(), Ok(first));
    }

    #[test]
    fn ids_made_after_a_clock_step_back_still_sort_after_the_earlier_ones() {
        let clock = IdClock(Mutex::new(ContextV7::new()));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let before_the_step = clock.make(now);
        let after_the_step = clock.make(now - Duration::from_secs(86_400));
        assert!(before_the_step < after_the_step);
        let before_1970 = clock.make(Duration::ZERO);
        assert!(after_the_step < before_1970);
    }

    #[test]
    fn ids_made_after_never_before_sort_after_the_known_one() {
        let tomorrow =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(86_400);
        // An id as another process (or a clock a day ahead) made it.
        let seconds = tomorrow.as_secs();
        let kept = JobId(Uuid::new_v7(Timestamp::from_unix(
            uuid::NoContext,
            seconds,
            tomorrow.subsec_nanos(),
        )));
        let clock = IdClock(Mutex::new(ContextV7::new()));
        clock.pass(kept);
        let made = clock.make(tomorrow - Duration::from_secs(86_400));
        assert!(kept < made, "{kept} {made}");
        let made_ms = made.created_ms().unwrap();
        let kept_ms = kept.created_ms().unwrap();
        assert!(
            made_ms > kept_ms && made_ms - kept_ms < 1000,
            "{kept_ms} {made_ms}"
        );
    }

    #[test]
    fn only_canonical_uuids_are_ids() {
        let id = JobId::generate().to_string();
        let simple = id.replace('-', "");
        for text in [
            "",
            "abc",
            "../../etc/passwd",
            simple.as_str(),
            &format!("{{{id}}}"),
            &format!("urn:uuid:{id}"),
            &format!("{id}/"),
            &"a".repeat(10_000),
            "0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e7\0",
        ] {
            assert_eq!(text.parse::<JobId>(), Err(InvalidJobId), "{text:?}");
        }
        let upper = id.to_uppercase();
        assert_eq!(upper.parse::<JobId>().unwrap().to_string(), id);
        assert_eq!(JobId::parse_canonical(&upper), Err(InvalidJobId));
        assert_eq!(JobId::parse_canonical(&id).unwrap().to_string(), id);
        assert_eq!(JobId::parse_canonical(&simple), Err(InvalidJobId));
    }
}
