//! The ids of each status in creation order, so that a page of the job list walks only
//! the statuses it shows.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::Status;
use crate::jobs::JobId;

/// Which end of the list a page starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Oldest,
    Newest,
}

/// The ids of each status in creation order (v7 UUIDs sort by time). One set per status,
/// so that a filtered page walks only matching ids, and the whole list is their merge:
/// each id is kept once, which costs less than a set of all ids beside them.
#[derive(Default)]
pub(super) struct Index {
    pub(super) by_status: [BTreeSet<JobId>; 4],
}

impl Index {
    pub(super) fn set(&mut self, status: Status) -> &mut BTreeSet<JobId> {
        &mut self.by_status[status as usize]
    }

    /// The ids of `statuses` in `order`, strictly beyond `after`: each set is read from
    /// the cursor on, and the next id is the first of their heads.
    pub(super) fn walk(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
    ) -> impl Iterator<Item = JobId> + '_ {
        let mut heads: Vec<_> = statuses
            .iter()
            .map(|&status| {
                let set = &self.by_status[status as usize];
                let ids: Box<dyn Iterator<Item = &JobId>> = match (order, after) {
                    (Order::Oldest, None) => Box::new(set.iter()),
                    (Order::Oldest, Some(after)) => {
                        Box::new(set.range((Bound::Excluded(after), Bound::Unbounded)))
                    }
                    (Order::Newest, None) => Box::new(set.iter().rev()),
                    (Order::Newest, Some(after)) => Box::new(set.range(..after).rev()),
                };
                ids.copied().peekable()
            })
            .collect();
        std::iter::from_fn(move || {
            let next = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(at, ids)| ids.peek().map(|&id| (at, id)))
                .reduce(|first, other| match (order, other.1 < first.1) {
                    (Order::Oldest, true) | (Order::Newest, false) => other,
                    _ => first,
                })?;
            heads[next.0].next()
        })
    }
}
