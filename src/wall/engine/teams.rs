//! Limited teams: each day with finishes, its teams take the next sections in order,
//! found in O(1) on a calendar of the next 32 days, so that the whole schedule costs
//! O(sections + teams) whatever the number of days.

use super::{Section, unfinished_sections};
use crate::wall::work::{DailyWorkBuilder, WorkTables};
use crate::wall::{LogEvent, MAX_HEIGHT, WallConfig};

/// Limited teams (`teams` < number of unfinished sections). Each day with finishes,
/// its teams, by number, finish and take the next sections in order. Each start and
/// finish goes straight into the tables, and each finish to `finished` (which keeps the
/// log, if one is asked for): nothing per section is stored.
pub(super) fn schedule_teams(
    config: &WallConfig,
    teams: usize,
    mut finished: impl FnMut(LogEvent),
) -> WorkTables {
    if teams == 1 {
        return schedule_one_team(config, finished);
    }
    let mut queue = unfinished_sections(config);
    let mut calendar = Calendar::new(teams);
    let mut changes = DailyChanges::new(config.profiles().len());
    let mut holding: Vec<Section> = (1..=teams as u32)
        .map(|team| {
            let section = queue.next().expect("fewer teams than unfinished sections");
            changes.begin(section.profile);
            calendar.mark(team, u64::from(section.feet));
            section
        })
        .collect();
    changes.apply(1);
    while let Some(today) = calendar.next_day() {
        // Today's teams, by number, straight from the calendar's bits: they take their
        // next sections on days to come, never today, so the bits read stay unchanged.
        for word in 0..calendar.words_per_slot {
            let mut finishing = calendar.take(today, word);
            while finishing != 0 {
                let team = (word * 64) as u32 + finishing.trailing_zeros() + 1;
                finishing &= finishing - 1;
                let held = &mut holding[team as usize - 1];
                let next = queue.next();
                finished(LogEvent {
                    day: today,
                    team,
                    profile: held.profile + 1,
                    section: held.number,
                    relieved: next.is_none(),
                });
                match next {
                    Some(section) => {
                        changes.hand_over(held.profile, section.profile);
                        calendar.mark(team, today + u64::from(section.feet));
                        *held = section;
                    }
                    None => changes.relieve(held.profile),
                }
            }
        }
        changes.apply(today + 1);
    }
    changes.finish()
}

/// One team builds the sections one after another, each finished as many days after
/// the one before as it needs feet. The calendar would give the same, but each finish
/// would then wait on its bookkeeping of the one before, which doubles the cost of the
/// loop.
fn schedule_one_team(config: &WallConfig, mut finished: impl FnMut(LogEvent)) -> WorkTables {
    let mut queue = unfinished_sections(config);
    let mut changes = DailyChanges::new(config.profiles().len());
    let mut held = queue.next().expect("fewer teams than unfinished sections");
    changes.begin(held.profile);
    changes.apply(1);
    let mut today = 0;
    loop {
        today += u64::from(held.feet);
        let next = queue.next();
        finished(LogEvent {
            day: today,
            team: 1,
            profile: held.profile + 1,
            section: held.number,
            relieved: next.is_none(),
        });
        let Some(section) = next else {
            changes.relieve(held.profile);
            changes.apply(today + 1);
            return changes.finish();
        };
        changes.hand_over(held.profile, section.profile);
        changes.apply(today + 1);
        held = section;
    }
}

/// The teams' days to come. Every pending finish lies within the next 30 days, so a
/// calendar of 32 day slots (a bit set marks the busy ones) finds the next day with
/// finishes in O(1). Each slot holds its teams as a bit set, which gives them in team
/// order without sorting: a day costs O(teams / 64) words, and the whole schedule
/// O(sections + teams).
struct Calendar {
    /// Bit `team - 1` of slot `day % SLOTS` is set when that team finishes on that day:
    /// bit `(team - 1) % 64` of `slots[(team - 1) / 64 * SLOTS + slot]`, an index found
    /// with shifts alone.
    slots: Vec<u64>,
    words_per_slot: usize,
    busy_slots: u32,
    today: u64,
}

const _: () = assert!(Calendar::SLOTS > MAX_HEIGHT as usize);

impl Calendar {
    const SLOTS: usize = 32;

    fn new(teams: usize) -> Calendar {
        let words_per_slot = teams.div_ceil(64);
        Calendar {
            slots: vec![0; Self::SLOTS * words_per_slot],
            words_per_slot,
            busy_slots: 0,
            today: 0,
        }
    }

    fn slot_of(day: u64) -> usize {
        (day % Self::SLOTS as u64) as usize
    }

    /// `team` finishes on `day`, which is 1 to 30 days after today.
    fn mark(&mut self, team: u32, day: u64) {
        let slot = Self::slot_of(day);
        let bit = team as usize - 1;
        self.slots[bit / 64 * Self::SLOTS + slot] |= 1 << (bit % 64);
        self.busy_slots |= 1 << slot;
    }

    /// Moves to the next day on which teams finish and returns it; `None` once no team
    /// is at work. Its teams are then read a word at a time with `take`.
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
    fn take(&mut self, day: u64, word: usize) -> u64 {
        std::mem::take(&mut self.slots[word * Self::SLOTS + Self::slot_of(day)])
    }
}

/// The tables so far, and the change a day's hand-overs make to the number of growing
/// sections of each profile. A hand-over adds one to the profile it moves to and takes
/// one from the profile it leaves, which within a profile cancels out without a branch;
/// the tables are told the sums once the day is done, each at most once, and not at all
/// on the many days (with few teams, nearly all) when every team stayed in its profile.
struct DailyChanges {
    wall: DailyWorkBuilder,
    profiles: Vec<DailyWorkBuilder>,
    /// Today's change of each profile; 0 outside `first..=last`.
    change: Vec<i64>,
    /// Today's change of the whole wall, where only a team's first section and its
    /// relief count.
    wall_change: i64,
    /// The profiles that may have changed today: from the first section left to the
    /// last taken. The range is never wider than what the queue passes in the 30 days a
    /// section can last, so reading it costs O(profiles) over the whole schedule, at
    /// most 31 times over.
    first: usize,
    last: usize,
    /// Whether any team left a profile today, or began, or was relieved.
    moved: bool,
}

impl DailyChanges {
    fn new(profiles: usize) -> DailyChanges {
        DailyChanges {
            wall: DailyWorkBuilder::default(),
            profiles: vec![DailyWorkBuilder::default(); profiles],
            change: vec![0; profiles],
            wall_change: 0,
            first: usize::MAX,
            last: 0,
            moved: false,
        }
    }

    /// A team takes its first section, in `profile`.
    fn begin(&mut self, profile: u32) {
        self.widen(profile as usize, profile as usize);
        self.change[profile as usize] += 1;
        self.wall_change += 1;
        self.moved = true;
    }

    /// A team leaves a section of profile `from` for one of profile `to`, which is never
    /// an earlier one.
    fn hand_over(&mut self, from: u32, to: u32) {
        self.widen(from as usize, to as usize);
        self.change[from as usize] -= 1;
        self.change[to as usize] += 1;
        self.moved |= from != to;
    }

    /// A team leaves a section of `profile` with nothing left to take.
    fn relieve(&mut self, profile: u32) {
        self.widen(profile as usize, profile as usize);
        self.change[profile as usize] -= 1;
        self.wall_change -= 1;
        self.moved = true;
    }

    fn widen(&mut self, first: usize, last: usize) {
        self.first = self.first.min(first);
        self.last = self.last.max(last);
    }

    /// The changes of the day just done take effect from `day`. Inlined, since with few
    /// teams it runs once per section and nearly always only resets the range.
    #[inline(always)]
    fn apply(&mut self, day: u64) {
        if self.moved {
            self.tell_tables(day);
        }
        (self.first, self.last) = (usize::MAX, 0);
    }

    fn tell_tables(&mut self, day: u64) {
        for profile in self.first..=self.last {
            let change = std::mem::take(&mut self.change[profile]);
            self.profiles[profile].change(day, change);
        }
        self.wall.change(day, std::mem::take(&mut self.wall_change));
        self.moved = false;
    }

    fn finish(self) -> WorkTables {
        WorkTables {
            profiles: self
                .profiles
                .into_iter()
                .map(DailyWorkBuilder::finish)
                .collect(),
            wall: self.wall.finish(),
        }
    }
}
