//! The result of a run, as a table for people or one JSON object for scripts.

use std::fmt::Write;

use super::memory::Readings;
use super::options::Options;
use super::stats::Stats;

/// Everything the report shows, worked out once for both renderings.
pub struct Summary {
    pub addr: String,
    pub framing: &'static str,
    pub rate: Option<f64>,
    pub churn: bool,
    pub threads: usize,
    pub connections: usize,
    pub connections_open: u64,
    pub idle: usize,
    pub idle_open: u64,
    pub idle_message: bool,
    pub warmup: f64,
    pub seconds: f64,
    pub messages: u64,
    pub sent: u64,
    /// Open loop: messages due in the measured window, and of them sent.
    pub schedule: Option<Schedule>,
    pub msgs_per_sec: f64,
    /// Churn: handshakes counted, and per second.
    pub handshakes: Option<(u64, f64)>,
    /// p50, p90, p99, p99.9, max in µs; `None` when no message was counted (churn: of the
    /// handshakes, connect to greeting).
    pub latency: Option<[u64; 5]>,
    pub errors: u64,
    pub err_replies: u64,
    pub timeouts: u64,
    pub lost: u64,
    pub closed_by_server: u64,
    pub protocol_errors: u64,
    pub connect_failures: u64,
    pub first_connect_error: Option<String>,
    /// p50, p99, max in µs; `None` when no connection opened.
    pub connect: Option<[u64; 3]>,
    pub memory: Option<Readings>,
}

impl Summary {
    pub fn new(o: &Options, stats: &Stats, idle_open: u64, memory: Option<Readings>) -> Summary {
        let latency = (!stats.latency.is_empty()).then(|| {
            let h = &stats.latency;
            let q = |q| h.value_at_quantile(q);
            [q(0.5), q(0.9), q(0.99), q(0.999), h.max()]
        });
        let connect = (!stats.connect.is_empty()).then(|| {
            let h = &stats.connect;
            [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]
        });
        Summary {
            addr: o.connect.clone(),
            framing: o.framing.name(),
            rate: o.rate,
            churn: o.churn,
            threads: o.threads,
            connections: o.connections,
            connections_open: stats.opened - idle_open,
            idle: o.idle,
            idle_open,
            idle_message: o.idle_message,
            warmup: o.warmup,
            seconds: o.duration,
            messages: stats.messages,
            sent: stats.sent,
            schedule: o.rate.map(|_| Schedule {
                due: stats.due,
                sent: stats.sent_measured,
                answered: stats.messages,
            }),
            msgs_per_sec: stats.messages as f64 / o.duration,
            handshakes: o
                .churn
                .then(|| (stats.handshakes, stats.handshakes as f64 / o.duration)),
            latency,
            errors: stats.errors(),
            err_replies: stats.err_replies,
            timeouts: stats.timeouts,
            lost: stats.lost,
            closed_by_server: stats.closed_by_server,
            protocol_errors: stats.protocol_errors,
            connect_failures: stats.connect_failures,
            first_connect_error: stats.first_connect_error.clone(),
            connect,
            memory,
        }
    }

    fn per_idle(&self, after: impl Fn(&Readings) -> Option<u64>) -> Option<i64> {
        let m = self.memory?;
        m.per_connection(after(&m), self.idle_open)
    }

    /// The table printed on stdout.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let mode = match self.rate {
            _ if self.churn => "churn".into(),
            Some(rate) => format!("open loop at {rate} msgs/s"),
            None => "closed loop".into(),
        };
        let _ = writeln!(
            s,
            "robochat bench: {}, {mode}, {} framing, {} thread(s)",
            self.addr, self.framing, self.threads
        );
        let active = if self.churn {
            format!(
                "{} churning ({} greeted in all)",
                self.connections, self.connections_open
            )
        } else {
            format!(
                "{} active ({} open)",
                self.connections, self.connections_open
            )
        };
        let _ = writeln!(
            s,
            "  connections     {active}, {} idle ({} open)",
            self.idle, self.idle_open
        );
        let _ = writeln!(
            s,
            "  duration        {:.2} s measured, after {:.2} s warmup",
            self.seconds, self.warmup
        );
        match self.handshakes {
            Some((count, per_second)) => {
                let _ = writeln!(
                    s,
                    "  handshakes      {count} ({per_second:.1}/s): connect, {}greeting, close",
                    if self.framing == "websocket" {
                        "upgrade, "
                    } else {
                        ""
                    }
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  messages        {} answered ({:.1} msgs/s); {} sent in all",
                    self.messages, self.msgs_per_sec, self.sent
                );
            }
        }
        if let Some(schedule) = &self.schedule {
            s.push_str(&schedule.human());
        }
        match self.latency {
            Some([p50, p90, p99, p999, max]) => {
                let _ = writeln!(
                    s,
                    "  latency         p50 {}  p90 {}  p99 {}  p99.9 {}  max {}{}",
                    time(p50),
                    time(p90),
                    time(p99),
                    time(p999),
                    time(max),
                    if self.churn {
                        " (connect to greeting)"
                    } else {
                        ""
                    }
                );
            }
            None if self.churn => s.push_str("  latency         no handshake completed\n"),
            None => s.push_str("  latency         no message answered\n"),
        }
        let _ = writeln!(
            s,
            "  errors          {} (ERR replies {}, timeouts {}, lost {}, closed by server {}, \
             bad replies {})",
            self.errors,
            self.err_replies,
            self.timeouts,
            self.lost,
            self.closed_by_server,
            self.protocol_errors
        );
        let _ = write!(s, "  connect         {} failed", self.connect_failures);
        if let Some(why) = &self.first_connect_error {
            let _ = write!(s, " (first: {why})");
        }
        if let Some([p50, p99, max]) = self.connect {
            let _ = write!(
                s,
                "; time to greeting p50 {}  p99 {}  max {}",
                time(p50),
                time(p99),
                time(max)
            );
        }
        s.push('\n');
        if let Some(m) = self.memory {
            let _ = write!(s, "  server memory   before {}", bytes(Some(m.before)));
            if self.idle > 0 {
                let _ = write!(
                    s,
                    ", idle open {} ({} per idle connection)",
                    bytes(m.after_idle),
                    per(self.per_idle(|m| m.after_idle))
                );
            }
            if self.idle_message {
                let _ = write!(
                    s,
                    ", after one message each {} ({} per idle connection)",
                    bytes(m.after_idle_message),
                    per(self.per_idle(|m| m.after_idle_message))
                );
            }
            let _ = writeln!(s, ", end {}", bytes(m.end));
        }
        s
    }

    /// One JSON object (with a newline). Keys that do not apply are null, never left out.
    pub fn json(&self) -> String {
        let num = |v: Option<u64>| opt(v.map(|v| v.to_string()));
        let mut f: Vec<(&str, String)> = vec![
            ("connect", quote(&self.addr)),
            ("framing", quote(self.framing)),
            (
                "mode",
                quote(match self.rate {
                    _ if self.churn => "churn",
                    Some(_) => "open",
                    None => "closed",
                }),
            ),
            ("rate", opt(self.rate.map(|r| format!("{r}")))),
            ("threads", self.threads.to_string()),
            ("connections", self.connections.to_string()),
            ("connections_open", self.connections_open.to_string()),
            ("idle", self.idle.to_string()),
            ("idle_open", self.idle_open.to_string()),
            ("warmup", format!("{}", self.warmup)),
            ("seconds", format!("{}", self.seconds)),
            ("messages", self.messages.to_string()),
            ("sent", self.sent.to_string()),
            ("msgs_per_sec", format!("{:.1}", self.msgs_per_sec)),
            ("handshakes", num(self.handshakes.map(|h| h.0))),
            (
                "handshakes_per_sec",
                opt(self.handshakes.map(|h| format!("{:.1}", h.1))),
            ),
            ("due", num(self.schedule.map(|s| s.due))),
            ("sent_measured", num(self.schedule.map(|s| s.sent))),
            (
                "rate_kept",
                opt(self.schedule.map(|s| s.verdict().is_none().to_string())),
            ),
        ];
        let names = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"];
        for (k, name) in names.into_iter().enumerate() {
            f.push((name, opt(self.latency.map(|l| l[k].to_string()))));
        }
        f.extend([
            ("errors", self.errors.to_string()),
            ("err_replies", self.err_replies.to_string()),
            ("timeouts", self.timeouts.to_string()),
            ("lost", self.lost.to_string()),
            ("closed_by_server", self.closed_by_server.to_string()),
            ("protocol_errors", self.protocol_errors.to_string()),
            ("connect_failures", self.connect_failures.to_string()),
            (
                "first_connect_error",
                opt(self.first_connect_error.as_deref().map(quote)),
            ),
        ]);
        for (k, name) in ["connect_p50_us", "connect_p99_us", "connect_max_us"]
            .into_iter()
            .enumerate()
        {
            f.push((name, opt(self.connect.map(|c| c[k].to_string()))));
        }
        let m = self.memory;
        f.extend([
            ("server_rss_before_bytes", num(m.map(|m| m.before))),
            (
                "server_rss_after_idle_bytes",
                num(m.and_then(|m| m.after_idle)),
            ),
            (
                "server_rss_after_idle_message_bytes",
                num(m.and_then(|m| m.after_idle_message)),
            ),
            ("server_rss_end_bytes", num(m.and_then(|m| m.end))),
            (
                "server_rss_bytes_per_idle",
                opt(self.per_idle(|m| m.after_idle).map(|v| v.to_string())),
            ),
            (
                "server_rss_bytes_per_idle_after_message",
                opt(self
                    .per_idle(|m| m.after_idle_message)
                    .map(|v| v.to_string())),
            ),
        ]);
        let body: Vec<String> = f.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}\n", body.join(","))
    }
}

/// What became of an open loop's timetable in the measured window.
#[derive(Clone, Copy)]
pub struct Schedule {
    /// Messages due.
    pub due: u64,
    /// Of them, sent (a connection that is gone sends nothing).
    pub sent: u64,
    /// Of them, answered before the end of the run.
    pub answered: u64,
}

/// The share of the due messages below which a rate counts as not kept.
const KEPT: f64 = 0.99;

/// Why an open loop did not keep its rate.
enum Missed {
    /// The load generator itself could not send the messages.
    Sending,
    /// The server fell behind: the answers lag the timetable more and more.
    Answering,
}

impl Schedule {
    fn verdict(&self) -> Option<Missed> {
        let share = |n: u64| n as f64 / self.due.max(1) as f64;
        if share(self.sent) < KEPT {
            Some(Missed::Sending)
        } else if share(self.answered) < KEPT {
            Some(Missed::Answering)
        } else {
            None
        }
    }

    fn human(&self) -> String {
        let share = 100.0 * self.answered as f64 / self.due.max(1) as f64;
        let mut s = format!(
            "  schedule        {} due in the measured time, {} sent, {} answered ({share:.1}%)\n",
            self.due, self.sent, self.answered
        );
        match self.verdict() {
            None => {}
            Some(Missed::Sending) => s.push_str(
                "  RATE NOT KEPT   the load generator could not send at this rate; the figures \
                 are not the server's: use more --threads or a lower --rate\n",
            ),
            Some(Missed::Answering) => s.push_str(
                "  RATE NOT KEPT   the server did not keep up with this rate: answers fell behind \
                 the timetable (latency counts from when each message was due), so msgs/s is \
                 not the server's capacity; measure that in closed loop (without --rate), \
                 then choose a rate below it\n",
            ),
        }
        s
    }
}

/// Microseconds as µs below a millisecond, ms below a second, s above.
fn time(micros: u64) -> String {
    match micros {
        0..=999 => format!("{micros} µs"),
        1_000..=999_999 => format!("{:.2} ms", micros as f64 / 1e3),
        _ => format!("{:.2} s", micros as f64 / 1e6),
    }
}

fn bytes(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "unreadable".into(),
    }
}

fn per(b: Option<i64>) -> String {
    b.map_or_else(|| "n/a".into(), |b| format!("{b} B"))
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "null".into())
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }

    #[test]
    fn times() {
        assert_eq!(time(12), "12 µs");
        assert_eq!(time(1_500), "1.50 ms");
        assert_eq!(time(2_000_000), "2.00 s");
    }
}
