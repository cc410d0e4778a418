//! Connection timeouts: an unfinished line (`--line-timeout`), replies that go unread
//! (`--send-timeout`), and silence (`--idle-timeout`).
//!
//! Only connections with a timeout running are in the loop's `timed` list, and the list is
//! checked when the earliest of their deadlines comes (at most twenty times a second), so idle
//! connections without one cost nothing and no loop turn walks every connection. Times are
//! [`Ticks`] of the loop's clock (`Ctx::now`): a timeout fires after its time, never before,
//! and within about 60 ms after it (a tick, and the sweeps' spacing).

use std::time::{Duration, Instant};

use mio::Token;

use super::builder::Config;
use super::conn::Conn;
use super::{encode_line, same_generation, split_token, CloseReason, EventLoop};

/// The timeouts' clock: hundredths of a second since the loop started. It wraps after about
/// 497 days; ages are taken by wrapping subtraction, right for any age under half of that, and
/// timeouts are at most [`MAX_TIMEOUT`].
pub(super) type Ticks = u32;

/// One tick of [`Ticks`].
pub(super) const TICK: Duration = Duration::from_millis(10);

/// "No such time" in the [`Ticks`] fields of a connection.
pub(super) const NEVER: Ticks = Ticks::MAX;

/// The longest timeout: far below the clock's wrap.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 86_400);

/// Sweeps come at most this often: when many deadlines fall close together, one sweep takes
/// all those within this much of each other.
const SWEEP_INTERVAL: Duration = Duration::from_millis(50);

/// The clock reading for `now`, never [`NEVER`].
pub(super) fn ticks_since(started: Instant, now: Instant) -> Ticks {
    let ticks = (now.duration_since(started).as_millis() / TICK.as_millis()) as Ticks;
    ticks.min(NEVER - 1)
}

/// `timeout` in ticks, rounded up, so that a short timeout is not turned off; zero stays zero
/// (off).
pub(super) fn ticks_of(timeout: Duration) -> Ticks {
    let ticks = timeout.as_nanos().div_ceil(TICK.as_nanos());
    Ticks::try_from(ticks).unwrap_or(NEVER - 1)
}

/// A timeout that ran out.
enum Expired {
    Line,
    Send,
    Idle,
}

impl EventLoop {
    /// Starts, restarts or stops the connection's timeouts after it was served, and makes sure
    /// the sweep will look at it while any runs.
    pub(super) fn track_timers(&mut self, token: Token) {
        let now = self.ctx.now;
        let config = &self.ctx.config;
        let (key, generation) = split_token(token);
        let Some(conn) = self
            .conns
            .get_mut(key)
            .filter(|conn| same_generation(conn, generation))
        else {
            return;
        };
        if conn.lingering {
            return; // it has its own deadline
        }
        if config.line_timeout > 0 && conn.has_partial_line() {
            if conn.line_started == NEVER {
                conn.line_started = now;
            }
        } else {
            conn.line_started = NEVER;
        }
        let moved = std::mem::take(&mut conn.output_moved);
        if config.send_timeout > 0 && !conn.output.is_empty() {
            if moved || conn.output_stalled == NEVER {
                conn.output_stalled = now;
            }
        } else {
            conn.output_stalled = NEVER;
        }
        let due = match timer_verdict(conn, now, config) {
            Ok(None) => return,
            Ok(Some(due)) => due,
            Err(_) => 0, // ran out already: the next sweep, at once, acts on it
        };
        if !conn.has_timers {
            conn.has_timers = true;
            self.timed.push(token);
        }
        let deadline = Instant::now() + TICK * due;
        self.next_sweep = Some(self.next_sweep.map_or(deadline, |t| t.min(deadline)));
    }

    /// Checks the connections that have a timeout running, and acts on those that ran out; then
    /// plans the next sweep for the earliest deadline left.
    pub(super) fn sweep_timers(&mut self) {
        let now = self.ctx.now;
        let mut earliest: Option<Ticks> = None;
        let mut i = 0;
        while i < self.timed.len() {
            let token = self.timed[i];
            let (key, generation) = split_token(token);
            let verdict = self
                .conns
                .get(key)
                .filter(|conn| same_generation(conn, generation))
                .map(|conn| timer_verdict(conn, now, &self.ctx.config));
            match verdict {
                Some(Ok(Some(due))) => {
                    earliest = Some(earliest.map_or(due, |e| e.min(due)));
                    i += 1;
                }
                Some(Ok(None)) | None => {
                    self.timed.swap_remove(i);
                    if let Some(conn) = self.conn_mut(token) {
                        conn.has_timers = false;
                    }
                }
                Some(Err(expired)) => {
                    self.timed.swap_remove(i);
                    if let Some(conn) = self.conn_mut(token) {
                        conn.has_timers = false;
                    }
                    // It may start timers again (an idle goodbye waits under the send timeout),
                    // which puts it back at the end of the list and plans a sweep for it.
                    self.time_out(token, expired);
                }
            }
        }
        let now = Instant::now();
        self.next_sweep = earliest.map(|due| (now + TICK * due).max(now + SWEEP_INTERVAL));
    }

    fn time_out(&mut self, token: Token, expired: Expired) {
        let config = &self.ctx.config;
        let (line, send) = (TICK * config.line_timeout, TICK * config.send_timeout);
        let mut notice = Vec::new();
        encode_line(&mut notice, &config.idle_notice);
        let Some(conn) = self.conn_mut(token) else {
            return;
        };
        match expired {
            Expired::Line => self.close(token, CloseReason::LineTimeout(line)),
            Expired::Send => self.close(token, CloseReason::SendTimeout(send)),
            Expired::Idle => {
                conn.closing = true;
                match conn.send(&notice) {
                    Ok(_) if conn.finished() => self.finish(token),
                    // The notice waits for the client to read it (under the send timeout).
                    Ok(_) => self.track_timers(token),
                    Err(e) => self.close(token, CloseReason::Failed(e)),
                }
            }
        }
    }
}

/// Whether a connection's timeouts still run (`Ok(Some(ticks))`: the first runs out in that
/// many ticks), have all stopped (`Ok(None)`), or one has run out.
fn timer_verdict(conn: &Conn, now: Ticks, config: &Config) -> Result<Option<Ticks>, Expired> {
    if conn.lingering {
        return Ok(None);
    }
    let idle_on = config.idle_timeout > 0 && !conn.closing && !conn.lookup_in_flight;
    let running = [
        (config.line_timeout, conn.line_started, Expired::Line),
        (config.send_timeout, conn.output_stalled, Expired::Send),
        (
            config.idle_timeout,
            if idle_on { conn.last_message } else { NEVER },
            Expired::Idle,
        ),
    ];
    let mut earliest = None;
    for (timeout, since, expired) in running {
        if timeout == 0 || since == NEVER {
            continue;
        }
        // `since` was read off the clock at up to a tick after the moment it stands for, so a
        // timeout runs out only once more than `timeout` whole ticks have passed: never early.
        let age = now.wrapping_sub(since);
        if age > timeout {
            return Err(expired);
        }
        let due = timeout + 1 - age;
        earliest = Some(earliest.map_or(due, |e: Ticks| e.min(due)));
    }
    Ok(earliest)
}
