//! The daily work built as a schedule unfolds: the engine reports each change in the
//! number of sections under work, day by day, and only the steps are kept.

use super::{DailyWork, StepColumns};

/// Builds a `DailyWork` from the changes in the number of sections under work, given
/// in day order as a schedule unfolds, so that no list of the sections' work intervals
/// has to be kept.
#[derive(Clone, Debug, Default)]
pub(crate) struct DailyWorkBuilder {
    steps: StepColumns,
    /// The day whose changes are being gathered; `active` counts them in.
    day: Option<u64>,
    active: u64,
}

impl DailyWorkBuilder {
    /// `count` sections grow from `day` on. Days never go back.
    pub(crate) fn start(&mut self, day: u64, count: u64) {
        self.move_to(day);
        self.active += count;
    }

    /// `count` of the growing sections add no feet from `day` on (the day after their
    /// last). Days never go back.
    pub(crate) fn stop(&mut self, day: u64, count: u64) {
        self.move_to(day);
        self.active = self
            .active
            .checked_sub(count)
            .expect("no more sections stop than grow");
    }

    /// `change` more sections grow from `day` on, or fewer if it is negative; nothing
    /// changes for 0. Days never go back.
    pub(crate) fn change(&mut self, day: u64, change: i64) {
        match change.cmp(&0) {
            std::cmp::Ordering::Greater => self.start(day, change.unsigned_abs()),
            std::cmp::Ordering::Less => self.stop(day, change.unsigned_abs()),
            std::cmp::Ordering::Equal => {}
        }
    }

    pub(crate) fn finish(mut self) -> DailyWork {
        self.close_day();
        DailyWork { steps: self.steps }
    }

    fn move_to(&mut self, day: u64) {
        debug_assert!(self.day.is_none_or(|current| current <= day));
        if self.day != Some(day) {
            self.close_day();
            self.day = Some(day);
        }
    }

    /// A new step only where the number of growing sections changes, so that back to
    /// back intervals make one step and nothing before the first start makes one.
    fn close_day(&mut self) {
        let Some(day) = self.day else { return };
        let steps = &mut self.steps;
        if self.active == steps.active.last().copied().unwrap_or(0) {
            return;
        }
        let feet_before = match (steps.starts.last(), steps.active.last()) {
            (Some(&start), Some(&was_active)) => {
                steps.feet_before.last().copied().unwrap_or(0) + was_active * (day - start)
            }
            _ => 0,
        };
        steps.starts.push(day);
        steps.active.push(self.active);
        steps.feet_before.push(feet_before);
    }
}
