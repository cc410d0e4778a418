//! Connection timeouts: an unfinished line (`--line-timeout`), replies that go unread
//! (`--send-timeout`), and silence (`--idle-timeout`).
//!
//! Only connections with a timeout running are in the loop's `timed` list, and the list is
//! checked when the earliest of their deadlines comes (at most twenty times a second), so idle
//! connections without one cost nothing and no loop turn walks every connection. Times are
//! [`Ticks`] of the loop's clock: a timeout fires after its time, never before, and within
//! about 60 ms after it (a tick, and the sweeps' spacing). What runs out is decided by
//! [`verdict`], a pure function of a connection's [`Clocks`].

use std::time::{Duration, Instant};

use super::conn::find;
use super::conn_id::ConnId;
use super::event_loop::{CloseReason, EventLoop};

/// The timeouts' clock: hundredths of a second since the loop started. It wraps after about
/// 497 days; ages are taken by wrapping subtraction, right for any age under half of that, and
/// timeouts are at most [`MAX_TIMEOUT`].
pub(super) type Ticks = u32;

/// One tick of [`Ticks`].
pub(super) const TICK: Duration = Duration::from_millis(10);

/// "No such time" in a clock.
pub(super) const NEVER: Ticks = Ticks::MAX;

/// The longest timeout: far below the clock's wrap.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 86_400);

/// Sweeps come at most this often: when many deadlines fall close together, one sweep takes
/// all those within this much of each other.
const SWEEP_INTERVAL: Duration = Duration::from_millis(50);
/// Connections in the timed list with no timeout running any more, past which (when they are
/// also most of the list) a sweep comes at once to drop them.
const STALE_TIMERS_SWEPT: usize = 256;

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

/// A server's timeouts, in ticks; 0 is off.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Timeouts {
    pub line: Ticks,
    pub send: Ticks,
    pub idle: Ticks,
}

/// When each of a connection's clocks started, or [`NEVER`] when it does not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Clocks {
    /// Since when a line has been unfinished.
    pub line_started: Ticks,
    /// Since when unsent output has made no progress.
    pub output_stalled: Ticks,
    /// Since when the connection has waited for its client to say something.
    pub idle_since: Ticks,
}

impl Clocks {
    pub const STOPPED: Clocks = Clocks {
        line_started: NEVER,
        output_stalled: NEVER,
        idle_since: NEVER,
    };
}

/// A timeout that ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expired {
    Line,
    Send,
    Idle,
}

/// What a connection's clocks say at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// No timeout runs.
    Quiet,
    /// The first to run out will in this many ticks.
    Due(Ticks),
    /// One has run out.
    Expired(Expired),
}

/// Which of `clocks` has run out at `now`, or when the first will.
pub(super) fn verdict(clocks: Clocks, now: Ticks, timeouts: Timeouts) -> Verdict {
    let running = [
        (timeouts.line, clocks.line_started, Expired::Line),
        (timeouts.send, clocks.output_stalled, Expired::Send),
        (timeouts.idle, clocks.idle_since, Expired::Idle),
    ];
    let mut earliest = None;
    for (timeout, since, expired) in running {
        if timeout == 0 || since == NEVER {
            continue;
        }
        // `since` was read off the clock up to a tick after the moment it stands for, so a
        // timeout runs out only once more than `timeout` whole ticks have passed: never early.
        let age = now.wrapping_sub(since);
        if age > timeout {
            return Verdict::Expired(expired);
        }
        let due = timeout + 1 - age;
        earliest = Some(earliest.map_or(due, |e: Ticks| e.min(due)));
    }
    earliest.map_or(Verdict::Quiet, Verdict::Due)
}

impl EventLoop {
    /// Starts, restarts or stops the connection's clocks after it was served, and makes sure
    /// a sweep will look at it when its first timeout is due.
    pub(super) fn track_timers(&mut self, id: ConnId) {
        let now = self.dispatch.now;
        let timeouts = self.dispatch.config.timeouts;
        let Some(conn) = find(&mut self.conns, id) else {
            return;
        };
        conn.update_clocks(now, timeouts);
        let due = match verdict(conn.clocks(), now, timeouts) {
            Verdict::Quiet => {
                if conn.has_timers() {
                    self.note_stale_timer();
                }
                return;
            }
            Verdict::Due(due) => due,
            Verdict::Expired(_) => 0, // the next sweep, at once, acts on it
        };
        if !conn.has_timers() {
            conn.set_has_timers(true);
            self.timed.push(id);
        }
        let deadline = Instant::now() + TICK * due;
        self.next_sweep = Some(self.next_sweep.map_or(deadline, |t| t.min(deadline)));
    }

    /// A connection in the list has no timeout running any more; it leaves the list at the next
    /// sweep. When most of the list is such connections (thousands of web connections whose
    /// request clock stopped when their WebSocket opened), that sweep comes now rather than at
    /// the next deadline, so that the list, and its memory, stay the size of what is timed.
    fn note_stale_timer(&mut self) {
        self.stale_timers += 1;
        if self.stale_timers >= STALE_TIMERS_SWEPT && self.stale_timers * 2 > self.timed.len() {
            self.next_sweep = Some(Instant::now());
        }
    }

    /// Checks the connections that have a timeout running, and acts on those that ran out; then
    /// plans the next sweep for the earliest deadline left.
    pub(super) fn sweep_timers(&mut self) {
        self.stale_timers = 0;
        let now = self.dispatch.now;
        let timeouts = self.dispatch.config.timeouts;
        let mut earliest: Option<Ticks> = None;
        let mut i = 0;
        while i < self.timed.len() {
            let id = self.timed[i];
            let Some(conn) = find(&mut self.conns, id) else {
                self.timed.swap_remove(i); // closed since
                continue;
            };
            match verdict(conn.clocks(), now, timeouts) {
                Verdict::Due(due) => {
                    earliest = Some(earliest.map_or(due, |e| e.min(due)));
                    i += 1;
                }
                Verdict::Quiet => {
                    conn.set_has_timers(false);
                    self.timed.swap_remove(i);
                }
                Verdict::Expired(expired) => {
                    conn.set_has_timers(false);
                    self.timed.swap_remove(i);
                    // It may start timers again (an idle goodbye waits under the send timeout),
                    // which puts it back at the end of the list and plans a sweep for it.
                    self.time_out(id, expired);
                }
            }
        }
        let now = Instant::now();
        self.next_sweep = earliest.map(|due| (now + TICK * due).max(now + SWEEP_INTERVAL));
        if self.timed.capacity() > 4 * self.timed.len().max(STALE_TIMERS_SWEPT) {
            self.timed.shrink_to(2 * self.timed.len());
        }
    }

    fn time_out(&mut self, id: ConnId, expired: Expired) {
        let timeouts = self.dispatch.config.timeouts;
        match expired {
            Expired::Line => self.close(id, CloseReason::LineTimeout(TICK * timeouts.line)),
            Expired::Send => self.close(id, CloseReason::SendTimeout(TICK * timeouts.send)),
            Expired::Idle => {
                let notice = self.dispatch.config.idle_notice.clone();
                self.say_goodbye(id, &notice, crate::websocket::CloseCode::Normal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        line: 200,
        send: 300,
        idle: 500,
    };

    fn clocks(line: Ticks, send: Ticks, idle: Ticks) -> Clocks {
        Clocks {
            line_started: line,
            output_stalled: send,
            idle_since: idle,
        }
    }

    #[test]
    fn nothing_runs_without_a_clock_or_a_timeout() {
        assert_eq!(
            verdict(Clocks::STOPPED, 1_000_000, TIMEOUTS),
            Verdict::Quiet
        );
        let off = Timeouts::default();
        assert_eq!(verdict(clocks(0, 0, 0), 1_000_000, off), Verdict::Quiet);
    }

    #[test]
    fn a_timeout_never_fires_early() {
        // Started at tick 100 (a reading that may stand for any moment in that tick): 200
        // ticks later may still be short of 200 ticks, so it has not run out.
        let line = clocks(100, NEVER, NEVER);
        assert_eq!(verdict(line, 100, TIMEOUTS), Verdict::Due(201));
        assert_eq!(verdict(line, 299, TIMEOUTS), Verdict::Due(2));
        assert_eq!(verdict(line, 300, TIMEOUTS), Verdict::Due(1));
        assert_eq!(
            verdict(line, 301, TIMEOUTS),
            Verdict::Expired(Expired::Line)
        );
    }

    #[test]
    fn the_first_to_run_out_decides() {
        let all = clocks(100, 50, 0);
        // Line at 301, send at 351, idle at 501: the line is first.
        assert_eq!(verdict(all, 250, TIMEOUTS), Verdict::Due(51));
        assert_eq!(verdict(all, 301, TIMEOUTS), Verdict::Expired(Expired::Line));
        let send_and_idle = clocks(NEVER, 50, 0);
        assert_eq!(
            verdict(send_and_idle, 351, TIMEOUTS),
            Verdict::Expired(Expired::Send)
        );
        let idle = clocks(NEVER, NEVER, 0);
        assert_eq!(verdict(idle, 500, TIMEOUTS), Verdict::Due(1));
        assert_eq!(
            verdict(idle, 501, TIMEOUTS),
            Verdict::Expired(Expired::Idle)
        );
    }

    #[test]
    fn ages_are_right_across_the_clocks_wrap() {
        let started = NEVER - 10;
        let line = clocks(started, NEVER, NEVER);
        assert_eq!(verdict(line, 100, TIMEOUTS), Verdict::Due(90));
        assert_eq!(
            verdict(line, 191, TIMEOUTS),
            Verdict::Expired(Expired::Line)
        );
    }

    #[test]
    fn durations_become_ticks_rounded_up() {
        assert_eq!(ticks_of(Duration::ZERO), 0);
        assert_eq!(ticks_of(Duration::from_millis(1)), 1);
        assert_eq!(ticks_of(Duration::from_millis(10)), 1);
        assert_eq!(ticks_of(Duration::from_secs(30)), 3000);
        assert_eq!(ticks_of(MAX_TIMEOUT), 864_000_000);
        let t0 = Instant::now();
        assert_eq!(ticks_since(t0, t0 + Duration::from_millis(1999)), 199);
    }
}
