//! The worker pool: a fixed set of threads that call the robot, so the event loop never waits.
//!
//! Jobs go in through a bounded channel (a full channel is the server's "robot is busy"); answers
//! go back to the event loop that asked ([`Job::origin`]: a server may run several loops) through
//! that loop's own unbounded channel, and the loop is woken through its `mio::Waker`. Wakes are
//! merged: a worker only wakes a loop if no wake is already pending there, and the loop takes
//! every completion there is on each wake, so a burst of answers costs one wake-up, not one per
//! answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use super::{call_robot, Robot, RobotError, RobotStats};

/// One message for the robot. `ticket` is the caller's own tag, returned with the answer.
#[derive(Debug)]
pub struct Job {
    /// Identifies who asked (the server packs the connection's slab key and generation in it).
    pub ticket: u64,
    /// Which event loop gets the answer: an index into the wakers the pool was started with.
    pub origin: usize,
    /// The username.
    pub user: String,
    /// The message text.
    pub text: String,
}

/// The robot's answer to one [`Job`].
#[derive(Debug)]
pub struct Completion {
    /// The job's ticket.
    pub ticket: u64,
    /// The reply, or why there is none.
    pub result: Result<String, RobotError>,
}

/// Why a job was not taken.
#[derive(Debug)]
pub enum SubmitError {
    /// Every worker is busy and the queue is full.
    Full(Job),
    /// The workers are gone (only while the pool is being dropped).
    Closed(Job),
}

/// A fixed pool of robot worker threads. Clones share the same workers and queue; the workers
/// end when the last clone is dropped.
#[derive(Clone)]
pub struct WorkerPool {
    jobs: Sender<Job>,
    workers: usize,
    stats: Arc<RobotStats>,
}

/// One event loop's side of the pool: where its answers arrive.
pub struct Completions {
    receiver: Receiver<Completion>,
    wake_pending: Arc<AtomicBool>,
}

/// Where a worker delivers the answers for one loop.
struct Route {
    done: Sender<Completion>,
    waker: Arc<Waker>,
    wake_pending: Arc<AtomicBool>,
}

impl WorkerPool {
    /// Starts `workers` threads calling `robot`, with room for `queue` jobs waiting for a worker,
    /// answering the loops woken by `wakers` (a job's `origin` indexes them). Each reply is held
    /// back by `delay` (zero for none), a stand-in for a slow robot in tests and load tests.
    /// Returns the pool and, for each waker in order, where that loop's answers arrive.
    pub fn start(
        robot: Arc<dyn Robot>,
        workers: usize,
        queue: usize,
        delay: Duration,
        wakers: Vec<Arc<Waker>>,
        stats: Arc<RobotStats>,
    ) -> std::io::Result<(Self, Vec<Completions>)> {
        let (jobs, job_rx) = crossbeam_channel::bounded::<Job>(queue);
        let mut routes = Vec::with_capacity(wakers.len());
        let mut completions = Vec::with_capacity(wakers.len());
        for waker in wakers {
            let (done, receiver) = crossbeam_channel::unbounded();
            let wake_pending = Arc::new(AtomicBool::new(false));
            routes.push(Route {
                done,
                waker,
                wake_pending: Arc::clone(&wake_pending),
            });
            completions.push(Completions {
                receiver,
                wake_pending,
            });
        }
        let routes: Arc<[Route]> = routes.into();
        for index in 0..workers {
            let worker = Worker {
                robot: Arc::clone(&robot),
                jobs: job_rx.clone(),
                routes: Arc::clone(&routes),
                delay,
                stats: Arc::clone(&stats),
            };
            thread::Builder::new()
                .name(format!("robochat-worker-{index}"))
                .spawn(move || worker.run())?;
        }
        Ok((
            WorkerPool {
                jobs,
                workers,
                stats,
            },
            completions,
        ))
    }

    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        // Counted before the send, so that a worker's decrement can never come first.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(job).map_err(|e| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(job) => SubmitError::Full(job),
                TrySendError::Disconnected(job) => SubmitError::Closed(job),
            }
        })
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }
}

impl Completions {
    /// Takes every completion that has arrived. Call it on each wake of the loop's waker.
    pub fn take(&self) -> impl Iterator<Item = Completion> + '_ {
        // Clear the flag before draining: a completion sent after this point either is drained
        // below or finds the flag clear and wakes the loop again. No answer is ever stranded.
        self.wake_pending.swap(false, Ordering::SeqCst);
        std::iter::from_fn(move || self.receiver.try_recv().ok())
    }
}

/// What one worker thread owns. The thread ends when the pool (the job sender) is dropped.
struct Worker {
    robot: Arc<dyn Robot>,
    jobs: Receiver<Job>,
    routes: Arc<[Route]>,
    delay: Duration,
    stats: Arc<RobotStats>,
}

impl Worker {
    fn run(self) {
        while let Ok(job) = self.jobs.recv() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            if !self.delay.is_zero() {
                thread::sleep(self.delay);
            }
            let result = call_robot(&*self.robot, &job.user, &job.text);
            self.stats.record(result.is_ok(), started.elapsed());
            self.stats.busy.fetch_sub(1, Ordering::Relaxed);
            let Some(route) = self.routes.get(job.origin) else {
                log::error!("a robot job came from an unknown event loop {}", job.origin);
                continue;
            };
            let completion = Completion {
                ticket: job.ticket,
                result,
            };
            if route.done.send(completion).is_err() {
                continue; // that loop is gone (shutting down); others may still want answers
            }
            if !route.wake_pending.swap(true, Ordering::SeqCst) {
                if let Err(e) = route.waker.wake() {
                    log::error!("worker could not wake the event loop: {e}");
                    // Let the next completion try again rather than wait for a wake that
                    // never comes.
                    route.wake_pending.store(false, Ordering::SeqCst);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robot::EchoRobot;
    use mio::{Events, Poll, Token};

    #[test]
    fn every_job_is_answered_and_the_loop_is_woken() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let (pool, completions) = WorkerPool::start(
            Arc::new(EchoRobot),
            3,
            100,
            Duration::ZERO,
            vec![waker],
            Default::default(),
        )
        .unwrap();
        for i in 0..50 {
            pool.submit(Job {
                ticket: i,
                origin: 0,
                user: "u".into(),
                text: format!("m{i}"),
            })
            .unwrap();
        }
        let mut answered = Vec::new();
        let mut events = Events::with_capacity(8);
        while answered.len() < 50 {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "no wake within 10 s");
            answered.extend(completions[0].take());
        }
        answered.sort_by_key(|c| c.ticket);
        for (i, c) in answered.iter().enumerate() {
            assert_eq!(c.ticket, i as u64);
            assert_eq!(c.result.as_deref(), Ok(format!("m{i}").as_str()));
        }
    }

    /// Blocks every call until the test sends a token; reports each call as it starts.
    struct Blocking {
        started: crossbeam_channel::Sender<()>,
        release: crossbeam_channel::Receiver<()>,
    }

    impl Robot for Blocking {
        fn name(&self) -> &str {
            "blocking"
        }
        fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
            let _ = self.started.send(());
            let _ = self.release.recv();
            Ok(text.to_owned())
        }
    }

    #[test]
    fn a_full_queue_refuses_jobs() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let (started, started_rx) = crossbeam_channel::unbounded();
        let (release_tx, release) = crossbeam_channel::unbounded();
        let robot = Arc::new(Blocking { started, release });
        let (pool, _completions) =
            WorkerPool::start(robot, 1, 2, Duration::ZERO, vec![waker], Default::default())
                .unwrap();
        let job = |i| Job {
            ticket: i,
            origin: 0,
            user: "u".into(),
            text: "t".into(),
        };
        assert!(pool.submit(job(1)).is_ok());
        started_rx.recv().unwrap(); // the one worker holds job 1; the queue is empty
        assert!(pool.submit(job(2)).is_ok());
        assert!(pool.submit(job(3)).is_ok());
        assert!(matches!(pool.submit(job(4)), Err(SubmitError::Full(j)) if j.ticket == 4));
        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
    }
}
