//! The ids of each status in creation order, so that a page of the job list walks only
//! the statuses it shows; the finished jobs' store is its own index of them.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::Status;
use super::finished::FinishedJobs;
use crate::jobs::JobId;

/// Which end of the list a page starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Oldest,
    Newest,
}

/// The ids of each status in creation order (v7 UUIDs sort by time): the jobs in flight
/// in one set per status, the finished jobs whole (in `finished`). A filtered page walks
/// only matching ids, and the whole list is their merge: each id is kept once.
#[derive(Default)]
pub(super) struct Index {
    queued: BTreeSet<JobId>,
    running: BTreeSet<JobId>,
    pub(super) finished: FinishedJobs,
}

impl Index {
    /// The ids of the jobs running, or of those queued.
    pub(super) fn in_flight(&mut self, running: bool) -> &mut BTreeSet<JobId> {
        if running {
            &mut self.running
        } else {
            &mut self.queued
        }
    }

    /// Jobs known of each status, in `Status::ALL` order.
    pub(super) fn counts(&self) -> [usize; 4] {
        [
            self.queued.len(),
            self.running.len(),
            self.finished.done_len(),
            self.finished.failed_len(),
        ]
    }

    /// The ids of `statuses` in `order`, strictly beyond `after`: each status is read
    /// from the cursor on, and the next id is the first of their heads.
    pub(super) fn walk(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
    ) -> impl Iterator<Item = JobId> + '_ {
        let mut heads: Vec<_> = statuses
            .iter()
            .map(|&status| {
                let ids = match status {
                    Status::Queued => in_order(order, after, |ids| self.queued.range(ids)),
                    Status::Running => in_order(order, after, |ids| self.running.range(ids)),
                    Status::Done => self.finished.done_ids(order, after),
                    Status::Failed => self.finished.failed_ids(order, after),
                };
                ids.peekable()
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

/// The ids of an ordered collection in `order`, strictly beyond `after`; `range` gives
/// its ids within bounds (a set's or a map's keys).
pub(super) fn in_order<'a, Ids>(
    order: Order,
    after: Option<JobId>,
    range: impl FnOnce((Bound<JobId>, Bound<JobId>)) -> Ids,
) -> Box<dyn Iterator<Item = JobId> + 'a>
where
    Ids: DoubleEndedIterator<Item = &'a JobId> + 'a,
{
    let beyond = after.map_or(Bound::Unbounded, Bound::Excluded);
    match order {
        Order::Oldest => Box::new(range((beyond, Bound::Unbounded)).copied()),
        Order::Newest => Box::new(range((Bound::Unbounded, beyond)).rev().copied()),
    }
}
