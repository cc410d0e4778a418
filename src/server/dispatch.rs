//! What happens to the bytes a connection receives: framed into messages, each answered (by
//! the robot on this thread when it never blocks and there are no workers, by a job on the
//! worker pool, or by an `ERR` line), and the reply lines queued and written, in order.
//!
//! A connection has at most one lookup in flight; what arrives meanwhile waits in its input, and
//! while it waits, or while its output is full, it is read at most one buffer ahead. Nothing
//! here blocks, accepts, closes or keeps time: that is the event loop's.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::builder::Config;
use super::builder::HistoryScope;
use super::conn::{Conn, Lifecycle, OUTPUT_LIMIT};
use super::conn_id::ConnId;
use super::metrics::Metrics;
use super::pool::{Job, PoolLink, SubmitError};
use super::timers::Ticks;
use super::transport::{self, Transport};
use crate::protocol::{parse_message, Frame, FrameError, ERROR_PREFIX};
use crate::robot::RateLimit;
use crate::robot::{call_robot, Conversation, Request, RobotError};
use crate::text::cut_to_chars;
use crate::websocket::{self, CloseCode, Event};

/// Reads one connection may take per loop turn before others get theirs.
const READS_PER_TURN: usize = 16;
/// Bad lines in a row (no message between them) after which a connection is closed.
pub(super) const BAD_LINES_IN_A_ROW: u8 = 16;

/// What answering needs besides the connection itself, kept apart from the connection table so
/// that both can be borrowed at once.
pub(super) struct Dispatcher {
    /// Which loop this is, for log lines.
    pub loop_index: usize,
    pub config: Config,
    /// The way to the workers; `None` when the robot answers on this thread (`workers(0)`).
    pub pool: Option<PoolLink>,
    /// Lookups this loop has on the pool and still awaits.
    pub lookups_in_flight: usize,
    /// Shutting down: answer nothing new, only deliver lookups already in flight.
    pub draining: bool,
    /// The clock of the timeouts, read once per loop turn.
    pub now: Ticks,
    /// The counters of the whole server.
    pub metrics: Arc<Metrics>,
    /// The reply lines of the connection being served, written in one go at the end of its turn:
    /// most never need the connection's own output buffer (nor its `Busy` box).
    pub out: Vec<u8>,
    /// How much of the robot's work this loop does itself.
    pub inline: InlineWork,
    /// When each kind of robot failure was last logged.
    pub error_log: RateLimit,
}

/// How much of the robot's work a loop does itself, on its own thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InlineWork {
    /// All of it: there are no workers (the robot never blocks).
    All,
    /// Up to [`INLINE_BUDGET`] of robot time a turn, then the workers take the rest of the
    /// turn's messages: a robot that never blocks, with workers. A message answered on the loop
    /// costs no hand-over to another thread and back; under load, the workers put the other
    /// cores to work.
    Budget { spent: Duration },
    /// None: the robot may block, so it runs on the workers only.
    Nothing,
}

/// The robot time a loop spends on its own answers in one turn before the workers take over.
/// Measured on two cores (README, Performance): from 50 µs to 1 ms, 50 µs did best for the
/// embedded robot under load, and leaves a robot as quick as echo always on the loop.
pub(super) const INLINE_BUDGET: Duration = Duration::from_micros(50);

impl InlineWork {
    /// For a server with `workers` threads and a robot that `never_blocks` (or not).
    pub fn new(workers: usize, never_blocks: bool) -> InlineWork {
        match (workers, never_blocks) {
            (0, _) => InlineWork::All,
            (_, true) => InlineWork::Budget {
                spent: Duration::ZERO,
            },
            (_, false) => InlineWork::Nothing,
        }
    }

    fn has_time(&self) -> bool {
        match self {
            InlineWork::All => true,
            InlineWork::Budget { spent } => *spent < INLINE_BUDGET,
            InlineWork::Nothing => false,
        }
    }

    fn spend(&mut self, took: Duration) {
        if let InlineWork::Budget { spent } = self {
            *spent += took;
        }
    }

    /// A new loop turn: the budget is whole again.
    fn new_turn(&mut self) {
        if let InlineWork::Budget { spent } = self {
            *spent = Duration::ZERO;
        }
    }
}

/// What is left for a connection after its turn.
pub(super) enum Turn {
    /// Nothing until its socket or the robot has news.
    Done,
    /// It used its read budget with bytes still waiting: give it another turn soon.
    MoreToRead,
}

impl Dispatcher {
    /// Does everything a connection allows now: answers the messages waiting in its input,
    /// reads and answers more, and writes its replies.
    pub fn serve(&mut self, conn: &mut Conn, id: ConnId, scratch: &mut [u8]) -> io::Result<Turn> {
        let turn = self.take_turn(conn, id, scratch);
        // Whatever happened, nothing of this connection's may reach the next one.
        self.out.clear();
        turn
    }

    fn take_turn(&mut self, conn: &mut Conn, id: ConnId, scratch: &mut [u8]) -> io::Result<Turn> {
        let mut reads = 0;
        loop {
            self.answer_waiting(conn, id);
            if self.output_full(conn) {
                self.write_turn(conn)?;
                if conn.output_full() {
                    // The client is not reading; WRITABLE will bring us back.
                    return Ok(Turn::Done);
                }
                continue;
            }
            if self.draining || !conn.wants_read() {
                break;
            }
            if reads == READS_PER_TURN {
                self.write_turn(conn)?;
                return Ok(Turn::MoreToRead);
            }
            reads += 1;
            let Some(n) = conn.read(scratch)? else {
                continue; // nothing more now, or the client closed its side
            };
            Metrics::add(&self.metrics.bytes_in, n);
            let bytes = &mut scratch[..n];
            // Framed straight from the scratch buffer when nothing waits before them: only what
            // cannot be answered yet is copied into the connection.
            let nothing_waits = conn.input().is_empty();
            match conn.state() {
                Lifecycle::AwaitingProxyHeader => conn.take_proxy_header(bytes)?,
                Lifecycle::Open if nothing_waits => {
                    let used = self.frame_and_answer(conn, id, bytes);
                    conn.append_input(&bytes[used..]);
                }
                #[cfg(feature = "web")]
                Lifecycle::AwaitingRequest if nothing_waits => {
                    let used = self.answer_request(conn, bytes);
                    conn.append_input(&bytes[used.unwrap_or(0)..]);
                }
                _ => conn.append_input(bytes),
            }
        }
        self.write_turn(conn)?;
        Ok(Turn::Done)
    }

    /// Writes this turn's replies after what the connection has queued; what the socket does
    /// not take waits in the connection's output.
    fn write_turn(&mut self, conn: &mut Conn) -> io::Result<()> {
        let written = if self.out.is_empty() {
            conn.flush()
        } else {
            let sent = conn.send(&self.out);
            self.out.clear();
            sent
        };
        Metrics::add(&self.metrics.bytes_out, written?);
        Ok(())
    }

    /// The connection's replies, this turn's included, have filled what it may hold unsent.
    fn output_full(&self, conn: &Conn) -> bool {
        conn.output_len() + self.out.len() >= OUTPUT_LIMIT
    }

    /// No further message of the connection can be answered now (see [`Conn::blocked`]).
    fn blocked(&self, conn: &Conn) -> bool {
        conn.lookup_in_flight() || self.output_full(conn)
    }

    /// Hands the jobs of this loop turn to the workers, all at once.
    pub fn hand_over(&mut self) {
        self.inline.new_turn();
        if let Some(pool) = &mut self.pool {
            pool.hand_over();
        }
    }

    /// Writes what the connection has queued, counting the bytes.
    pub fn flush(&self, conn: &mut Conn) -> io::Result<()> {
        Metrics::add(&self.metrics.bytes_out, conn.flush()?);
        Ok(())
    }

    /// Delivers the robot's answer to the lookup the connection had in flight (outside its
    /// turn: into the connection's own output).
    pub fn deliver(&mut self, conn: &mut Conn, result: Result<String, RobotError>) {
        conn.lookup_ended(self.now);
        self.lookups_in_flight -= 1;
        if conn.state() == Lifecycle::Open {
            conn.queue_reply(&self.answer_line(result));
        }
    }

    /// Answers what waits in the connection's input, as far as its state allows.
    fn answer_waiting(&mut self, conn: &mut Conn, id: ConnId) {
        if self.draining {
            return;
        }
        #[cfg(feature = "web")]
        if conn.state() == Lifecycle::AwaitingRequest {
            let input = conn.take_input();
            let used = self.answer_request(conn, &input);
            conn.keep_input(input, used.unwrap_or(0));
        }
        // Also right after an upgrade: frames a hasty client sent after its request are
        // answered now, not when it next sends something.
        if conn.state() == Lifecycle::Open {
            let mut input = conn.take_input();
            let used = self.frame_and_answer(conn, id, &mut input);
            conn.keep_input(input, used);
        }
    }

    /// Answers a web connection's request once its head, at the start of `pending`, has come:
    /// the page, `/healthz` or a refusal, then closing; or the WebSocket upgrade and the
    /// greeting. Returns how many bytes the head took, or `None` if it is not whole yet.
    #[cfg(feature = "web")]
    fn answer_request(&mut self, conn: &mut Conn, pending: &[u8]) -> Option<usize> {
        use super::http::{self, Answer};
        let answer = http::answer(pending, &self.config.origins);
        if let Some(status) = answer.status() {
            self.metrics.http_response(status);
        }
        match answer {
            Answer::Incomplete => None,
            Answer::Close {
                response,
                refused_origin,
                ..
            } => {
                if let Some(origin) = refused_origin {
                    log::info!(
                        "refused a WebSocket from {} for a page of {origin:?} (allow it with \
                         --allow-origin)",
                        conn.peer_name(self.loop_index)
                    );
                }
                self.out.extend_from_slice(&response);
                conn.close_after_output();
                Some(pending.len())
            }
            Answer::Upgrade { len, response } => {
                self.out.extend_from_slice(&response);
                Transport::Web.reply(&mut self.out, &self.config.greeting);
                conn.upgraded();
                Some(len)
            }
        }
    }

    /// Takes frames from the front of `pending` and answers them until the connection is
    /// blocked, closing, or needs more bytes. Returns how many bytes were used.
    fn frame_and_answer(&mut self, conn: &mut Conn, id: ConnId, pending: &mut [u8]) -> usize {
        if conn.transport() == Transport::Web {
            return self.frame_websocket_and_answer(conn, id, pending);
        }
        let mut used = 0;
        while !self.blocked(conn) && conn.state() == Lifecycle::Open {
            let decoded = conn.next_frame(&pending[used..]);
            if decoded.needs_more() {
                break;
            }
            used += decoded.consumed;
            if let Some(frame) = decoded.frame {
                self.answer(conn, id, frame);
            }
        }
        used
    }

    /// [`frame_and_answer`](Dispatcher::frame_and_answer) for WebSocket frames: each text
    /// message is one message; pings are answered; a close is echoed; a broken frame closes the
    /// connection with the RFC's code.
    fn frame_websocket_and_answer(
        &mut self,
        conn: &mut Conn,
        id: ConnId,
        pending: &mut [u8],
    ) -> usize {
        let mut used = 0;
        while conn.state() == Lifecycle::Open && !self.output_full(conn) {
            // Messages wait behind the lookup in flight, but a ping is answered at once: a
            // client's keep-alive must not time out while the robot thinks.
            if conn.lookup_in_flight() && !websocket::starts_with_ping_or_pong(&pending[used..]) {
                break;
            }
            let partial = used < pending.len();
            let event = match conn.next_websocket_frame(&mut pending[used..]) {
                Ok(websocket::Decoded::NeedMore) if conn.peer_closed() && partial => {
                    // The client closed its side in the middle of a frame, which can never be
                    // whole now: say so and close, rather than wait for the line timeout.
                    self.close_websocket(conn, CloseCode::Protocol);
                    break;
                }
                Ok(websocket::Decoded::NeedMore) => break,
                Ok(websocket::Decoded::Frame { consumed, event }) => {
                    used += consumed;
                    event
                }
                Err(code) => {
                    self.close_websocket(conn, code);
                    return pending.len();
                }
            };
            match event {
                Event::Text { data, fin: false } => conn.add_fragment(data),
                Event::Text { data, fin: true } => {
                    let mut message = conn.take_fragments();
                    if message.is_empty() {
                        self.answer(conn, id, parse_message(data));
                    } else {
                        message.extend_from_slice(data);
                        self.answer(conn, id, parse_message(&message));
                    }
                }
                Event::Ping(data) => websocket::encode_pong(&mut self.out, data),
                Event::Pong => {}
                Event::Close { code, .. } => {
                    // Echo the client's code, as the RFC asks; then close.
                    websocket::encode_close(&mut self.out, code.unwrap_or(1000), "");
                    conn.close_after_output();
                }
            }
        }
        used
    }

    /// Ends a WebSocket the client broke: a close frame with `code`, then closing.
    fn close_websocket(&mut self, conn: &mut Conn, code: CloseCode) {
        log::debug!("closing {}: {code}", conn.peer_name(self.loop_index));
        transport::close(&mut self.out, code);
        conn.close_after_output();
    }

    fn answer(&mut self, conn: &mut Conn, id: ConnId, frame: Frame<'_>) {
        conn.frame_came(
            self.now,
            matches!(frame, Frame::Message { .. } | Frame::Exit),
        );
        match frame {
            Frame::Message { user, text } => self.ask_robot(conn, id, user, text),
            Frame::Exit => {
                let goodbye = &self.config.goodbye;
                conn.transport()
                    .goodbye(&mut self.out, goodbye, CloseCode::Normal);
                conn.close_after_output();
            }
            Frame::Blank => {}
            Frame::Invalid(error) => self.answer_bad_line(conn, error),
        }
    }

    /// Answers on this thread when there are no workers, or gives the message to the pool (it
    /// is handed over with the rest of the loop's turn, by [`hand_over`](Dispatcher::hand_over)).
    fn ask_robot(&mut self, conn: &mut Conn, id: ConnId, user: &str, text: &str) {
        Metrics::add(&self.metrics.messages, 1);
        let budget = self.config.robot_timeout;
        let scope = self.config.history_scope;
        if self.inline.has_time() {
            let started = Instant::now();
            let deadline = budget.map(|budget| started + budget);
            let request = Request {
                user,
                text,
                conversation: conversation(scope, id, self.loop_index, user),
                deadline,
                budget,
            };
            let result = call_robot(&*self.config.robot, &request);
            let took = started.elapsed();
            self.inline.spend(took);
            self.metrics.robot.record(result.is_ok(), took);
            let line = self.answer_line(result);
            conn.transport().reply(&mut self.out, &line);
            return;
        }
        let Some(link) = &mut self.pool else {
            return; // no pool means everything is answered inline
        };
        // Checked first, so that a message answered busy costs no copies.
        let submitted = link.has_room() && {
            let job = Job {
                ticket: id.ticket(),
                user: user.to_owned(),
                text: text.to_owned(),
                conversation: conversation(scope, id, self.loop_index, user),
                deadline: budget.map(|budget| Instant::now() + budget),
                budget,
            };
            link.submit(job) != Err(SubmitError::Full)
        };
        if submitted {
            conn.lookup_started();
            self.lookups_in_flight += 1;
        } else {
            Metrics::add(&self.metrics.replies_busy, 1);
            conn.transport().error(
                &mut self.out,
                &"the robot is busy; please try again in a moment",
            );
        }
    }

    /// An `ERR` line for a bad line; after [`BAD_LINES_IN_A_ROW`] of them, the last one.
    fn answer_bad_line(&mut self, conn: &mut Conn, error: FrameError) {
        Metrics::add(&self.metrics.replies_error, 1);
        let transport = conn.transport();
        if conn.bad_line_came() < BAD_LINES_IN_A_ROW {
            transport.error(&mut self.out, &error);
            return;
        }
        // Answering garbage without end would only fill the kernel's buffers with error lines
        // (25 times the bytes for a 2-byte bad line): as Redis does with a protocol error, say
        // so once and close.
        let last_words = format!(
            "{ERROR_PREFIX}{error}. That is {BAD_LINES_IN_A_ROW} bad lines in a row; closing the \
             connection."
        );
        transport.goodbye(&mut self.out, &last_words, CloseCode::Policy);
        conn.close_after_output();
        log::info!(
            "closing {}: {BAD_LINES_IN_A_ROW} bad lines in a row",
            conn.peer_name(self.loop_index)
        );
    }

    /// Logs why the robot could not answer (the user is told only the kind of failure): each
    /// kind of failure at most once a minute, so that a robot that keeps failing does not
    /// drown the log, while a new kind shows at once.
    fn log_robot_error(&self, error: &RobotError) {
        if matches!(error, RobotError::Rejected(_)) {
            return; // the user was told why; nothing is wrong with the robot
        }
        if self.error_log.should_log(error.reason()) {
            log::warn!("{error} (each kind logged at most once a minute)");
        }
    }

    /// The robot's answer (or why there is none) as one line of at most `max_reply` characters,
    /// so that no robot, and no error message from a web API, can send a huge line. Counted.
    fn answer_line(&self, result: Result<String, RobotError>) -> String {
        let (line, counter) = match result {
            Ok(reply) => (reply, &self.metrics.replies_ok),
            Err(error) => {
                self.log_robot_error(&error);
                (
                    format!("{ERROR_PREFIX}{}", error.for_user()),
                    &self.metrics.replies_error,
                )
            }
        };
        Metrics::add(counter, 1);
        match cut_to_chars(&line, self.config.max_reply) {
            cut if cut.len() == line.len() => line,
            cut => cut.to_owned(),
        }
    }
}

/// The conversation a message of connection `id` (of loop `loop_index`) belongs to.
fn conversation(scope: HistoryScope, id: ConnId, loop_index: usize, user: &str) -> Conversation {
    match scope {
        HistoryScope::Connection => Conversation::Connection(id.conversation(loop_index)),
        HistoryScope::User => Conversation::User(user.to_owned()),
    }
}
