//! Counters of robot calls, shared by the workers (or the event loop, with no workers) and read
//! by the metrics endpoint. Atomics only: recording costs a few uncontended additions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds (Prometheus `le`): from 10 µs,
/// where an offline robot answers (the embedded robot takes about 5 µs), to 30 s, past the
/// longest a web robot is usually given.
pub const LATENCY_BUCKETS: [f64; 20] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What the robots have done so far.
#[derive(Default)]
pub struct RobotStats {
    /// Calls that gave a reply.
    pub ok: AtomicU64,
    /// Calls that gave an error (the robot failed, was unavailable, or panicked).
    pub failed: AtomicU64,
    /// Calls per latency bucket (not cumulative), the last one for "longer than every bound".
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Total call time, in microseconds.
    pub latency_micros: AtomicU64,
    /// Jobs waiting for a worker.
    pub queued: AtomicU64,
    /// Workers inside a robot call now.
    pub busy: AtomicU64,
}

impl RobotStats {
    /// Records one call that took `took`.
    pub fn record(&self, ok: bool, took: Duration) {
        let counter = if ok { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_calls_land_in_the_low_buckets() {
        let stats = RobotStats::default();
        stats.record(true, Duration::from_micros(5));
        stats.record(true, Duration::from_micros(40));
        stats.record(false, Duration::from_secs(60));
        let counts: Vec<u64> = stats
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 1, "5 µs is within the first bucket (10 µs)");
        assert_eq!(counts[2], 1, "40 µs is within the 50 µs bucket");
        assert_eq!(
            counts[LATENCY_BUCKETS.len()],
            1,
            "a minute is past every bound"
        );
        assert_eq!(stats.ok.load(Ordering::Relaxed), 2);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
    }
}
