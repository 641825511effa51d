//! Requests waiting for a job to finish (`?wait`): one notification per job, kept only
//! while somebody listens to it, however the wait ends.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::JobId;

#[derive(Default)]
pub(super) struct Waiters {
    listening: DashMap<JobId, Arc<Notify>>,
}

impl Waiters {
    /// Listens for the next `wake` of `id`, until the listener is dropped.
    pub(super) fn listen(&self, id: JobId) -> Listener<'_> {
        // Cloned under the map's lock: a listener that leaves meanwhile sees this one.
        let notify = Arc::clone(self.listening.entry(id).or_default().value());
        Listener {
            waiters: self,
            id,
            notify: Some(notify),
        }
    }

    /// Answers every request listening to `id`: the job finished or left the queue.
    /// Later listeners wait for the next wake.
    pub(super) fn wake(&self, id: JobId) {
        if let Some((_, notify)) = self.listening.remove(&id) {
            notify.notify_waiters();
        }
    }

    #[cfg(test)]
    fn jobs_listened_to(&self) -> usize {
        self.listening.len()
    }
}

/// One request's interest in a job's wake.
pub(super) struct Listener<'a> {
    waiters: &'a Waiters,
    id: JobId,
    /// `None` only while the listener is dropped.
    notify: Option<Arc<Notify>>,
}

impl Listener<'_> {
    /// The next wake, heard from the moment the returned future is enabled (or first
    /// polled).
    pub(super) fn notified(&self) -> Notified<'_> {
        self.notify.as_ref().expect("set until dropped").notified()
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        // This listener's reference goes first, so that of two listeners leaving at
        // once, the later one sees the entry held by the map alone and removes it.
        drop(self.notify.take());
        self.waiters
            .listening
            .remove_if(&self.id, |_, notify| Arc::strong_count(notify) == 1);
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn id(n: u128) -> JobId {
        JobId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_listener_that_leaves_without_a_wake_takes_its_entry_with_it() {
        let waiters = Waiters::default();
        let first = waiters.listen(id(1));
        let second = waiters.listen(id(1));
        drop(first);
        assert_eq!(waiters.jobs_listened_to(), 1, "the second still listens");
        drop(second);
        assert_eq!(waiters.jobs_listened_to(), 0);
    }

    #[test]
    fn a_wake_reaches_every_listener_of_its_job_and_no_other() {
        let waiters = Waiters::default();
        let (first, second, other) = (
            waiters.listen(id(1)),
            waiters.listen(id(1)),
            waiters.listen(id(2)),
        );
        let mut context = Context::from_waker(Waker::noop());
        let mut heard = [first.notified(), second.notified(), other.notified()].map(Box::pin);
        for notified in &mut heard {
            notified.as_mut().enable();
        }
        waiters.wake(id(1));
        let polled: Vec<bool> = heard
            .iter_mut()
            .map(|notified| notified.as_mut().poll(&mut context).is_ready())
            .collect();
        assert_eq!(polled, [true, true, false]);
        drop(heard);
        drop((first, second));
        assert_eq!(waiters.jobs_listened_to(), 1, "job 2 is still listened to");
        drop(other);
        assert_eq!(waiters.jobs_listened_to(), 0);
        // A listener after the wake waits for the next one.
        let late = waiters.listen(id(1));
        let mut notified = pin!(late.notified());
        assert_eq!(notified.as_mut().poll(&mut context), Poll::Pending);
    }
}
