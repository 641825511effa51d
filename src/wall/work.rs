//! Feet built per day as piecewise-constant functions, one per profile and one for the
//! whole wall: what every ice and cost query is answered from, in O(log sections),
//! whether the steps are in memory or read one at a time from a stored result.

mod builder;

use std::convert::Infallible;

use serde::{Deserialize, Serialize};

pub(crate) use self::builder::DailyWorkBuilder;
use super::{COST_PER_FOOT, ICE_PER_FOOT};

/// One step of a `DailyWork`: from day `start` on, `active` sections grow one foot a
/// day, and `feet_before` feet were built before that day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub start: u64,
    pub active: u64,
    pub feet_before: u64,
}

impl Step {
    /// Feet built on days `1..=day`, for a `day` on which this step is in force;
    /// `None` when the numbers overflow, which only a damaged stored table can make.
    pub fn feet_through(&self, day: u64) -> Option<u64> {
        let days = day.checked_sub(self.start)?.checked_add(1)?;
        self.active.checked_mul(days)?.checked_add(self.feet_before)
    }
}

/// The last of `count` steps (sorted by start) whose start is at most `day`, by binary
/// search: O(log count) calls of `step`, each of which may read one step from disk.
///
/// # Errors
/// Whatever `step` returns.
pub fn find_step<E>(
    count: usize,
    day: u64,
    mut step: impl FnMut(usize) -> Result<Step, E>,
) -> Result<Option<Step>, E> {
    let (mut low, mut high) = (0, count);
    // The last step read that starts by `day` is the answer once the range is empty.
    let mut found = None;
    while low < high {
        let middle = low + (high - low) / 2;
        let candidate = step(middle)?;
        if candidate.start <= day {
            found = Some(candidate);
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(found)
}

/// Which daily work a question is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// A profile, numbered from 1 (at most `WorkSource::profile_count`).
    Profile(usize),
    Wall,
}

/// Where the questions find a finished wall's daily work: in memory (`WorkTables`), or
/// in a stored result, read a step at a time so that memory stays bounded by the answer.
pub trait WorkSource {
    type Error;

    fn profile_count(&self) -> usize;

    /// The step of `table` in force on `day`; `None` before work begins.
    ///
    /// # Errors
    /// When the steps cannot be read.
    fn step_on(&self, table: Table, day: u64) -> Result<Option<Step>, Self::Error>;
}

/// Feet built per day, as steps: from day `starts[i]` on, `active[i]` sections grow one
/// foot a day, and `feet_before[i]` feet were built before that day. The last step has
/// no active section, so any day after completion answers 0 and the total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StepColumns", into = "StepColumns")]
pub struct DailyWork {
    steps: StepColumns,
}

/// The steps as three columns, which keeps the stored form compact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StepColumns {
    starts: Vec<u64>,
    active: Vec<u64>,
    feet_before: Vec<u64>,
}

/// A stored table that could not have come from the engine.
#[derive(Debug, thiserror::Error)]
#[error("inconsistent work table: {0}")]
pub struct InvalidWorkTable(&'static str);

impl TryFrom<StepColumns> for DailyWork {
    type Error = InvalidWorkTable;

    /// Checks what the queries rely on, so a damaged file can never make them panic
    /// or overflow.
    fn try_from(steps: StepColumns) -> Result<Self, Self::Error> {
        let len = steps.starts.len();
        if steps.active.len() != len || steps.feet_before.len() != len {
            return Err(InvalidWorkTable("columns differ in length"));
        }
        if steps.starts.first() == Some(&0) {
            return Err(InvalidWorkTable("work starts before day 1"));
        }
        if steps.active.last().is_some_and(|&active| active != 0) {
            return Err(InvalidWorkTable("the last step is not idle"));
        }
        for i in 1..len {
            let span = steps.starts[i].checked_sub(steps.starts[i - 1]);
            let built = span.and_then(|span| span.checked_mul(steps.active[i - 1]));
            let expected = built.and_then(|built| built.checked_add(steps.feet_before[i - 1]));
            if span.is_none_or(|span| span == 0) || expected != Some(steps.feet_before[i]) {
                return Err(InvalidWorkTable("steps do not add up"));
            }
        }
        if steps
            .feet_before
            .last()
            .is_some_and(|&feet| feet > u64::MAX / COST_PER_FOOT)
        {
            return Err(InvalidWorkTable("total out of range"));
        }
        Ok(DailyWork { steps })
    }
}

impl From<DailyWork> for StepColumns {
    fn from(work: DailyWork) -> Self {
        work.steps
    }
}

impl DailyWork {
    /// The steps, first day first.
    pub fn steps(&self) -> impl ExactSizeIterator<Item = Step> + '_ {
        (0..self.steps.starts.len()).map(|i| self.step(i))
    }

    fn step(&self, i: usize) -> Step {
        Step {
            start: self.steps.starts[i],
            active: self.steps.active[i],
            feet_before: self.steps.feet_before[i],
        }
    }

    /// The step in force on `day`, if work has begun by then.
    pub fn step_on(&self, day: u64) -> Option<Step> {
        let Ok(step) = find_step(self.steps.starts.len(), day, |i| {
            Ok::<_, Infallible>(self.step(i))
        });
        step
    }

    /// Feet built on `day` (day 0 and days after completion build nothing).
    pub fn feet_on(&self, day: u64) -> u64 {
        self.step_on(day).map_or(0, |step| step.active)
    }

    /// Feet built on days `1..=day`.
    pub fn feet_through(&self, day: u64) -> u64 {
        self.step_on(day).map_or(0, |step| {
            step.feet_through(day)
                .expect("checked tables do not overflow (see `TryFrom<StepColumns>`)")
        })
    }

    pub fn total_feet(&self) -> u64 {
        self.steps.feet_before.last().copied().unwrap_or(0)
    }

    /// The last day anyone works, 0 if nobody ever does.
    pub fn last_day(&self) -> u64 {
        self.steps.starts.last().map_or(0, |&stop| stop - 1)
    }
}

/// The daily work of every profile and of the whole wall: all that the ice and cost
/// queries need, stored beside a job's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkTables {
    pub(crate) profiles: Vec<DailyWork>,
    pub(crate) wall: DailyWork,
}

impl WorkTables {
    pub fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    /// Profiles are numbered from 1.
    fn profile(&self, profile: usize) -> Option<&DailyWork> {
        profile
            .checked_sub(1)
            .and_then(|index| self.profiles.get(index))
    }

    /// `ice(p, d)`: cubic yards used on `day` by `profile`; `None` for no such profile.
    pub fn ice(&self, profile: usize, day: u64) -> Option<u64> {
        self.profile(profile)
            .map(|work| work.feet_on(day) * ICE_PER_FOOT)
    }

    /// `cost(p, <=d)`: Gold Dragons spent on `profile` on days `1..=day`.
    pub fn profile_cost_through(&self, profile: usize, day: u64) -> Option<u64> {
        self.profile(profile)
            .map(|work| work.feet_through(day) * COST_PER_FOOT)
    }

    /// `cost(all, <=d)`.
    pub fn cost_through(&self, day: u64) -> u64 {
        self.wall.feet_through(day) * COST_PER_FOOT
    }

    /// `cost(all)`.
    pub fn total_cost(&self) -> u64 {
        self.wall.total_feet() * COST_PER_FOOT
    }

    /// Cubic yards used on `day` by the whole wall.
    pub fn wall_ice(&self, day: u64) -> u64 {
        self.wall.feet_on(day) * ICE_PER_FOOT
    }

    pub fn days(&self) -> u64 {
        self.wall.last_day()
    }
}

impl WorkSource for WorkTables {
    type Error = Infallible;

    fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    /// # Panics
    /// For a profile out of range: callers check it first.
    fn step_on(&self, table: Table, day: u64) -> Result<Option<Step>, Infallible> {
        let work = match table {
            Table::Profile(profile) => self
                .profile(profile)
                .expect("the caller checked the profile number"),
            Table::Wall => &self.wall,
        };
        Ok(work.step_on(day))
    }
}

#[cfg(test)]
mod tests;
