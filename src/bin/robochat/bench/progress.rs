//! The progress line on stderr: shared counters the workers bump, and a thread that prints them
//! about once a second.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    OpeningIdle,
    IdleMessage,
    Connecting,
    Warmup,
    Measuring,
    Collecting,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::OpeningIdle => "opening idle connections",
            Phase::IdleMessage => "idle connections: one message each",
            Phase::Connecting => "opening active connections",
            Phase::Warmup => "warmup",
            Phase::Measuring => "measuring",
            Phase::Collecting => "collecting last replies",
        }
    }

    fn from_u8(n: u8) -> Phase {
        [
            Phase::OpeningIdle,
            Phase::IdleMessage,
            Phase::Connecting,
            Phase::Warmup,
            Phase::Measuring,
            Phase::Collecting,
        ]
        .get(usize::from(n))
        .copied()
        .unwrap_or(Phase::Collecting)
    }
}

/// Counters shared by the workers and the progress thread. Relaxed: they are only displayed.
#[derive(Default)]
pub struct Progress {
    phase: AtomicU8,
    /// Connections greeted and not yet ended (idle and active).
    pub open: AtomicUsize,
    /// Replies received so far (warmup included); churn: handshakes counted.
    pub replies: AtomicU64,
}

impl Progress {
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }
}

/// The thread printing the progress line; stops (and clears an in-place line) when dropped.
pub struct Reporter {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    /// `total` is the number of connections asked for, shown next to the number open. With
    /// `churn`, `replies` counts handshakes.
    pub fn start(progress: Arc<Progress>, total: usize, churn: bool) -> Reporter {
        let (counted, per_second) = if churn {
            ("handshakes", "handshakes/s")
        } else {
            ("messages", "msgs/s")
        };
        let (stop, stopped) = mpsc::channel();
        // SAFETY: isatty only inspects file descriptor 2.
        let in_place = unsafe { libc::isatty(2) } == 1;
        let thread = thread::spawn(move || {
            let mut last = (Instant::now(), 0u64);
            let mut printed = false;
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(1))
            {
                let now = Instant::now();
                let replies = progress.replies.load(Relaxed);
                let seconds = now.duration_since(last.0).as_secs_f64().max(1e-9);
                let rate = (replies - last.1) as f64 / seconds;
                last = (now, replies);
                let line = format!(
                    "bench: {}, {}/{total} connections open, {replies} {counted}, {rate:.0} \
                     {per_second}",
                    Phase::from_u8(progress.phase.load(Relaxed)).name(),
                    progress.open.load(Relaxed),
                );
                let mut err = std::io::stderr().lock();
                // In place on a terminal (\x1b[K clears what a longer line left); a log otherwise.
                let _ = if in_place {
                    write!(err, "\r{line}\x1b[K")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
                printed = true;
            }
            if in_place && printed {
                let _ = write!(std::io::stderr(), "\r\x1b[K");
            }
        });
        Reporter {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
