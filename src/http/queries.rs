//! The day-by-day questions, asked of a finished job or of the server's own wall: path
//! numbers are parsed here (400 unless a positive integer) and answered from the work
//! tables (404 for a profile out of range).

use serde::Serialize;

use super::ApiError;
use super::bodies::{CostAnswer, IceAnswer};
use super::lookup::decimal;
use crate::wall::{COST_PER_FOOT, ICE_PER_FOOT, Table, WorkSource};

/// One question of API.md's query table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Question {
    /// `ice(p, d)`
    Ice { profile: usize, day: u64 },
    /// `cost(p, <=d)`
    ProfileCost { profile: usize, day: u64 },
    /// `cost(all, <=d)`
    WallCost { day: u64 },
    /// `cost(all)`
    TotalCost,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Answer {
    Ice(IceAnswer),
    Cost(CostAnswer),
}

impl Question {
    pub fn ice(profile: &str, day: &str) -> Result<Question, ApiError> {
        Ok(Question::Ice {
            profile: positive("profile", profile)?,
            day: positive("day", day)?,
        })
    }

    pub fn profile_cost(profile: &str, day: &str) -> Result<Question, ApiError> {
        Ok(Question::ProfileCost {
            profile: positive("profile", profile)?,
            day: positive("day", day)?,
        })
    }

    pub fn wall_cost(day: &str) -> Result<Question, ApiError> {
        Ok(Question::WallCost {
            day: positive("day", day)?,
        })
    }

    /// Answers from the daily work wherever it is kept, reading O(log steps) steps.
    ///
    /// # Errors
    /// `NotFound` when the profile does not exist; whatever reading the steps returns;
    /// `Internal` when the stored numbers overflow (a damaged result).
    pub fn answer<W: WorkSource>(self, work: &W) -> Result<Answer, ApiError>
    where
        ApiError: From<W::Error>,
    {
        let profile_table = |profile: usize| {
            let count = work.profile_count();
            if (1..=count).contains(&profile) {
                Ok(Table::Profile(profile))
            } else {
                Err(ApiError::NotFound(format!(
                    "profile {profile} does not exist; the wall has {count} profiles"
                )))
            }
        };
        let feet_through = |table, day| -> Result<u64, ApiError> {
            work.step_on(table, day)?
                .map_or(Some(0), |step| step.feet_through(day))
                .ok_or_else(overflow)
        };
        let cost = |feet: u64| feet.checked_mul(COST_PER_FOOT).ok_or_else(overflow);
        Ok(match self {
            Question::Ice { profile, day } => {
                let active = work
                    .step_on(profile_table(profile)?, day)?
                    .map_or(0, |step| step.active);
                Answer::Ice(IceAnswer {
                    day,
                    ice_amount: active.checked_mul(ICE_PER_FOOT).ok_or_else(overflow)?,
                })
            }
            Question::ProfileCost { profile, day } => Answer::Cost(CostAnswer {
                day: Some(day),
                cost: cost(feet_through(profile_table(profile)?, day)?)?,
            }),
            Question::WallCost { day } => Answer::Cost(CostAnswer {
                day: Some(day),
                cost: cost(feet_through(Table::Wall, day)?)?,
            }),
            // The last step is idle: the feet through the last possible day are the total.
            Question::TotalCost => Answer::Cost(CostAnswer {
                day: None,
                cost: cost(feet_through(Table::Wall, u64::MAX)?)?,
            }),
        })
    }
}

fn overflow() -> ApiError {
    ApiError::Internal("the stored result is damaged: its numbers overflow".to_owned())
}

/// A positive decimal integer of at most 2^63 - 1 (the range of the schema's int64,
/// far beyond any wall); anything else is a 400 naming it.
fn positive<T: TryFrom<u64>>(name: &str, text: &str) -> Result<T, ApiError> {
    let value = decimal(text)
        .filter(|value| (1..=i64::MAX as u64).contains(value))
        .and_then(|value| T::try_from(value).ok());
    value.ok_or_else(|| {
        let shown = crate::wall::truncate_for_message(text);
        ApiError::BadRequest(format!(
            "{name} must be a positive integer of at most {}, got `{shown}`",
            i64::MAX
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_numbers_must_be_positive_integers() {
        assert_eq!(positive::<u64>("day", "7").unwrap(), 7);
        for text in [
            "0",
            "-1",
            "x",
            "",
            "+1",
            "1.5",
            "99999999999999999999",
            " 1",
        ] {
            let error = positive::<u64>("day", text).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("day must be a positive integer"),
                "{text}"
            );
        }
    }
}
