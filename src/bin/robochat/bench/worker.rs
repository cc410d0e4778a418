//! A client thread's event loop: its own `mio::Poll` and its share of the connections, driven
//! through three phases (open them, optionally one message each, then the timed load), or,
//! with `--churn`, connections opened and closed over and over.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use robochat::websocket::client::HandshakeError;

use super::conn::{Conn, End, Incoming, Stage, Target};
use super::options::Framing;
use super::progress::Progress;
use super::stats::Stats;
use super::timer::Timer;

/// How long a connection may take from connect to greeting before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection's single message may wait for its reply.
const IDLE_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// After the sending stops, how long replies still outstanding are waited for.
pub const GRACE: Duration = Duration::from_secs(2);
/// Longest single wait in the event loop, so deadlines and progress are never far behind.
const TICK: Duration = Duration::from_millis(100);
/// The open-loop timer's token (connections use their index).
const TIMER: Token = Token(usize::MAX);
/// Size of the buffer each read lands in (one per worker; also the longest legacy reply).
const SCRATCH: usize = 64 * 1024;

/// What the timed phase does; the same for every worker but for the open-loop share.
#[derive(Clone, Copy)]
pub struct Load {
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop: this worker's messages per second, and where in the first interval its
    /// schedule starts (a fraction 0..1, so workers do not all send at the same instants).
    pub rate: Option<(f64, f64)>,
}

/// What a reply means in the current phase.
enum Mode {
    Opening,
    IdleRound,
    Active {
        /// Messages due from here on are counted.
        measure_from: Instant,
        /// No message is sent from here on.
        stop_sending_at: Instant,
        closed_loop: bool,
    },
    Churn {
        /// Handshakes started from here on are counted.
        measure_from: Instant,
        /// No connect is started from here on.
        stop_at: Instant,
    },
}

/// One socket's readiness, copied out of `Events` so the handlers may borrow the worker.
#[derive(Clone, Copy)]
struct Ready {
    index: usize,
    readable: bool,
    /// The peer closed its side: read to the end, not just until a short read.
    hangup: bool,
    writable: bool,
    error: bool,
}

pub struct Worker {
    poll: Poll,
    events: Events,
    ready: Vec<Ready>,
    conns: Vec<Conn>,
    scratch: Box<[u8]>,
    /// What the connection being handled produced, handled in order.
    incoming: VecDeque<Incoming>,
    target: Target,
    framing: Framing,
    message: Arc<[u8]>,
    /// Churn, line framing: the message that asks the server to close.
    exit: Arc<[u8]>,
    mode: Mode,
    /// Open loop: wakes the loop when the next message is due.
    timer: Option<Timer>,
    /// Churn: slots whose connection is done (greeted, failed or ended) and opens again.
    restart: Vec<usize>,
    /// Messages sent and not yet answered or lost, over all connections.
    outstanding: usize,
    /// Connections started and neither greeted nor failed yet.
    connecting: usize,
    /// Connections greeted and not yet ended.
    open: usize,
    /// Replies not yet added to the shared progress counter (added once per loop turn).
    unreported_replies: u64,
    progress: Arc<Progress>,
    pub stats: Stats,
}

impl Worker {
    pub fn new(
        target: Target,
        framing: Framing,
        message: Arc<[u8]>,
        exit: Arc<[u8]>,
        progress: Arc<Progress>,
    ) -> io::Result<Worker> {
        Ok(Worker {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            conns: Vec::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            incoming: VecDeque::new(),
            target,
            framing,
            message,
            exit,
            mode: Mode::Opening,
            timer: None,
            restart: Vec::new(),
            outstanding: 0,
            connecting: 0,
            open: 0,
            unreported_replies: 0,
            progress,
            stats: Stats::default(),
        })
    }

    /// Opens `count` more connections, at most `concurrency` between connect and greeting at
    /// once, and returns when each one has been greeted or has failed.
    pub fn open(&mut self, count: usize, concurrency: usize) -> io::Result<()> {
        self.mode = Mode::Opening;
        let mut started = 0;
        // Connections in the order they started, so the oldest (first to time out) is in front.
        let mut order = VecDeque::new();
        loop {
            while started < count && self.connecting < concurrency {
                order.extend(self.start_connect());
                started += 1;
            }
            let now = Instant::now();
            while let Some(&i) = order.front() {
                let conn = &mut self.conns[i];
                if conn.stage == Stage::Connecting {
                    if now.duration_since(conn.started) < CONNECT_TIMEOUT {
                        break;
                    }
                    let unterminated = conn.has_partial_line();
                    conn.close();
                    self.connecting -= 1;
                    self.stats.connect_failed(|| {
                        let hint = if unterminated {
                            " (a greeting without a newline came: is it the tutorial's server? \
                             try --framing legacy)"
                        } else {
                            ""
                        };
                        format!("no greeting within {CONNECT_TIMEOUT:?}{hint}")
                    });
                }
                order.pop_front();
            }
            if started == count && self.connecting == 0 {
                return Ok(());
            }
            let wait = order.front().map_or(TICK, |&i| {
                (self.conns[i].started + CONNECT_TIMEOUT).saturating_duration_since(now)
            });
            self.poll_once(wait.min(TICK))?;
        }
    }

    /// Each open connection sends one message and waits for its reply, at most `concurrency`
    /// in flight at once. A reply not back within 10 s is a timeout, and that connection is
    /// closed (a late reply would otherwise be taken for the answer to a later message).
    pub fn idle_round(&mut self, concurrency: usize) -> io::Result<()> {
        self.mode = Mode::IdleRound;
        let mut next = 0;
        let mut order = VecDeque::new();
        loop {
            while next < self.conns.len() && self.outstanding < concurrency {
                if self.conns[next].stage == Stage::Open {
                    self.send_and_handle(next, Instant::now());
                    order.push_back(next);
                }
                next += 1;
            }
            let now = Instant::now();
            while let Some(&i) = order.front() {
                let conn = &mut self.conns[i];
                if let Some(due) = conn.oldest_due() {
                    if now.duration_since(due) < IDLE_REPLY_TIMEOUT {
                        break;
                    }
                    let unanswered = conn.close();
                    self.outstanding -= unanswered;
                    self.stats.timeouts += unanswered as u64;
                    self.connection_gone();
                }
                order.pop_front();
            }
            if next == self.conns.len() && self.outstanding == 0 {
                return Ok(());
            }
            let wait = order
                .front()
                .and_then(|&i| self.conns[i].oldest_due())
                .map_or(TICK, |due| {
                    (due + IDLE_REPLY_TIMEOUT).saturating_duration_since(now)
                });
            self.poll_once(wait.min(TICK))?;
        }
    }

    /// The timed phase: warmup, then the measured duration, then up to [`GRACE`] for the last
    /// replies. Replies still missing after that are counted as timeouts.
    pub fn run(&mut self, load: Load) -> io::Result<()> {
        let start = Instant::now();
        let measure_from = start + load.warmup;
        let stop_sending_at = measure_from + load.duration;
        let grace_end = stop_sending_at + GRACE;
        self.mode = Mode::Active {
            measure_from,
            stop_sending_at,
            closed_loop: load.rate.is_none(),
        };
        let mut schedule = load
            .rate
            .map(|(rate, phase)| Schedule::new(start, rate, phase, self.conns.len()));
        if schedule.is_some() {
            // Without it (not Linux), the poll timeout wakes the loop, to the millisecond.
            self.timer = Timer::new(self.poll.registry(), TIMER).ok();
        } else {
            // Closed loop: every connection starts with one message; each reply sends the next.
            for i in 0..self.conns.len() {
                self.send_and_handle(i, start);
            }
        }
        loop {
            let now = Instant::now();
            let sending = now < stop_sending_at;
            if !sending && (self.outstanding == 0 || now >= grace_end) {
                break;
            }
            if self.open == 0 && self.outstanding == 0 {
                break; // every connection is gone: nothing more can happen
            }
            let mut wake = if sending { stop_sending_at } else { grace_end };
            if let Some(schedule) = schedule.as_mut().filter(|_| sending) {
                let next = self.send_due(schedule, now, measure_from, stop_sending_at);
                let after = next.saturating_duration_since(Instant::now());
                match &self.timer {
                    Some(timer) if timer.set(after).is_ok() => {}
                    _ => wake = wake.min(next),
                }
            }
            self.report_progress();
            self.poll_once(wake.saturating_duration_since(now).min(TICK))?;
        }
        self.stats.timeouts += self.outstanding as u64;
        self.outstanding = 0;
        self.report_progress();
        Ok(())
    }

    /// Churn: `slots` connections, each opened, greeted, closed and opened again until the
    /// warmup and the duration are over; then up to [`GRACE`] for the handshakes under way.
    pub fn churn(&mut self, slots: usize, load: Load) -> io::Result<()> {
        let start = Instant::now();
        let measure_from = start + load.warmup;
        let stop_at = measure_from + load.duration;
        let grace_end = stop_at + GRACE;
        self.mode = Mode::Churn {
            measure_from,
            stop_at,
        };
        let first = self.conns.len();
        self.conns.extend((0..slots).map(|_| Conn::none()));
        self.restart.extend(first..first + slots);
        let mut next_timeout_check = start;
        loop {
            let now = Instant::now();
            let sending = now < stop_at;
            for i in std::mem::take(&mut self.restart) {
                self.reopen(i, sending);
            }
            if !sending && ((self.connecting == 0 && self.open == 0) || now >= grace_end) {
                break;
            }
            if now >= next_timeout_check {
                self.churn_timeouts(first, now);
                next_timeout_check = now + TICK;
            }
            self.report_progress();
            let wake = if now < stop_at { stop_at } else { grace_end };
            self.poll_once(wake.saturating_duration_since(now).min(TICK))?;
        }
        // Connects and closes still under way at the end of the grace period are dropped
        // uncounted.
        for conn in &mut self.conns[first..] {
            if conn.stage != Stage::Closed {
                conn.close();
            }
        }
        self.progress.open.fetch_sub(self.open, Relaxed);
        self.connecting = 0;
        self.open = 0;
        self.report_progress();
        Ok(())
    }

    /// Churn: closes slot `i`'s connection if it is open, and with `again` connects it again.
    /// A slot whose connect failed at once is tried again on the next loop turn.
    fn reopen(&mut self, i: usize, again: bool) {
        match self.conns[i].stage {
            // Restarted already (it was listed twice), or closing (listed again once closed).
            Stage::Connecting | Stage::Closing => return,
            Stage::Open => {
                self.conns[i].close();
                self.connection_gone();
            }
            Stage::Closed => {}
        }
        if !again {
            return;
        }
        match Conn::connect(
            &self.target,
            i,
            self.framing,
            self.poll.registry(),
            Token(i),
        ) {
            Ok(conn) => {
                self.conns[i] = conn;
                self.connecting += 1;
            }
            Err(e) => {
                self.stats.connect_failed(|| e.to_string());
                self.restart.push(i);
            }
        }
    }

    /// Churn: connections from slot `first` still waiting, [`CONNECT_TIMEOUT`] after their
    /// connect started, for their greeting or for the server to close them, fail, and start
    /// again.
    fn churn_timeouts(&mut self, first: usize, now: Instant) {
        for i in first..self.conns.len() {
            let conn = &mut self.conns[i];
            if now.duration_since(conn.started) < CONNECT_TIMEOUT {
                continue;
            }
            match conn.stage {
                Stage::Connecting => {
                    conn.close();
                    self.connecting -= 1;
                    self.stats
                        .connect_failed(|| format!("no greeting within {CONNECT_TIMEOUT:?}"));
                }
                Stage::Closing => {
                    conn.close();
                    self.connection_gone();
                    self.stats.connect_failed(|| {
                        format!(
                            "the server did not close within {CONNECT_TIMEOUT:?} of the connect"
                        )
                    });
                }
                Stage::Open | Stage::Closed => continue,
            }
            self.restart.push(i);
        }
    }

    /// Open loop: sends every message due by `now`; returns when the next one is due. Counts the
    /// messages due in the measured window and those of them sent, so that the report can say
    /// whether the rate was kept.
    fn send_due(
        &mut self,
        schedule: &mut Schedule,
        now: Instant,
        measure_from: Instant,
        stop: Instant,
    ) -> Instant {
        loop {
            let (due, conn) = schedule.peek();
            if due > now || due >= stop {
                return due;
            }
            // A message scheduled on a connection that is gone is not sent; the connection's end
            // is already counted as an error.
            let sent = self.send_and_handle(conn, due);
            if due >= measure_from {
                self.stats.due += 1;
                self.stats.sent_measured += u64::from(sent);
            }
            schedule.advance();
        }
    }

    /// Starts one connect; returns its index, or counts the failure.
    fn start_connect(&mut self) -> Option<usize> {
        let index = self.conns.len();
        match Conn::connect(
            &self.target,
            index,
            self.framing,
            self.poll.registry(),
            Token(index),
        ) {
            Ok(conn) => {
                self.conns.push(conn);
                self.connecting += 1;
                Some(index)
            }
            Err(e) => {
                self.stats.connect_failed(|| e.to_string());
                None
            }
        }
    }

    /// Sends the message on connection `i` if it is open, due at `due`. What the write
    /// produced (a failed write ends the connection) waits in `incoming`: the caller handles it.
    fn send(&mut self, i: usize, due: Instant) -> bool {
        if self.conns[i].stage != Stage::Open {
            return false;
        }
        self.conns[i].send(&self.message, due, &mut self.incoming);
        self.stats.sent += 1;
        self.outstanding += 1;
        true
    }

    /// [`send`](Self::send), then handles what it produced. Returns whether it was sent.
    fn send_and_handle(&mut self, i: usize, due: Instant) -> bool {
        let sent = self.send(i, due);
        self.handle_incoming(i);
        sent
    }

    fn poll_once(&mut self, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        self.ready.clear();
        self.ready.extend(self.events.iter().map(|e| Ready {
            index: e.token().0,
            readable: e.is_readable() || e.is_read_closed(),
            hangup: e.is_read_closed(),
            writable: e.is_writable(),
            error: e.is_error(),
        }));
        let ready = std::mem::take(&mut self.ready);
        for r in &ready {
            self.on_ready(*r);
        }
        self.ready = ready; // keep its capacity
        Ok(())
    }

    fn on_ready(&mut self, r: Ready) {
        if r.index == TIMER.0 {
            if let Some(timer) = &self.timer {
                timer.acknowledge();
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(r.index) else {
            return;
        };
        // What arrived before an error is read first: a full web listener's 503 is followed by
        // a reset when the upgrade request reached it after it closed.
        if r.readable || r.error {
            let drain = r.hangup || r.error;
            conn.receive(&mut self.scratch, drain, &mut self.incoming);
        }
        if r.error {
            if let Some(e) = conn.take_error() {
                conn.fail(e, &mut self.incoming);
            }
        }
        if r.writable {
            conn.flush(&mut self.incoming);
        }
        self.handle_incoming(r.index);
    }

    /// Handles, in order, what connection `i` produced (including what handling it produces).
    fn handle_incoming(&mut self, i: usize) {
        while let Some(item) = self.incoming.pop_front() {
            let now = Instant::now();
            match item {
                Incoming::Greeting => {
                    self.connecting -= 1;
                    self.open += 1;
                    self.progress.open.fetch_add(1, Relaxed);
                    let started = self.conns[i].started;
                    let micros = saturate(now.duration_since(started).as_micros());
                    self.stats.record_connect(micros);
                    if let Mode::Churn {
                        measure_from,
                        stop_at,
                    } = self.mode
                    {
                        if started >= measure_from && started < stop_at {
                            self.stats.handshakes += 1;
                            self.stats.record_latency(micros);
                            self.unreported_replies += 1;
                        }
                        if self.framing == Framing::Legacy {
                            // The tutorial's server may not know `exit`: closed from here.
                            self.restart.push(i);
                        } else {
                            // Opens again once the server has closed it.
                            self.conns[i].start_closing(&self.exit, &mut self.incoming);
                        }
                    }
                }
                Incoming::Refused => {
                    self.connecting -= 1;
                    self.stats.connect_failed(|| {
                        "the greeting was an ERR message (is the server full?)".into()
                    });
                    self.restart_in_churn(i);
                }
                Incoming::Reply { due, err } => self.on_reply(i, due, err, now),
                Incoming::Unexpected => self.stats.protocol_errors += 1,
                Incoming::Closed => {
                    self.connection_gone();
                    self.restart_in_churn(i);
                }
                Incoming::Ended {
                    why,
                    connecting,
                    lost,
                } => {
                    self.outstanding -= lost;
                    if connecting {
                        self.connecting -= 1;
                        self.stats.connect_failed(|| describe(&why));
                    } else {
                        self.stats.lost += lost as u64;
                        match why {
                            End::Overlong | End::BadFrame(_) | End::Handshake(_) => {
                                self.stats.protocol_errors += 1
                            }
                            End::Eof | End::Error(_) | End::CloseFrame(_) => {
                                self.stats.closed_by_server += 1
                            }
                        }
                        self.connection_gone();
                    }
                    self.restart_in_churn(i);
                }
            }
        }
    }

    fn on_reply(&mut self, i: usize, due: Instant, err: bool, now: Instant) {
        self.outstanding -= 1;
        self.unreported_replies += 1;
        if err {
            self.stats.err_replies += 1;
        }
        if let Mode::Active {
            measure_from,
            stop_sending_at,
            closed_loop,
        } = self.mode
        {
            if !err && due >= measure_from {
                self.stats.messages += 1;
                self.stats
                    .record_latency(saturate(now.duration_since(due).as_micros()));
            }
            if closed_loop && now < stop_sending_at {
                // Handled by the loop in `handle_incoming` that called us.
                self.send(i, now);
            }
        }
    }

    /// Churn: slot `i` opens again on the next loop turn.
    fn restart_in_churn(&mut self, i: usize) {
        if matches!(self.mode, Mode::Churn { .. }) {
            self.restart.push(i);
        }
    }

    fn connection_gone(&mut self) {
        self.open -= 1;
        self.progress.open.fetch_sub(1, Relaxed);
    }

    fn report_progress(&mut self) {
        if self.unreported_replies > 0 {
            self.progress
                .replies
                .fetch_add(std::mem::take(&mut self.unreported_replies), Relaxed);
        }
    }

    /// Closes every connection (at the end, after the server's memory was measured).
    pub fn close_all(&mut self) {
        self.report_progress();
        for conn in &mut self.conns {
            if matches!(conn.stage, Stage::Open | Stage::Closing) {
                self.progress.open.fetch_sub(1, Relaxed);
            }
            conn.close();
        }
        self.open = 0;
    }
}

/// The open-loop timetable of one worker: message m is due at start + (m + phase) / rate and
/// goes to connection m mod n, so each connection gets every n-th message at an even pace.
struct Schedule {
    start: Instant,
    rate: f64,
    phase: f64,
    conns: usize,
    next: u64,
}

impl Schedule {
    fn new(start: Instant, rate: f64, phase: f64, conns: usize) -> Schedule {
        Schedule {
            start,
            rate,
            phase,
            conns: conns.max(1),
            next: 0,
        }
    }

    fn peek(&self) -> (Instant, usize) {
        let offset = Duration::from_secs_f64((self.next as f64 + self.phase) / self.rate);
        let conn = (self.next % self.conns as u64) as usize;
        (self.start + offset, conn)
    }

    fn advance(&mut self) {
        self.next += 1;
    }
}

fn saturate(micros: u128) -> u64 {
    u64::try_from(micros).unwrap_or(u64::MAX)
}

fn describe(why: &End) -> String {
    match why {
        End::Eof => "closed by the server before its greeting".into(),
        End::Error(e) => e.to_string(),
        End::Overlong => "the greeting was longer than 64 KiB".into(),
        End::Handshake(e @ HandshakeError::Status(503)) => format!("{e} (is the server full?)"),
        End::Handshake(e @ HandshakeError::Malformed) => {
            format!("{e} (is --connect the server's web listener?)")
        }
        End::Handshake(e) => e.to_string(),
        End::BadFrame(code) => format!("a frame before the greeting that a client refuses: {code}"),
        End::CloseFrame(code) => match code {
            Some(code) => format!("a close frame ({code}) before the greeting"),
            None => "a close frame before the greeting".into(),
        },
    }
}
