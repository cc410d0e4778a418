//! The worker pool: a fixed set of threads that call the robot, so the event loop never waits.
//!
//! A loop hands over the jobs of a whole turn at once ([`PoolLink::hand_over`]): one channel
//! send per batch, so that a worker asleep is woken once for many messages, not once each.
//! For a robot that never blocks, a turn's jobs go in a few batches (one per idle worker, at
//! least [`MIN_BATCH`] jobs each), and a worker answers a batch in one go; for a robot that may
//! block (a web API), each job is a batch of its own, so a slow call holds up nothing but its
//! own worker. The job queue's limit counts jobs, whatever their batches: past it, messages are
//! answered busy.
//!
//! Answers go back to the loop that asked (a server may run several loops) through that loop's
//! own channel, and the loop is woken through its `mio::Waker`, only if no wake is already
//! pending there: the loop takes every answer there is on each wake.
//!
//! Each loop holds a [`PoolLink`]; the workers end when the last link is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use super::metrics::RobotStats;
use crate::robot::{call_robot, Conversation, Request, Robot, RobotError};

/// The fewest jobs of a robot that never blocks worth a batch (and a worker's wake-up) of
/// their own: smaller turns go to one worker.
const MIN_BATCH: usize = 16;

/// A worker sends the answers of a batch to its loop every this many jobs (and at its end).
const DELIVER_EVERY: usize = 16;

/// One message for the robot.
pub(super) struct Job {
    /// The asking loop's tag for the connection, returned with the answer.
    pub ticket: u64,
    pub user: String,
    pub text: String,
    pub conversation: Conversation,
    /// Past this, the message is answered without calling the robot.
    pub deadline: Option<Instant>,
    /// The whole budget that the deadline ends.
    pub budget: Option<Duration>,
}

/// What a user is told when their message waited for a worker past its deadline.
pub(super) const EXPIRED: &str =
    "the robot is busy: no worker was free within the time limit; please try again in a moment";

/// Jobs handed over together, from one loop.
struct Batch {
    /// Which loop gets the answers: an index into the pool's routes.
    origin: usize,
    jobs: Vec<Job>,
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
    /// The queue of jobs waiting for a worker is full.
    Full,
}

/// The batches waiting for a worker. A worker with nothing to do sleeps on the condition
/// variable (a futex): it neither spins nor yields, which under CPU contention (a server in a
/// scheduling group of its own, as under systemd) burned as much CPU as the robot's work.
struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    stats: Arc<RobotStats>,
}

struct QueueState {
    batches: VecDeque<Batch>,
    /// Workers asleep, waiting for a batch: wake one only when there is one to wake.
    idle: usize,
    /// Links (loops) still able to hand over jobs; the workers end when none is left.
    links: usize,
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A worker that panics holds no lock (robots run outside it): poisoning is harmless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch, waiting for one; `None` once no loop can hand over any more.
    fn next(&self) -> Option<Batch> {
        let mut state = self.lock();
        loop {
            if let Some(batch) = state.batches.pop_front() {
                return Some(batch);
            }
            if state.links == 0 {
                return None;
            }
            state.idle += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
        }
    }
}

/// One event loop's way to the pool: where its jobs go in, and where their answers come back.
pub(super) struct PoolLink {
    queue_of_jobs: Arc<JobQueue>,
    /// Jobs waiting for a worker, at most (all loops together).
    queue: usize,
    /// The robot never blocks: its jobs may share a worker's turn.
    batch_jobs: bool,
    /// This loop's index among the pool's routes.
    origin: usize,
    /// This turn's jobs, handed over at its end.
    turn: Vec<Job>,
    completions: Receiver<Vec<Completion>>,
    wake_pending: Arc<AtomicBool>,
}

/// Where a worker delivers the answers for one loop.
struct Route {
    done: Sender<Vec<Completion>>,
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
    let jobs = Arc::new(JobQueue {
        state: Mutex::new(QueueState {
            batches: VecDeque::new(),
            idle: 0,
            links: wakers.len(),
        }),
        ready: Condvar::new(),
        stats: Arc::clone(stats),
    });
    let batch_jobs = robot.never_blocks();
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
            queue_of_jobs: Arc::clone(&jobs),
            queue,
            batch_jobs,
            origin,
            turn: Vec::new(),
            completions,
            wake_pending,
        });
    }
    let routes: Arc<[Route]> = routes.into();
    for index in 0..workers {
        let worker = Worker {
            robot: Arc::clone(&robot),
            jobs: Arc::clone(&jobs),
            routes: Arc::clone(&routes),
        };
        thread::Builder::new()
            .name(format!("robochat-worker-{index}"))
            .spawn(move || worker.run())?;
    }
    Ok(links)
}

impl PoolLink {
    /// Whether the queue has room for one more job.
    pub fn has_room(&self) -> bool {
        let waiting = self.queue_of_jobs.stats.queued.load(Ordering::Relaxed) as usize;
        waiting + self.turn.len() < self.queue
    }

    /// Takes a job for this turn's hand-over; its answer comes back with its ticket.
    pub fn submit(&mut self, job: Job) -> Result<(), SubmitError> {
        if !self.has_room() {
            return Err(SubmitError::Full);
        }
        self.turn.push(job);
        Ok(())
    }

    /// Hands this turn's jobs to the workers: in a few batches for a robot that never blocks
    /// (one per idle worker, each of at least [`MIN_BATCH`] jobs), one job per batch otherwise.
    pub fn hand_over(&mut self) {
        let count = self.turn.len();
        if count == 0 {
            return;
        }
        let queue = &*self.queue_of_jobs;
        // Counted before the hand-over, so that a worker's decrement can never come first.
        queue
            .stats
            .queued
            .fetch_add(count as u64, Ordering::Relaxed);
        let mut state = queue.lock();
        let batches = if self.batch_jobs {
            state.idle.min(count.div_ceil(MIN_BATCH)).max(1)
        } else {
            count
        };
        let mut jobs = std::mem::take(&mut self.turn).into_iter();
        for left in (1..=batches).rev() {
            let size = jobs.len().div_ceil(left);
            state.batches.push_back(Batch {
                origin: self.origin,
                jobs: jobs.by_ref().take(size).collect(),
            });
        }
        let wake = state.idle.min(batches);
        drop(state);
        for _ in 0..wake {
            queue.ready.notify_one();
        }
    }

    /// Takes every completion that has arrived for this loop. Call it on each wake of the
    /// loop's waker.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        // Clear the flag before draining: a completion sent after this point either is drained
        // below or finds the flag clear and wakes the loop again. No answer is ever stranded.
        self.wake_pending.swap(false, Ordering::SeqCst);
        let mut all = Vec::new();
        for batch in self.completions.try_iter() {
            if all.is_empty() {
                all = batch;
            } else {
                all.extend(batch);
            }
        }
        all
    }
}

impl Drop for PoolLink {
    fn drop(&mut self) {
        let mut state = self.queue_of_jobs.lock();
        state.links -= 1;
        if state.links == 0 {
            drop(state);
            self.queue_of_jobs.ready.notify_all(); // the workers end
        }
    }
}

/// What one worker thread owns. The thread ends when every link (batch sender) is dropped.
struct Worker {
    robot: Arc<dyn Robot>,
    jobs: Arc<JobQueue>,
    routes: Arc<[Route]>,
}

impl Worker {
    fn run(self) {
        let stats = &self.jobs.stats;
        while let Some(batch) = self.jobs.next() {
            let mut done = Vec::with_capacity(batch.jobs.len().min(DELIVER_EVERY));
            for job in batch.jobs {
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                let started = Instant::now();
                let request = Request {
                    user: &job.user,
                    text: &job.text,
                    conversation: job.conversation,
                    deadline: job.deadline,
                    budget: job.budget,
                };
                let result = if job.deadline.is_some_and(|deadline| deadline <= started) {
                    // Its sender's budget went in the queue: a robot that would make them wait
                    // is not called (it would only make the next messages later still).
                    stats.expired.fetch_add(1, Ordering::Relaxed);
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.robot.answer_late(&request)
                    })) {
                        Ok(Some(result)) => result,
                        Ok(None) => Err(RobotError::Rejected(EXPIRED.to_owned())),
                        Err(_) => Err(RobotError::Failed("it crashed (panicked)".into())),
                    }
                } else {
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                    let result = call_robot(&*self.robot, &request);
                    stats.record(result.is_ok(), started.elapsed());
                    stats.busy.fetch_sub(1, Ordering::Relaxed);
                    result
                };
                done.push(Completion {
                    ticket: job.ticket,
                    result,
                });
                if done.len() == DELIVER_EVERY {
                    // A long batch sends its answers as it goes, so that the first are not
                    // held back until the last is done.
                    self.deliver(batch.origin, std::mem::take(&mut done));
                }
            }
            if !done.is_empty() {
                self.deliver(batch.origin, done);
            }
        }
    }

    /// Sends a batch's answers to the loop that asked, and wakes it unless a wake is pending.
    fn deliver(&self, origin: usize, done: Vec<Completion>) {
        let Some(route) = self.routes.get(origin) else {
            log::error!("robot jobs came from an unknown event loop {origin}");
            return;
        };
        if route.done.send(done).is_err() {
            return; // that loop is gone (shutting down); others may still want answers
        }
        if !route.wake_pending.swap(true, Ordering::SeqCst) {
            if let Err(e) = route.waker.wake() {
                log::error!("worker could not wake the event loop: {e}");
                // Let the next answers try again rather than wait for a wake that never comes.
                route.wake_pending.store(false, Ordering::SeqCst);
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

    fn job(ticket: u64, text: &str, deadline: Option<Instant>) -> Job {
        Job {
            ticket,
            user: "u".to_owned(),
            text: text.to_owned(),
            conversation: Conversation::Connection(ticket),
            deadline,
            budget: deadline.map(|_| Duration::from_millis(50)),
        }
    }

    /// Waits for `n` answers, each wake of the loop's waker taking what has come; by ticket.
    fn answers(poll: &mut Poll, link: &mut PoolLink, n: usize) -> Vec<Completion> {
        let mut answered = Vec::new();
        let mut events = Events::with_capacity(8);
        while answered.len() < n {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "no wake within 10 s");
            answered.extend(link.take_completions());
        }
        answered.sort_by_key(|c| c.ticket);
        answered
    }

    fn one_loop(robot: Arc<dyn Robot>, workers: usize, queue: usize) -> (Poll, PoolLink) {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut links = start(robot, workers, queue, &[waker], &Arc::default()).unwrap();
        (poll, links.remove(0))
    }

    #[test]
    fn every_job_is_answered_and_the_loop_is_woken() {
        let (mut poll, mut link) = one_loop(Arc::new(EchoRobot), 3, 100);
        for i in 0..50 {
            link.submit(job(i, &format!("m{i}"), None)).unwrap();
        }
        link.hand_over();
        let answered = answers(&mut poll, &mut link, 50);
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
    fn jobs_of_a_robot_that_may_block_each_get_a_worker() {
        // Two jobs handed over in one turn must not wait for each other on one worker.
        let (started, started_rx) = crossbeam_channel::unbounded();
        let (release_tx, release) = crossbeam_channel::unbounded();
        let robot = Arc::new(Blocking { started, release });
        let (_poll, mut link) = one_loop(robot, 2, 10);
        link.submit(job(1, "a", None)).unwrap();
        link.submit(job(2, "b", None)).unwrap();
        link.hand_over();
        for _ in 0..2 {
            started_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("both jobs started at once");
        }
        for _ in 0..2 {
            release_tx.send(()).unwrap();
        }
    }

    #[test]
    fn a_full_queue_refuses_jobs() {
        let (started, started_rx) = crossbeam_channel::unbounded();
        let (release_tx, release) = crossbeam_channel::unbounded();
        let robot = Arc::new(Blocking { started, release });
        let (_poll, mut link) = one_loop(robot, 1, 2);
        assert!(link.submit(job(1, "t", None)).is_ok());
        link.hand_over();
        started_rx.recv().unwrap(); // the one worker holds job 1; the queue is empty
        assert!(link.submit(job(2, "t", None)).is_ok());
        assert!(link.submit(job(3, "t", None)).is_ok());
        assert_eq!(link.submit(job(4, "t", None)), Err(SubmitError::Full));
        link.hand_over();
        assert_eq!(
            link.submit(job(4, "t", None)),
            Err(SubmitError::Full),
            "2 still wait"
        );
        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
    }

    #[test]
    fn a_job_past_its_deadline_is_answered_without_the_robot() {
        let (started, started_rx) = crossbeam_channel::unbounded();
        let (release_tx, release) = crossbeam_channel::unbounded();
        let robot = Arc::new(Blocking { started, release });
        let (mut poll, mut link) = one_loop(robot, 1, 10);
        link.submit(job(1, "first", None)).unwrap();
        link.hand_over();
        started_rx.recv().unwrap(); // the one worker is busy with job 1
        let deadline = Instant::now() + Duration::from_millis(50);
        link.submit(job(2, "late", Some(deadline))).unwrap();
        link.hand_over();
        while Instant::now() <= deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        release_tx.send(()).unwrap(); // job 1 ends only after job 2's deadline
        let answered = answers(&mut poll, &mut link, 2);
        assert_eq!(answered[0].result.as_deref(), Ok("first"));
        assert_eq!(
            answered[1].result,
            Err(RobotError::Rejected(EXPIRED.to_owned()))
        );
        assert!(
            started_rx.try_recv().is_err(),
            "the robot was not called for job 2"
        );
    }
}
