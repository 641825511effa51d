//! Chart data for a finished wall, reduced to what a screen can show: the days cut into
//! at most N equal buckets, each series integrated exactly over each bucket from its
//! cumulative (step) function, never a value per day; the largest profiles picked for
//! stacking; and the team log folded, line by line, into a Gantt of team rows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::ProfileSummary;

/// Days `1..=days` cut into buckets of `width` days each (the last may be shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buckets {
    days: u64,
    width: u64,
}

impl Buckets {
    /// The narrowest equal buckets of which at most `max` cover `days` (one a day when
    /// `days <= max`). `max` must be at least 1.
    pub fn new(days: u64, max: usize) -> Buckets {
        let max = (max.max(1)) as u64;
        Buckets {
            days,
            width: days.div_ceil(max).max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.days.div_ceil(self.width) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.days == 0
    }

    /// Days per bucket.
    pub fn width(&self) -> u64 {
        self.width
    }

    pub fn first_day(&self, bucket: usize) -> u64 {
        bucket as u64 * self.width + 1
    }

    pub fn last_day(&self, bucket: usize) -> u64 {
        ((bucket as u64 + 1) * self.width).min(self.days)
    }

    /// The bucket holding `day` (days past the last fall into the last bucket).
    fn of(&self, day: u64) -> usize {
        (day.saturating_sub(1) / self.width).min(self.len().saturating_sub(1) as u64) as usize
    }

    /// What each bucket adds to a cumulative function: `through(d)` is the amount over
    /// days `1..=d`, so the buckets sum to `through(days)` exactly.
    ///
    /// # Errors
    /// Whatever `through` returns.
    pub fn integrate<E>(
        &self,
        mut through: impl FnMut(u64) -> Result<u64, E>,
    ) -> Result<Vec<u64>, E> {
        let mut before = 0;
        (0..self.len())
            .map(|bucket| {
                let now = through(self.last_day(bucket))?;
                let added = now.saturating_sub(before);
                before = now;
                Ok(added)
            })
            .collect()
    }

    /// The value of a cumulative function at each bucket's last day.
    ///
    /// # Errors
    /// Whatever `through` returns.
    pub fn sample<E>(&self, mut through: impl FnMut(u64) -> Result<u64, E>) -> Result<Vec<u64>, E> {
        (0..self.len())
            .map(|bucket| through(self.last_day(bucket)))
            .collect()
    }
}

/// The numbers of the `count` profiles that used the most ice (ties: the lower number),
/// in ascending order, from the summary rows read one at a time: O(count) memory.
pub fn largest_profiles(
    rows: impl IntoIterator<Item = ProfileSummary>,
    count: usize,
) -> Vec<usize> {
    // A min-heap of the best so far: its top is the first to give way.
    let mut best = BinaryHeap::with_capacity(count + 1);
    for row in rows {
        best.push(Reverse((row.ice, Reverse(row.profile))));
        if best.len() > count {
            best.pop();
        }
    }
    let mut profiles: Vec<usize> = best
        .into_iter()
        .map(|Reverse((_, Reverse(profile)))| profile)
        .collect();
    profiles.sort_unstable();
    profiles
}

/// One team's row of the Gantt: per bucket, the profile it spent most of the bucket's
/// days on (0: idle) and how many sections it finished in it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct GanttRow {
    pub team: u64,
    pub profile: Vec<u32>,
    pub finished: Vec<u32>,
}

/// A line of the team log that is not in the form of WALL.md.
#[derive(Debug, thiserror::Error)]
#[error("the team log has a line not in the logged form: `{0}`")]
pub struct BadLogLine(String);

/// Folds a team log, fed a line at a time in log order, into Gantt rows for teams
/// `1..=rows`: memory is O(rows x buckets) whatever the length of the log.
pub struct GanttBuilder {
    buckets: Buckets,
    rows: Vec<GanttRow>,
    teams: Vec<TeamCursor>,
}

/// Takes `word` off the front of `rest`.
fn expect(rest: &mut &[u8], word: &[u8]) -> Option<()> {
    *rest = rest.strip_prefix(word)?;
    Some(())
}

/// Takes a decimal number (1 to 20 digits, no sign) off the front of `rest`.
fn number(rest: &mut &[u8]) -> Option<u64> {
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in &rest[..digits] {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    *rest = &rest[digits..];
    Some(value)
}

/// Where a team is in the log: the day it started its current section, and the run of
/// days on one profile in one bucket that is being counted.
#[derive(Clone, Copy)]
struct TeamCursor {
    working_since: u64,
    run_bucket: usize,
    run_profile: u32,
    run_days: u64,
    /// Days the bucket's current leading profile has (so ties keep the first).
    best_days: u64,
}

impl GanttBuilder {
    pub fn new(buckets: Buckets, rows: usize) -> GanttBuilder {
        let cursor = TeamCursor {
            working_since: 1,
            run_bucket: usize::MAX,
            run_profile: 0,
            run_days: 0,
            best_days: 0,
        };
        GanttBuilder {
            buckets,
            rows: (1..=rows as u64)
                .map(|team| GanttRow {
                    team,
                    profile: vec![0; buckets.len()],
                    finished: vec![0; buckets.len()],
                })
                .collect(),
            teams: vec![cursor; rows],
        }
    }

    /// Takes one line of the log (without its line end): `day D: team T finished
    /// section S of profile P` or `day D: team T relieved`. A team works on a section
    /// from the day after it finished the previous one (day 1 for its first). Parsed as
    /// bytes, without allocating: a log can have millions of lines.
    ///
    /// # Errors
    /// `BadLogLine` for a line in neither form.
    pub fn line(&mut self, line: &[u8]) -> Result<(), BadLogLine> {
        let bad = || BadLogLine(super::truncate_for_message(&String::from_utf8_lossy(line)));
        let mut rest = line;
        let day = expect(&mut rest, b"day ").and_then(|()| number(&mut rest));
        let team = expect(&mut rest, b": team ").and_then(|()| number(&mut rest));
        let (Some(day), Some(team)) = (day, team) else {
            return Err(bad());
        };
        if rest == b" relieved" {
            return Ok(());
        }
        let profile = expect(&mut rest, b" finished section ")
            .and_then(|()| number(&mut rest))
            .and_then(|_| expect(&mut rest, b" of profile "))
            .and_then(|()| number(&mut rest))
            .and_then(|profile| u32::try_from(profile).ok());
        match profile {
            Some(profile) if rest.is_empty() => {
                self.finished(day, team, profile);
                Ok(())
            }
            _ => Err(bad()),
        }
    }

    fn finished(&mut self, day: u64, team: u64, profile: u32) {
        let Some(index) = team.checked_sub(1).map(|index| index as usize) else {
            return;
        };
        if index >= self.rows.len() || self.buckets.is_empty() {
            return;
        }
        let start = self.teams[index].working_since.min(day);
        self.teams[index].working_since = day + 1;
        let (first, last) = (self.buckets.of(start), self.buckets.of(day));
        for bucket in first..=last {
            let from = start.max(self.buckets.first_day(bucket));
            let to = day.min(self.buckets.last_day(bucket));
            self.worked(index, bucket, profile, to + 1 - from);
        }
        let finished = &mut self.rows[index].finished[last];
        *finished = finished.saturating_add(1);
    }

    fn worked(&mut self, index: usize, bucket: usize, profile: u32, days: u64) {
        let cursor = &mut self.teams[index];
        if cursor.run_bucket != bucket {
            cursor.best_days = 0;
        }
        if cursor.run_bucket == bucket && cursor.run_profile == profile {
            cursor.run_days += days;
        } else {
            (cursor.run_bucket, cursor.run_profile, cursor.run_days) = (bucket, profile, days);
        }
        if cursor.run_days > cursor.best_days {
            cursor.best_days = cursor.run_days;
            self.rows[index].profile[bucket] = profile;
        }
    }

    pub fn finish(self) -> Vec<GanttRow> {
        self.rows
    }
}

#[cfg(test)]
mod tests;
