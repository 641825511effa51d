//! A finished job packed in 40 bytes, most of the registry's memory per retained job:
//! its times, size and flags around its journal pin, and the rare values that do not
//! fit kept whole beside it.

use std::num::{NonZeroU32, NonZeroU64};

use super::FinishedJob;
use crate::jobs::registry::record::{JobState, WallShape};
use crate::jobs::storage::StorePin;

/// A finished job in 40 bytes: times, size and flags packed around its journal pin.
pub(super) struct Packed {
    finished_ms: Option<NonZeroU64>,
    /// The result's bytes in the low 60 bits, the flags (`TOMBSTONE`...) above them.
    bytes_and_flags: u64,
    /// The journal holding the job's request, while jobs accepted with it still need it.
    /// Deleting the result before it is gone would make a restart run the job again.
    journal: StorePin,
    profiles: Option<NonZeroU32>,
    sections: Option<NonZeroU32>,
    /// 0 when not known.
    num_teams: u32,
    /// From start to finish, plus one; 0 when the start is not known.
    run_ms_plus_one: u32,
}

/// What a packed record has no room for: more than 2^32 - 1 teams, a run of more than
/// 49 days or one that finished before it started (a clock set back), a result of an
/// exabyte. Such a record has the `UNUSUAL` flag and its values here, whole.
pub(super) struct Unusual {
    started_ms: Option<NonZeroU64>,
    num_teams: Option<NonZeroU64>,
    pub(super) result_bytes: u64,
}

const BYTES: u64 = (1 << 60) - 1;
const TOMBSTONE: u64 = 1 << 60;
const DELETING: u64 = 1 << 61;
const REPLAYED: u64 = 1 << 62;
const UNUSUAL: u64 = 1 << 63;

impl Packed {
    pub(super) fn new(job: &FinishedJob, journal: StorePin) -> (Packed, Option<Unusual>) {
        let run_ms_plus_one = match (job.started_ms, job.finished_ms) {
            (None, _) => Some(0),
            (Some(started), Some(finished)) => finished
                .get()
                .checked_sub(started.get())
                .and_then(|run| u32::try_from(run.checked_add(1)?).ok()),
            (Some(_), None) => None,
        };
        let teams = job.shape.and_then(|shape| shape.num_teams);
        let num_teams = teams.map_or(Some(0), |teams| u32::try_from(teams.get()).ok());
        let fits = job.result_bytes <= BYTES;
        let mut flags = 0;
        if job.deleting {
            flags |= DELETING;
        }
        if job.replayed {
            flags |= REPLAYED;
        }
        let unusual = match (run_ms_plus_one, num_teams, fits) {
            (Some(_), Some(_), true) => None,
            _ => {
                flags |= UNUSUAL;
                Some(Unusual {
                    started_ms: job.started_ms,
                    num_teams: teams,
                    result_bytes: job.result_bytes,
                })
            }
        };
        let packed = Packed {
            finished_ms: job.finished_ms,
            bytes_and_flags: if fits { job.result_bytes } else { 0 } | flags,
            journal,
            profiles: job.shape.map(|shape| shape.profiles),
            sections: job.shape.and_then(|shape| shape.sections),
            num_teams: num_teams.unwrap_or(0),
            run_ms_plus_one: run_ms_plus_one.unwrap_or(0),
        };
        (packed, unusual)
    }

    /// The job again; `unusual` is its entry of `FinishedJobs::unusual`, if it has one.
    pub(super) fn job(&self, state: JobState, unusual: Option<&Unusual>) -> FinishedJob {
        let (started_ms, num_teams, result_bytes) = match unusual {
            Some(unusual) => (unusual.started_ms, unusual.num_teams, unusual.result_bytes),
            None => (
                self.started_ms(),
                NonZeroU64::new(u64::from(self.num_teams)),
                self.bytes_and_flags & BYTES,
            ),
        };
        FinishedJob {
            state,
            started_ms,
            finished_ms: self.finished_ms,
            shape: self.profiles.map(|profiles| WallShape {
                profiles,
                sections: self.sections,
                num_teams,
            }),
            result_bytes,
            replayed: self.has(REPLAYED),
            deleting: self.has(DELETING),
        }
    }

    fn started_ms(&self) -> Option<NonZeroU64> {
        let run_ms = u64::from(self.run_ms_plus_one.checked_sub(1)?);
        NonZeroU64::new(self.finished_ms?.get() - run_ms)
    }

    pub(super) fn tombstone() -> Packed {
        Packed {
            finished_ms: None,
            bytes_and_flags: TOMBSTONE,
            journal: StorePin::default(),
            profiles: None,
            sections: None,
            num_teams: 0,
            run_ms_plus_one: 0,
        }
    }

    pub(super) fn finished_ms(&self) -> Option<NonZeroU64> {
        self.finished_ms
    }

    /// The result's bytes, unless the record `is_unusual`.
    pub(super) fn result_bytes(&self) -> u64 {
        self.bytes_and_flags & BYTES
    }

    pub(super) fn journal(&self) -> &StorePin {
        &self.journal
    }

    pub(super) fn is_tombstone(&self) -> bool {
        self.has(TOMBSTONE)
    }

    /// Whether its values are in an `Unusual` beside it.
    pub(super) fn is_unusual(&self) -> bool {
        self.has(UNUSUAL)
    }

    pub(super) fn is_deleting(&self) -> bool {
        self.has(DELETING)
    }

    pub(super) fn set_deleting(&mut self, deleting: bool) {
        self.set(DELETING, deleting);
    }

    pub(super) fn set_replayed(&mut self) {
        self.set(REPLAYED, true);
    }

    fn has(&self, flag: u64) -> bool {
        self.bytes_and_flags & flag != 0
    }

    fn set(&mut self, flag: u64, on: bool) {
        if on {
            self.bytes_and_flags |= flag;
        } else {
            self.bytes_and_flags &= !flag;
        }
    }
}
