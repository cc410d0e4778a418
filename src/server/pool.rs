//! The worker pool: a fixed set of threads that call the robot, so the event loop never waits.
//!
//! Jobs go in through a bounded channel (a full channel is the server's "robot is busy"); answers
//! go back to the event loop that asked (a server may run several loops) through that loop's own
//! unbounded channel, and the loop is woken through its `mio::Waker`. Wakes are merged: a worker
//! only wakes a loop if no wake is already pending there, and the loop takes every completion
//! there is on each wake, so a burst of answers costs one wake-up, not one per answer.
//!
//! Each loop holds a [`PoolLink`]; the workers end when the last link is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use super::metrics::RobotStats;
use crate::robot::{call_robot, Robot, RobotError};

/// One message for the robot.
struct Job {
    /// The asking loop's tag for the connection, returned with the answer.
    ticket: u64,
    /// Which loop gets the answer: an index into the pool's routes.
    origin: usize,
    user: String,
    text: String,
}

/// The robot's answer to one job.
pub(super) struct Completion {
    /// The job's ticket.
    pub ticket: u64,
    /// The reply, or why there is none.
    pub result: Result<String, RobotError>,
}

/// Why a job was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SubmitError {
    /// Every worker is busy and the queue is full.
    Full,
    /// The workers are gone (only while the pool is being dropped).
    Closed,
}

/// One event loop's way to the pool: where its jobs go in, and where their answers come back.
pub(super) struct PoolLink {
    jobs: Sender<Job>,
    stats: Arc<RobotStats>,
    /// This loop's index among the pool's routes.
    origin: usize,
    completions: Receiver<Completion>,
    wake_pending: Arc<AtomicBool>,
}

/// Where a worker delivers the answers for one loop.
struct Route {
    done: Sender<Completion>,
    waker: Arc<Waker>,
    wake_pending: Arc<AtomicBool>,
}

/// Starts `workers` threads calling `robot`, with room for `queue` jobs waiting for a worker;
/// returns one link for each loop, in the order of `wakers` (each loop's own waker).
pub(super) fn start(
    robot: Arc<dyn Robot>,
    workers: usize,
    queue: usize,
    wakers: &[Arc<Waker>],
    stats: &Arc<RobotStats>,
) -> std::io::Result<Vec<PoolLink>> {
    let (jobs, job_rx) = crossbeam_channel::bounded::<Job>(queue);
    let mut routes = Vec::with_capacity(wakers.len());
    let mut links = Vec::with_capacity(wakers.len());
    for (origin, waker) in wakers.iter().enumerate() {
        let (done, completions) = crossbeam_channel::unbounded();
        let wake_pending = Arc::new(AtomicBool::new(false));
        routes.push(Route {
            done,
            waker: Arc::clone(waker),
            wake_pending: Arc::clone(&wake_pending),
        });
        links.push(PoolLink {
            jobs: jobs.clone(),
            stats: Arc::clone(stats),
            origin,
            completions,
            wake_pending,
        });
    }
    let routes: Arc<[Route]> = routes.into();
    for index in 0..workers {
        let worker = Worker {
            robot: Arc::clone(&robot),
            jobs: job_rx.clone(),
            routes: Arc::clone(&routes),
            stats: Arc::clone(stats),
        };
        thread::Builder::new()
            .name(format!("robochat-worker-{index}"))
            .spawn(move || worker.run())?;
    }
    Ok(links)
}

impl PoolLink {
    /// Queues a job without waiting; its answer comes back with `ticket`.
    pub fn submit(&self, ticket: u64, user: &str, text: &str) -> Result<(), SubmitError> {
        let job = Job {
            ticket,
            origin: self.origin,
            user: user.to_owned(),
            text: text.to_owned(),
        };
        // Counted before the send, so that a worker's decrement can never come first.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(job).map_err(|e| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            }
        })
    }

    /// Takes every completion that has arrived for this loop. Call it on each wake of the
    /// loop's waker.
    pub fn take_completions(&self) -> impl Iterator<Item = Completion> + '_ {
        // Clear the flag before draining: a completion sent after this point either is drained
        // below or finds the flag clear and wakes the loop again. No answer is ever stranded.
        self.wake_pending.swap(false, Ordering::SeqCst);
        std::iter::from_fn(move || self.completions.try_recv().ok())
    }
}

/// What one worker thread owns. The thread ends when every link (job sender) is dropped.
struct Worker {
    robot: Arc<dyn Robot>,
    jobs: Receiver<Job>,
    routes: Arc<[Route]>,
    stats: Arc<RobotStats>,
}

impl Worker {
    fn run(self) {
        while let Ok(job) = self.jobs.recv() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
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
    use std::time::Duration;

    fn one_loop(robot: Arc<dyn Robot>, workers: usize, queue: usize) -> (Poll, PoolLink) {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut links = start(robot, workers, queue, &[waker], &Arc::default()).unwrap();
        (poll, links.remove(0))
    }

    #[test]
    fn every_job_is_answered_and_the_loop_is_woken() {
        let (mut poll, link) = one_loop(Arc::new(EchoRobot), 3, 100);
        for i in 0..50 {
            link.submit(i, "u", &format!("m{i}")).unwrap();
        }
        let mut answered = Vec::new();
        let mut events = Events::with_capacity(8);
        while answered.len() < 50 {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "no wake within 10 s");
            answered.extend(link.take_completions());
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
        let (started, started_rx) = crossbeam_channel::unbounded();
        let (release_tx, release) = crossbeam_channel::unbounded();
        let robot = Arc::new(Blocking { started, release });
        let (_poll, link) = one_loop(robot, 1, 2);
        assert!(link.submit(1, "u", "t").is_ok());
        started_rx.recv().unwrap(); // the one worker holds job 1; the queue is empty
        assert!(link.submit(2, "u", "t").is_ok());
        assert!(link.submit(3, "u", "t").is_ok());
        assert_eq!(link.submit(4, "u", "t"), Err(SubmitError::Full));
        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
    }
}
