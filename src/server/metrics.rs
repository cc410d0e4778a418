//! The server's counters, kept in atomics by the event loops and workers, and their rendering in
//! Prometheus's text format. [`endpoint`](super::metrics_endpoint) serves them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::robot::{Robot, RobotStats, LATENCY_BUCKETS};

/// The server's counters. Loops and workers add to them; the endpoint reads them.
pub struct Metrics {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub messages: AtomicU64,
    pub replies_ok: AtomicU64,
    pub replies_error: AtomicU64,
    pub replies_busy: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub robot: Arc<RobotStats>,
    /// The server's robot: its name, and its links' calls if it is a chain.
    robot_ref: Arc<dyn Robot>,
    workers: usize,
}

impl Metrics {
    pub fn new(robot: Arc<dyn Robot>, workers: usize) -> Metrics {
        Metrics {
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            replies_ok: AtomicU64::new(0),
            replies_error: AtomicU64::new(0),
            replies_busy: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            robot: Arc::default(),
            robot_ref: robot,
            workers,
        }
    }

    /// Calls by robot: one pair of series per link of a fallback chain, or one for the robot.
    fn robot_calls(&self) -> Vec<(String, u64)> {
        let robot = &self.robot_ref;
        let mut calls = robot.inner_calls();
        if calls.is_empty() {
            let stats = &self.robot;
            calls.push((
                robot.name().to_owned(),
                stats.ok.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed),
            ));
        }
        calls
            .into_iter()
            .flat_map(|(name, ok, failed)| {
                let name = label_value(&name);
                [
                    (format!("{{robot=\"{name}\",outcome=\"ok\"}}"), ok),
                    (format!("{{robot=\"{name}\",outcome=\"error\"}}"), failed),
                ]
            })
            .collect()
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "robochat_connections_open",
            "gauge",
            "Connections open now.",
            &[("", self.open.load(Ordering::Relaxed) as u64)],
        );
        metric(
            "robochat_connections_accepted_total",
            "counter",
            "Connections accepted.",
            &[("", get(&self.accepted))],
        );
        metric(
            "robochat_connections_refused_total",
            "counter",
            "Connections refused because the server was full.",
            &[("", get(&self.refused))],
        );
        metric(
            "robochat_messages_total",
            "counter",
            "Messages received for the robot.",
            &[("", get(&self.messages))],
        );
        metric(
            "robochat_replies_total",
            "counter",
            "Lines answered, by outcome: a robot reply, an error line, or the robot busy.",
            &[
                ("{outcome=\"ok\"}", get(&self.replies_ok)),
                ("{outcome=\"error\"}", get(&self.replies_error)),
                ("{outcome=\"busy\"}", get(&self.replies_busy)),
            ],
        );
        metric(
            "robochat_received_bytes_total",
            "counter",
            "Bytes read from clients.",
            &[("", get(&self.bytes_in))],
        );
        metric(
            "robochat_sent_bytes_total",
            "counter",
            "Bytes written to clients.",
            &[("", get(&self.bytes_out))],
        );
        let robot = &self.robot;
        let calls = self.robot_calls();
        let calls: Vec<(&str, u64)> = calls.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "robochat_robot_calls_total",
            "counter",
            "Robot calls, by robot (each link of a fallback chain) and outcome.",
            &calls,
        );
        metric(
            "robochat_jobs_queued",
            "gauge",
            "Robot jobs waiting for a worker.",
            &[("", get(&robot.queued))],
        );
        metric(
            "robochat_workers",
            "gauge",
            "Worker threads.",
            &[("", self.workers as u64)],
        );
        metric(
            "robochat_workers_busy",
            "gauge",
            "Workers inside a robot call now (busy / workers is the utilisation).",
            &[("", get(&robot.busy))],
        );
        self.render_latency(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let name = "robochat_robot_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time of one robot call.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, bucket) in self.robot.latency_buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let micros = self.robot.latency_micros.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_sum {}", micros as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// `value` escaped for a label value of the Prometheus text format.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
