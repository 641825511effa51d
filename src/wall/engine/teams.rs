//! Limited teams: each day with finishes, its teams take the next sections in order,
//! found in O(1) on a calendar of the next 32 days, so that the whole schedule costs
//! O(sections + teams) whatever the number of days.

use super::{Section, unfinished_sections};
use crate::wall::work::{DailyWorkBuilder, WorkTables};
use crate::wall::{LogEvent, MAX_HEIGHT, WallConfig};

/// Limited teams (`teams` < number of unfinished sections). Each day with finishes,
/// its teams, by number, finish and take the next sections in order. Each start and
/// finish goes straight into the tables (and the log, if kept): nothing per section is
/// stored.
pub(super) fn schedule_teams(
    config: &WallConfig,
    teams: usize,
    unfinished: usize,
    mut log: Option<&mut Vec<LogEvent>>,
) -> WorkTables {
    if let Some(log) = log.as_mut() {
        log.reserve_exact(unfinished);
    }
    let mut queue = unfinished_sections(config);
    let mut plan = TeamPlan::new(config.profiles().len(), teams);
    let mut holding: Vec<Section> = (1..=teams as u32)
        .map(|team| {
            let section = queue.next().expect("fewer teams than unfinished sections");
            plan.begin(team, section);
            section
        })
        .collect();
    while let Some(today) = plan.next_day() {
        // Today's teams, by number, straight from the calendar's bits: they take their
        // next sections on days to come, never today, so the bits read stay unchanged.
        for word in 0..plan.words_per_slot {
            let mut finishing = plan.take_finishing(today, word);
            while finishing != 0 {
                let team = (word * 64) as u32 + finishing.trailing_zeros() + 1;
                finishing &= finishing - 1;
                let held = &mut holding[team as usize - 1];
                let next = queue.next();
                if let Some(log) = log.as_mut() {
                    log.push(LogEvent {
                        day: today,
                        team,
                        profile: held.profile + 1,
                        section: held.number,
                        relieved: next.is_none(),
                    });
                }
                plan.hand_over(team, *held, next, today);
                if let Some(section) = next {
                    *held = section;
                }
            }
        }
    }
    WorkTables {
        profiles: plan
            .profiles
            .into_iter()
            .map(DailyWorkBuilder::finish)
            .collect(),
        wall: plan.wall.finish(),
    }
}

/// The teams' days to come and the tables so far. Every pending finish lies within the
/// next 30 days, so a calendar of 32 day slots (a bit set marks the busy ones) finds
/// the next day with finishes in O(1). Each slot holds its teams as a bit set, which
/// gives them in team order without sorting: a day costs O(teams / 64) words, and the
/// whole schedule O(sections + teams).
struct TeamPlan {
    wall: DailyWorkBuilder,
    profiles: Vec<DailyWorkBuilder>,
    /// Bit `team - 1` of slot `day % SLOTS` is set when that team finishes on that day;
    /// the slot's bits are `calendar[slot * words_per_slot..][..words_per_slot]`.
    calendar: Vec<u64>,
    words_per_slot: usize,
    busy_slots: u32,
    today: u64,
}

const _: () = assert!(TeamPlan::SLOTS > MAX_HEIGHT as usize);

impl TeamPlan {
    const SLOTS: usize = 32;

    fn new(profiles: usize, teams: usize) -> TeamPlan {
        let words_per_slot = teams.div_ceil(64);
        TeamPlan {
            wall: DailyWorkBuilder::default(),
            profiles: vec![DailyWorkBuilder::default(); profiles],
            calendar: vec![0; Self::SLOTS * words_per_slot],
            words_per_slot,
            busy_slots: 0,
            today: 0,
        }
    }

    fn slot_of(day: u64) -> usize {
        (day % Self::SLOTS as u64) as usize
    }

    /// `team` builds `section` from day 1 on.
    fn begin(&mut self, team: u32, section: Section) {
        self.wall.start(1, 1);
        self.profiles[section.profile as usize].start(1, 1);
        self.mark_finish(team, u64::from(section.feet));
    }

    /// `team` finishes `done` at the end of `day` and takes `next`, if there is one, the
    /// day after. Only the tables whose number of growing sections changes are told: a
    /// hand-over within a profile changes none, and the wall's only when a team is
    /// relieved.
    fn hand_over(&mut self, team: u32, done: Section, next: Option<Section>, day: u64) {
        let from = day + 1;
        match next {
            Some(next) if next.profile == done.profile => {}
            Some(next) => {
                self.profiles[done.profile as usize].stop(from, 1);
                self.profiles[next.profile as usize].start(from, 1);
            }
            None => {
                self.wall.stop(from, 1);
                self.profiles[done.profile as usize].stop(from, 1);
            }
        }
        if let Some(next) = next {
            self.mark_finish(team, day + u64::from(next.feet));
        }
    }

    fn mark_finish(&mut self, team: u32, day: u64) {
        let slot = Self::slot_of(day);
        let bit = team as usize - 1;
        self.calendar[slot * self.words_per_slot + bit / 64] |= 1 << (bit % 64);
        self.busy_slots |= 1 << slot;
    }

    /// Moves to the next day on which teams finish and returns it; `None` once no team
    /// is at work. Its teams are then read a word at a time with `take_finishing`.
    fn next_day(&mut self) -> Option<u64> {
        if self.busy_slots == 0 {
            return None;
        }
        // Bit i of the rotated set is the day `today + 1 + i`.
        let ahead = self
            .busy_slots
            .rotate_right(Self::slot_of(self.today + 1) as u32)
            .trailing_zeros();
        self.today += 1 + u64::from(ahead);
        self.busy_slots &= !(1 << Self::slot_of(self.today));
        Some(self.today)
    }

    /// Word `word` of `day`'s teams (bit i is team `word * 64 + i + 1`), cleared from
    /// the calendar.
    fn take_finishing(&mut self, day: u64, word: usize) -> u64 {
        std::mem::take(&mut self.calendar[Self::slot_of(day) * self.words_per_slot + word])
    }
}
