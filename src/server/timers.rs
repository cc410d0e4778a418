//! Connection timeouts: an unfinished line (`--line-timeout`), replies that go unread
//! (`--send-timeout`), and silence (`--idle-timeout`).
//!
//! Only connections with a timeout running are in the loop's `timed` list, and the list is
//! checked once a second, so idle connections without one cost nothing and no loop turn walks
//! every connection. Times are whole seconds of the loop's clock (`Ctx::now`).

use std::time::Instant;

use mio::Token;

use super::builder::Config;
use super::conn::{Conn, NEVER};
use super::{encode_line, same_generation, split_token, CloseReason, EventLoop, TIMER_SWEEP};

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
        let (line_on, send_on, idle_on) = (
            config.line_timeout > 0,
            config.send_timeout > 0,
            config.idle_timeout > 0,
        );
        let Some(conn) = self.conn_mut(token) else {
            return;
        };
        if conn.lingering {
            return; // it has its own deadline
        }
        if line_on && conn.has_partial_line() {
            if conn.line_started == NEVER {
                conn.line_started = now;
            }
        } else {
            conn.line_started = NEVER;
        }
        let moved = std::mem::take(&mut conn.output_moved);
        if send_on && !conn.output.is_empty() {
            if moved || conn.output_stalled == NEVER {
                conn.output_stalled = now;
            }
        } else {
            conn.output_stalled = NEVER;
        }
        let running = conn.line_started != NEVER || conn.output_stalled != NEVER || idle_on;
        if running && !conn.has_timers {
            conn.has_timers = true;
            self.timed.push(token);
            if self.next_sweep.is_none() {
                self.next_sweep = Some(Instant::now() + TIMER_SWEEP);
            }
        }
    }

    /// Checks the connections that have a timeout running, and acts on those that ran out.
    pub(super) fn sweep_timers(&mut self) {
        let now = self.ctx.now;
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
                Some(Ok(true)) => i += 1,
                Some(Ok(false)) | None => {
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
                    self.time_out(token, expired);
                }
            }
        }
        self.next_sweep = if self.timed.is_empty() {
            None
        } else {
            Some(Instant::now() + TIMER_SWEEP)
        };
    }

    fn time_out(&mut self, token: Token, expired: Expired) {
        let config = &self.ctx.config;
        let (line_secs, send_secs) = (config.line_timeout, config.send_timeout);
        let mut notice = Vec::new();
        encode_line(&mut notice, &config.idle_notice);
        let Some(conn) = self.conn_mut(token) else {
            return;
        };
        match expired {
            Expired::Line => self.close(token, CloseReason::LineTimeout(line_secs)),
            Expired::Send => self.close(token, CloseReason::SendTimeout(send_secs)),
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

/// Whether a connection's timeouts still run (`Ok(true)`), have all stopped (`Ok(false)`), or
/// one has run out.
fn timer_verdict(conn: &Conn, now: u32, config: &Config) -> Result<bool, Expired> {
    // Whole seconds, cut down: `since` may be up to a second later than it says, so a timeout
    // runs out only when more than `secs` whole seconds have passed (never early; at most two
    // seconds late, counting the sweep).
    let ran_out = |since: u32, secs: u32| since != NEVER && now.saturating_sub(since) > secs;
    if conn.lingering {
        return Ok(false);
    }
    if config.line_timeout > 0 && ran_out(conn.line_started, config.line_timeout) {
        return Err(Expired::Line);
    }
    if config.send_timeout > 0 && ran_out(conn.output_stalled, config.send_timeout) {
        return Err(Expired::Send);
    }
    let idle_on = config.idle_timeout > 0 && !conn.closing;
    if idle_on && !conn.lookup_in_flight && ran_out(conn.last_message, config.idle_timeout) {
        return Err(Expired::Idle);
    }
    Ok(conn.line_started != NEVER || conn.output_stalled != NEVER || idle_on)
}
