//! What a worker counts, and the merge of all workers' counts at the end.

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds from 1 µs to 60 s, to 3 significant digits; values
/// outside saturate to the bounds (a reply after a minute is still counted, as 60 s).
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Counts of one worker (or, merged, of the whole run).
pub struct Stats {
    /// Latency of successful replies to messages sent after the warmup (churn: of handshakes
    /// started after it).
    pub latency: Histogram<u64>,
    /// Connect start to greeting, for every connection that opened.
    pub connect: Histogram<u64>,
    /// Successful replies counted in `latency`.
    pub messages: u64,
    /// Churn: handshakes counted in `latency` (connect to greeting) instead.
    pub handshakes: u64,
    /// Messages sent, warmup included.
    pub sent: u64,
    /// Open loop: messages due in the measured window, and how many of them were sent (a
    /// connection that is gone sends nothing).
    pub due: u64,
    pub sent_measured: u64,
    /// Replies starting with `ERR `.
    pub err_replies: u64,
    /// Messages never answered by the end of the grace period (or within the idle round's
    /// timeout).
    pub timeouts: u64,
    /// Messages outstanding on connections that ended.
    pub lost: u64,
    /// Open connections that ended before the run did (closed or reset by the server).
    pub closed_by_server: u64,
    /// Replies with no message outstanding, and over-long reply lines.
    pub protocol_errors: u64,
    /// Connections that never got a greeting: connect errors, refused, reset, closed before the
    /// greeting, no greeting in time, or an `ERR` greeting.
    pub connect_failures: u64,
    /// The first connect error seen, to show the user why.
    pub first_connect_error: Option<String>,
    /// Connections that got their greeting.
    pub opened: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            connect: histogram(),
            messages: 0,
            handshakes: 0,
            sent: 0,
            due: 0,
            sent_measured: 0,
            err_replies: 0,
            timeouts: 0,
            lost: 0,
            closed_by_server: 0,
            protocol_errors: 0,
            connect_failures: 0,
            first_connect_error: None,
            opened: 0,
        }
    }
}

impl Stats {
    pub fn record_latency(&mut self, micros: u64) {
        self.latency.saturating_record(micros.max(LOWEST_US));
    }

    pub fn record_connect(&mut self, micros: u64) {
        self.connect.saturating_record(micros.max(LOWEST_US));
        self.opened += 1;
    }

    pub fn connect_failed(&mut self, why: impl FnOnce() -> String) {
        self.connect_failures += 1;
        if self.first_connect_error.is_none() {
            self.first_connect_error = Some(why());
        }
    }

    /// Everything that went wrong after connecting (connect failures are apart).
    pub fn errors(&self) -> u64 {
        self.err_replies + self.timeouts + self.lost + self.closed_by_server + self.protocol_errors
    }

    pub fn merge(&mut self, other: Stats) {
        // Same bounds on both sides and saturated recording: adding cannot fail.
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
        self.connect
            .add(&other.connect)
            .expect("histograms with the same bounds");
        self.messages += other.messages;
        self.handshakes += other.handshakes;
        self.sent += other.sent;
        self.due += other.due;
        self.sent_measured += other.sent_measured;
        self.err_replies += other.err_replies;
        self.timeouts += other.timeouts;
        self.lost += other.lost;
        self.closed_by_server += other.closed_by_server;
        self.protocol_errors += other.protocol_errors;
        self.connect_failures += other.connect_failures;
        self.opened += other.opened;
        if self.first_connect_error.is_none() {
            self.first_connect_error = other.first_connect_error;
        }
    }
}
