//! Job ids: UUID v7 (they sort by creation time), parsed strictly so that nothing but a
//! canonical UUID ever reaches the file system.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

/// A string that is not a job id.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a job id")]
pub struct InvalidJobId;

impl JobId {
    /// A new id, later than every id made before it in this process.
    pub fn generate() -> JobId {
        JobId(Uuid::now_v7())
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
