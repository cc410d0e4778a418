//! The server's counters, kept in atomics by the event loops and workers, and their rendering in
//! Prometheus's text format; `metrics_endpoint` serves them. Recording costs a few uncontended
//! atomic additions.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::robot::{LinkReport, Robot, RobotReport};

/// The server's counters. Loops and workers add to them; the endpoint reads them.
pub(super) struct Metrics {
    /// Connections open, of both listeners: `--max-connections` counts them all.
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    /// Of those, the web listener's.
    pub web_open: AtomicUsize,
    pub web_accepted: AtomicU64,
    /// The web listener's responses, by status (as in [`HTTP_STATUSES`]).
    http_responses: [AtomicU64; HTTP_STATUSES.len()],
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
            web_open: AtomicUsize::new(0),
            web_accepted: AtomicU64::new(0),
            http_responses: Default::default(),
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
    fn robot_calls(&self, report: &RobotReport) -> Vec<(String, u64)> {
        let mut calls: Vec<(String, u64, u64)> = report
            .links
            .iter()
            .map(|link| (link.name.clone(), link.answered, link.failed))
            .collect();
        if calls.is_empty() {
            let stats = &self.robot;
            calls.push((
                self.robot_ref.name().to_owned(),
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

    /// The links of a fallback chain: skipped messages, breaker state, and call time.
    fn render_links(report: &RobotReport, out: &mut String) {
        if report.links.is_empty() {
            return;
        }
        let by_link = |value: &dyn Fn(&LinkReport) -> u64| -> Vec<(String, u64)> {
            let labelled = report.links.iter().map(|link| {
                let labels = format!("{{robot=\"{}\"}}", label_value(&link.name));
                (labels, value(link))
            });
            labelled.collect()
        };
        let skipped = by_link(&|link| link.skipped);
        write_family(
            out,
            "robochat_robot_skipped_total",
            "counter",
            "Messages that went past a link of the fallback chain without a call, its circuit \
             breaker open.",
            &skipped,
        );
        let open = by_link(&|link| u64::from(link.open));
        write_family(
            out,
            "robochat_robot_breaker_open",
            "gauge",
            "1 while a link's circuit breaker is open (the link is skipped), else 0.",
            &open,
        );
        let name = "robochat_robot_link_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time of the calls to each link of the fallback chain.\n# TYPE {name} \
             summary"
        );
        for link in &report.links {
            let robot = label_value(&link.name);
            let _ = writeln!(out, "{name}_sum{{robot=\"{robot}\"}} {}", link.seconds);
            let count = link.answered + link.failed;
            let _ = writeln!(out, "{name}_count{{robot=\"{robot}\"}} {count}");
        }
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            write_family(&mut out, name, kind, help, samples);
        };
        let (open, web_open) = (
            self.open.load(Ordering::Relaxed) as u64,
            self.web_open.load(Ordering::Relaxed) as u64,
        );
        metric(
            "robochat_connections_open",
            "gauge",
            "Connections open now, by listener: the line port, or the web listener (page \
             loads and WebSocket chats).",
            &[
                ("{transport=\"line\"}", open.saturating_sub(web_open)),
                ("{transport=\"web\"}", web_open),
            ],
        );
        let (accepted, web_accepted) = (get(&self.accepted), get(&self.web_accepted));
        metric(
            "robochat_connections_accepted_total",
            "counter",
            "Connections accepted, by listener.",
            &[
                (
                    "{transport=\"line\"}",
                    accepted.saturating_sub(web_accepted),
                ),
                ("{transport=\"web\"}", web_accepted),
            ],
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
        let report = self.robot_ref.report();
        let calls = self.robot_calls(&report);
        let calls: Vec<(&str, u64)> = calls.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "robochat_robot_calls_total",
            "counter",
            "Robot calls, by robot (each link of a fallback chain) and outcome.",
            &calls,
        );
        metric(
            "robochat_robot_expired_total",
            "counter",
            "Messages that waited for a worker past the robot timeout: never sent to a robot that \
             would make them wait longer; answered by one that never blocks (the embedded robot \
             of a chain) or with an error.",
            &[("", get(&robot.expired))],
        );
        metric(
            "robochat_robot_memory_bytes",
            "gauge",
            "Bytes the robot keeps of conversations (chat histories, remembered names).",
            &[("", report.memory_bytes)],
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
        Self::render_links(&report, &mut out);
        self.render_http(&mut out);
        self.render_latency(&mut out);
        out
    }

    /// The web listener's responses, a sample per status.
    fn render_http(&self, out: &mut String) {
        let responses: Vec<(String, u64)> = HTTP_STATUSES
            .iter()
            .zip(&self.http_responses)
            .map(|(status, count)| {
                let count = count.load(Ordering::Relaxed);
                (format!("{{code=\"{status}\"}}"), count)
            })
            .collect();
        write_family(
            out,
            "robochat_http_responses_total",
            "counter",
            "The web listener's responses, by status: 101 a WebSocket chat began, 200 the page \
             or /healthz, 403 a page of another origin refused, 503 full or shutting down, others \
             bad requests.",
            &responses,
        );
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

/// The statuses the web listener answers with.
const HTTP_STATUSES: [u16; 9] = [101, 200, 400, 403, 404, 405, 426, 431, 503];

impl Metrics {
    /// Counts one response of the web listener.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub fn http_response(&self, status: u16) {
        if let Some(at) = HTTP_STATUSES.iter().position(|&s| s == status) {
            Metrics::add(&self.http_responses[at], 1);
        }
    }
}

/// One metric family: its help and type, then a sample per set of labels (such as
/// `{robot="echo"}`, or none).
fn write_family<L: AsRef<str>>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(L, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{} {value}", labels.as_ref());
    }
}

/// `value` escaped for a label value of the Prometheus text format.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Upper bounds of the latency histogram's buckets, in seconds (Prometheus `le`): from 10 µs,
/// where an offline robot answers (the embedded robot takes about 5 µs), to 30 s, past the
/// longest a web robot is usually given.
pub(super) const LATENCY_BUCKETS: [f64; 20] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What the robots have done so far.
#[derive(Default)]
pub(super) struct RobotStats {
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
    /// Jobs that waited past their deadline.
    pub expired: AtomicU64,
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
