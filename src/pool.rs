//! The hand-written thread pool: a fixed set of named workers taking tasks from a
//! queue behind a `parking_lot::Mutex`, woken by a `Condvar`.
//!
//! A panicking task is caught and leaves its worker alive (the Book's pool would lose
//! it); `shutdown` stops intake, lets the workers drain the queue, and joins them.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use parking_lot::{Condvar, Mutex};

/// Work for one worker thread.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// Why a task was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// A fixed-size pool; cheap to share behind an `Arc`.
pub struct JobPool {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    task_available: Condvar,
    /// Workers in their loop: each counts itself in as it starts and out as it stops at
    /// shutdown; no task can end one (see `work`), so in between this is the pool's
    /// size. `icewall_workers` reports it.
    live_workers: AtomicUsize,
}

struct Queue {
    tasks: VecDeque<Task>,
    accepting: bool,
}

impl JobPool {
    /// Starts `workers` threads named `{name}-{n}`.
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn start(name: &str, workers: usize) -> io::Result<JobPool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                tasks: VecDeque::new(),
                accepting: true,
            }),
            task_available: Condvar::new(),
            live_workers: AtomicUsize::new(0),
        });
        let pool = JobPool {
            shared: Arc::clone(&shared),
            workers: Mutex::new(Vec::with_capacity(workers)),
        };
        for index in 1..=workers.max(1) {
            // Counted before the thread runs: the pool's size is known from `start` on,
            // not once each thread has been scheduled.
            shared.live_workers.fetch_add(1, Ordering::SeqCst);
            let worker = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || worker.work())
                .inspect_err(|_| {
                    shared.live_workers.fetch_sub(1, Ordering::SeqCst);
                })?;
            pool.workers.lock().push(handle);
        }
        Ok(pool)
    }

    /// Queues a task unless the pool is shutting down. The queue has no bound of its
    /// own: the job service bounds the jobs waiting (`--max-queue`) before it makes one
    /// durable, and a durable job must run whatever the queue's size.
    ///
    /// # Errors
    /// `ShuttingDown`.
    pub fn submit(&self, task: Task) -> Result<(), PoolError> {
        let mut queue = self.shared.queue.lock();
        if !queue.accepting {
            return Err(PoolError::ShuttingDown);
        }
        queue.tasks.push_back(task);
        drop(queue);
        self.shared.task_available.notify_one();
        Ok(())
    }

    pub fn live_workers(&self) -> usize {
        self.shared.live_workers.load(Ordering::SeqCst)
    }

    /// Stops intake, lets the workers finish every queued task, and joins them. Safe to
    /// call more than once; later calls return at once.
    pub fn shutdown(&self) {
        self.shared.queue.lock().accepting = false;
        self.shared.task_available.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock());
        for worker in workers {
            // A worker never panics (tasks are caught), so join only fails on a bug.
            let _ = worker.join();
        }
    }
}

impl Drop for JobPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn work(&self) {
        while let Some(task) = self.next_task() {
            // The task reports its own failure; catching here only keeps the worker.
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(task)) {
                // Dropping the payload runs code the task chose (its `Drop`), which may
                // panic too and would unwind out of the worker: that payload is leaked.
                if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                    std::mem::forget(again);
                }
            }
        }
        self.live_workers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Blocks until a task is queued; `None` once the pool is shut down and drained.
    /// The guard lives only inside this call, so tasks run with the lock released.
    fn next_task(&self) -> Option<Task> {
        let mut queue = self.queue.lock();
        loop {
            if let Some(task) = queue.tasks.pop_front() {
                return Some(task);
            }
            if !queue.accepting {
                return None;
            }
            self.task_available.wait(&mut queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn shutdown_drains_every_queued_task() {
        let pool = JobPool::start("test", 2).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..200 {
            let done = Arc::clone(&done);
            pool.submit(Box::new(move || {
                thread::sleep(Duration::from_micros(200));
                done.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
        pool.shutdown();
        assert_eq!(done.load(Ordering::SeqCst), 200);
        assert_eq!(pool.live_workers(), 0);
        assert_eq!(pool.submit(Box::new(|| ())), Err(PoolError::ShuttingDown));
    }

    #[test]
    fn no_wakeup_is_lost_with_many_producers_and_few_workers() {
        let pool = Arc::new(JobPool::start("test", 2).unwrap());
        let (sender, receiver) = mpsc::channel();
        let producers: Vec<_> = (0..8)
            .map(|_| {
                let pool = Arc::clone(&pool);
                let sender = sender.clone();
                thread::spawn(move || {
                    for _ in 0..2000 {
                        let sender = sender.clone();
                        pool.submit(Box::new(move || sender.send(()).unwrap()))
                            .unwrap();
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        // Every task runs without shutdown's help: a lost wake-up would stall here.
        for _ in 0..16_000 {
            receiver
                .recv_timeout(Duration::from_secs(10))
                .expect("a queued task was never run");
        }
        pool.shutdown();
    }

    #[test]
    fn the_pool_counts_its_workers_from_the_start() {
        let pool = JobPool::start("test", 4).unwrap();
        assert_eq!(pool.live_workers(), 4);
        pool.shutdown();
        assert_eq!(pool.live_workers(), 0);
    }

    #[test]
    fn a_panicking_task_leaves_the_pool_at_full_size() {
        let pool = JobPool::start("test", 2).unwrap();
        for _ in 0..10 {
            pool.submit(Box::new(|| panic!("a task that fails")))
                .unwrap();
        }
        let (sender, receiver) = mpsc::channel();
        for _ in 0..10 {
            let sender = sender.clone();
            pool.submit(Box::new(move || sender.send(()).unwrap()))
                .unwrap();
        }
        for _ in 0..10 {
            receiver.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(pool.live_workers(), 2);
        pool.shutdown();
    }

    /// A panic payload whose own drop panics.
    struct PanicsOnDrop;

    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("the payload's drop panics too");
        }
    }

    #[test]
    fn a_panic_whose_payload_panics_on_drop_does_not_cost_the_worker() {
        let pool = JobPool::start("test", 1).unwrap();
        pool.submit(Box::new(|| panic::panic_any(PanicsOnDrop)))
            .unwrap();
        let (sender, receiver) = mpsc::channel();
        pool.submit(Box::new(move || sender.send(()).unwrap()))
            .unwrap();
        receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("the only worker still runs tasks");
        assert_eq!(pool.live_workers(), 1);
        pool.shutdown();
    }

    #[test]
    fn tasks_wait_while_the_worker_is_busy_and_shutdown_runs_them() {
        let pool = JobPool::start("test", 1).unwrap();
        let (release, blocked) = mpsc::channel::<()>();
        let (started, is_started) = mpsc::channel();
        pool.submit(Box::new(move || {
            started.send(()).unwrap();
            blocked.recv().unwrap();
        }))
        .unwrap();
        is_started.recv().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let done = Arc::clone(&done);
            pool.submit(Box::new(move || {
                done.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 0, "the one worker is busy");
        release.send(()).unwrap();
        pool.shutdown();
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }
}
