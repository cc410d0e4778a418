//! One event loop: the poll, accepting and admitting connections, serving them when their
//! sockets or the robot have news, closing them (with a lingering close when it is our
//! decision), and the phases of a shutdown.
//!
//! It owns every socket of its connections and never blocks: robot calls that may block run
//! on the pool, which wakes the loop through its `mio::Waker`. What a connection's bytes mean
//! is `dispatch`'s business; when its timeouts run out, `timers`'.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::builder::{Config, HistoryScope};
use super::conn::{find, Conn, Discarded, Lifecycle};
use super::conn_id::{ConnId, LISTENER, WAKER, WEB_LISTENER};
use super::dispatch::{Dispatcher, InlineWork, Turn};
use super::metrics::Metrics;
use super::timers::ticks_since;
use super::transport::Transport;
use super::LoopParts;
use crate::protocol::{encode_error, encode_line, Framer};
use crate::robot::{Conversation, RateLimit};
use crate::websocket::CloseCode;

/// How often, at most, one kind of robot failure is logged.
const ROBOT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Every read lands in one buffer of this size first; only bytes that must wait are copied to a
/// connection.
const SCRATCH_SIZE: usize = 16 * 1024;
/// Reads a lingering connection may take per loop turn before others get theirs.
const DISCARDS_PER_TURN: usize = 16;
/// Connections accepted per loop turn before the connections already open get a turn.
const ACCEPTS_PER_TURN: usize = 256;
/// How long accepting pauses after the system refused to create a socket (out of files).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How often, at most, the same accept failure is logged while it persists.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Time allowed to write shutdown notices once the shutdown timeout has run out.
const NOTICE_GRACE: Duration = Duration::from_secs(1);
/// How long a connection we are closing may take to close its side after our goodbye.
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct EventLoop {
    /// Which loop this is (0 unless `loops` is more than 1).
    index: usize,
    poll: Poll,
    /// `None` once shutting down.
    listener: Option<TcpListener>,
    /// The web listener, if any; `None` once shutting down.
    web_listener: Option<TcpListener>,
    pub(super) conns: Slab<Conn>,
    scratch: Box<[u8]>,
    pub(super) dispatch: Dispatcher,
    greeting: Box<[u8]>,
    refusal: Box<[u8]>,
    /// The refusal of a web listener's connection when the server is full: a `503`.
    web_refusal: Box<[u8]>,
    stop: Arc<AtomicBool>,
    next_generation: u32,
    accept_paused_until: Option<Instant>,
    last_accept_log: Option<Instant>,
    /// Connections that used up their turn's budget with work left, and the listener when it
    /// did: served again next turn.
    rerun: Vec<Token>,
    /// Connections waiting for the client to close after our goodbye, oldest first (all wait
    /// equally long, so this is also deadline order).
    lingering: VecDeque<(ConnId, Instant)>,
    /// When the loop started: the timeouts' clock counts from here.
    started: Instant,
    /// Connections with a timeout running; only these are looked at by the sweeps.
    pub(super) timed: Vec<ConnId>,
    /// How many of `timed` have no timeout running any more (they leave it at the next sweep).
    pub(super) stale_timers: usize,
    pub(super) next_sweep: Option<Instant>,
}

/// Where the loop is in its life.
enum Phase {
    Running,
    /// Waiting for lookups in flight, until the deadline.
    Draining(Instant),
    /// Goodbyes sent; waiting for them to be written, until the deadline.
    Closing(Instant),
}

/// Why a connection was closed, for the log: failures and timeouts at `info`, the ordinary
/// ends of a chat at `debug`.
pub(super) enum CloseReason {
    /// The client closed its side and had everything it asked for.
    ByClient,
    /// The client closed its side after our goodbye (`exit`, idle, shutdown).
    AfterGoodbye,
    /// The client did not close within [`LINGER_TIMEOUT`] of our goodbye.
    LingerTimeout,
    /// The client reset the connection.
    Reset,
    /// Reading or writing failed.
    Failed(io::Error),
    /// `--line-timeout` ran out.
    LineTimeout(Duration),
    /// `--send-timeout` ran out.
    SendTimeout(Duration),
}

impl CloseReason {
    /// Why a read, write or shutdown that failed with `error` ended the connection: the client
    /// went away (reset, or gone before we wrote or shut down our side), which is ordinary; or
    /// a real failure.
    fn of(error: io::Error) -> CloseReason {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => CloseReason::Reset,
            _ => CloseReason::Failed(error),
        }
    }

    fn log_level(&self) -> log::Level {
        match self {
            CloseReason::Failed(_) | CloseReason::LineTimeout(_) | CloseReason::SendTimeout(_) => {
                log::Level::Info
            }
            _ => log::Level::Debug,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ByClient => f.write_str("the client closed the connection"),
            CloseReason::AfterGoodbye => f.write_str("the client closed it after our goodbye"),
            CloseReason::LingerTimeout => write!(
                f,
                "the client did not close within {} s of our goodbye",
                LINGER_TIMEOUT.as_secs()
            ),
            CloseReason::Reset => f.write_str("the client reset the connection"),
            CloseReason::Failed(e) => write!(f, "the connection failed: {e}"),
            CloseReason::LineTimeout(t) => {
                write!(f, "an unfinished line for {} s", t.as_secs_f64())
            }
            CloseReason::SendTimeout(t) => {
                write!(f, "its replies went unread for {} s", t.as_secs_f64())
            }
        }
    }
}

impl EventLoop {
    pub fn new(
        index: usize,
        parts: LoopParts,
        config: Config,
        stop: &Arc<AtomicBool>,
        metrics: &Arc<Metrics>,
    ) -> EventLoop {
        let mut greeting = Vec::new();
        encode_line(&mut greeting, &config.greeting);
        let mut refusal = Vec::new();
        encode_error(
            &mut refusal,
            &format_args!(
                "the server is full ({} connections); try again later. Closing.",
                config.max_connections
            ),
        );
        let web_refusal = http_unavailable(&format!(
            "the server is full ({} connections); try again later",
            config.max_connections
        ));
        let inline = InlineWork::new(config.workers, config.robot.never_blocks());
        EventLoop {
            index,
            poll: parts.poll,
            listener: Some(parts.listener),
            web_listener: parts.web_listener,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            dispatch: Dispatcher {
                loop_index: index,
                config,
                pool: parts.pool,
                lookups_in_flight: 0,
                draining: false,
                now: 0,
                metrics: Arc::clone(metrics),
                out: Vec::new(),
                inline,
                error_log: RateLimit::new(ROBOT_ERROR_LOG_INTERVAL),
            },
            greeting: greeting.into_boxed_slice(),
            refusal: refusal.into_boxed_slice(),
            web_refusal,
            stop: Arc::clone(stop),
            next_generation: 0,
            accept_paused_until: None,
            last_accept_log: None,
            rerun: Vec::new(),
            lingering: VecDeque::new(),
            started: Instant::now(),
            timed: Vec::new(),
            stale_timers: 0,
            next_sweep: None,
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Serves until the server is told to stop, then shuts down gracefully.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut phase = Phase::Running;
        loop {
            // One step can lead to the next at once (no lookups to wait for, no connections
            // left to close), so each is checked in turn before sleeping in poll.
            if matches!(phase, Phase::Running) && self.stop.load(Ordering::SeqCst) {
                phase = self.begin_shutdown();
            }
            if let Phase::Draining(deadline) = phase {
                if self.dispatch.lookups_in_flight == 0 || Instant::now() >= deadline {
                    phase = self.send_shutdown_notices(deadline);
                }
            }
            if let Phase::Closing(deadline) = phase {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    self.close_all();
                    return Ok(());
                }
            }

            let timeout = self.poll_timeout(&phase);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue; // a signal arrived; nothing is wrong
                }
                return Err(e);
            }
            self.dispatch.now = ticks_since(self.started, Instant::now());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(Transport::Line),
                    WEB_LISTENER => self.accept(Transport::Web),
                    WAKER => self.take_completions(),
                    token => {
                        let Some(id) = self.id_of(token) else {
                            continue; // an event for an earlier connection in this slot
                        };
                        if event.is_readable()
                            || event.is_read_closed()
                            || event.is_error()
                            || event.is_priority()
                        {
                            self.conns[id.key].readable(
                                event.is_read_closed() || event.is_error() || event.is_priority(),
                            );
                        }
                        self.serve(id);
                    }
                }
            }
            for token in std::mem::take(&mut self.rerun) {
                if token == LISTENER {
                    self.accept(Transport::Line);
                } else if token == WEB_LISTENER {
                    self.accept(Transport::Web);
                } else if let Some(id) = self.id_of(token) {
                    self.serve(id);
                }
            }
            if self
                .accept_paused_until
                .is_some_and(|t| Instant::now() >= t)
            {
                self.accept_paused_until = None;
                self.accept(Transport::Line);
                self.accept(Transport::Web);
            }
            self.expire_lingering();
            if self.next_sweep.is_some_and(|t| Instant::now() >= t) {
                self.sweep_timers();
            }
            // The turn's robot jobs go to the workers together: one wake-up for many.
            self.dispatch.hand_over();
        }
    }

    fn poll_timeout(&self, phase: &Phase) -> Option<Duration> {
        if !self.rerun.is_empty() {
            return Some(Duration::ZERO);
        }
        let phase_deadline = match *phase {
            Phase::Running => None,
            Phase::Draining(t) | Phase::Closing(t) => Some(t),
        };
        let deadline = [
            phase_deadline,
            self.accept_paused_until,
            self.lingering.front().map(|&(_, t)| t),
            self.next_sweep,
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// The connection a token names, if it is still open.
    fn id_of(&self, token: Token) -> Option<ConnId> {
        let key = ConnId::key_of(token);
        let id = ConnId {
            key,
            generation: self.conns.get(key)?.generation(),
        };
        id.named_by(token).then_some(id)
    }

    // ----- accepting -----

    fn accept(&mut self, transport: Transport) {
        if self.accept_paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let listener = match transport {
                Transport::Line => &self.listener,
                Transport::Web => &self.web_listener,
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((socket, addr)) => self.admit(socket, addr, transport),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_per_connection_accept_error(&e) => {
                    log::info!("a connection failed while being accepted: {e}");
                }
                Err(e) => {
                    self.pause_accepting(&e);
                    return;
                }
            }
        }
        self.rerun.push(match transport {
            Transport::Line => LISTENER,
            Transport::Web => WEB_LISTENER,
        });
    }

    /// Out of file descriptors (or memory): keep serving the connections we have and try again
    /// shortly, or as soon as one of them closes. Never spin, never exit.
    fn pause_accepting(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .last_accept_log
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL)
        {
            self.last_accept_log = Some(now);
            log::warn!(
                "cannot accept connections: {error}; pausing accepts ({} connections open; \
                 raise the open-file limit or lower --max-connections)",
                self.conns.len()
            );
        }
        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
    }

    fn admit(&mut self, mut socket: TcpStream, addr: SocketAddr, transport: Transport) {
        let metrics = &self.dispatch.metrics;
        let open = metrics.open.load(Ordering::Relaxed);
        if open >= self.dispatch.config.max_connections {
            log::info!("refused connection from {addr}: the server is full ({open} connections)");
            Metrics::add(&metrics.refused, 1);
            let refusal = match transport {
                Transport::Line => &self.refusal,
                Transport::Web => {
                    metrics.http_response(503);
                    &self.web_refusal
                }
            };
            // Best effort: it fits in any socket buffer; if not, the close says enough.
            let _ = io::Write::write(&mut socket, refusal);
            return;
        }
        let entry = self.conns.vacant_entry();
        let id = ConnId {
            key: entry.key(),
            generation: self.next_generation,
        };
        self.next_generation = self.next_generation.wrapping_add(1);
        if let Err(e) = self.poll.registry().register(
            &mut socket,
            id.token(),
            // Registered once for everything, edge-triggered, so that no change of state costs
            // a system call. PRIORITY: a read stops short before urgent (out-of-band) data even
            // though more bytes are queued, so such a connection must be read to `WouldBlock`.
            Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY,
        ) {
            log::warn!("cannot watch the connection from {addr}: {e}");
            return;
        }
        // Replies are single small writes that should leave at once.
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY for {addr}: {e}");
        }
        let config = &self.dispatch.config;
        let framer = match transport {
            Transport::Line => Framer::new(config.framing, config.max_line),
            Transport::Web => Framer::websocket(config.max_line),
        };
        let conn = entry.insert(Conn::new(
            socket,
            id.generation,
            framer,
            self.dispatch.now,
            config.proxy_protocol,
        ));
        metrics.open.fetch_add(1, Ordering::Relaxed);
        Metrics::add(&metrics.accepted, 1);
        log::debug!(
            "loop {} accepted {addr}{} (connection {}.{})",
            self.index,
            match transport {
                Transport::Line => "",
                Transport::Web => " on the web listener",
            },
            self.index,
            id.generation,
        );
        if transport == Transport::Web {
            metrics.web_open.fetch_add(1, Ordering::Relaxed);
            Metrics::add(&metrics.web_accepted, 1);
            // Greeted once its WebSocket is open; until then, its request is awaited.
            self.track_timers(id);
            return;
        }
        match conn.send(&self.greeting) {
            Ok(sent) => Metrics::add(&metrics.bytes_out, sent),
            Err(e) => {
                self.close(id, CloseReason::of(e));
                return;
            }
        }
        self.track_timers(id);
    }

    // ----- serving -----

    /// Does everything a connection allows now (see [`Dispatcher::serve`]); closes it when it
    /// is finished or its socket fails.
    fn serve(&mut self, id: ConnId) {
        let Some(conn) = find(&mut self.conns, id) else {
            return;
        };
        if conn.state() == Lifecycle::Lingering {
            match conn.discard_input(&mut self.scratch, DISCARDS_PER_TURN) {
                Ok(Discarded::UntilWouldBlock) => {}
                Ok(Discarded::Budget) => self.rerun.push(id.token()),
                Ok(Discarded::UntilClosed) => self.close(id, CloseReason::AfterGoodbye),
                Err(e) => self.close(id, CloseReason::of(e)),
            }
            return;
        }
        match self.dispatch.serve(conn, id, &mut self.scratch) {
            Ok(Turn::Done) if conn.finished() => self.finish(id),
            Ok(Turn::Done) => self.track_timers(id),
            Ok(Turn::MoreToRead) => {
                self.rerun.push(id.token());
                self.track_timers(id);
            }
            Err(e) => self.close(id, CloseReason::of(e)),
        }
    }

    /// Delivers the robot's answers that have come in, and serves their connections.
    fn take_completions(&mut self) {
        let Some(pool) = &mut self.dispatch.pool else {
            return;
        };
        let completions = pool.take_completions();
        let mut answered = Vec::with_capacity(completions.len());
        for completion in completions {
            let id = ConnId::from_ticket(completion.ticket);
            let Some(conn) = find(&mut self.conns, id).filter(|c| c.lookup_in_flight()) else {
                // The connection closed while its lookup was in flight: the answer has nobody
                // to go to, and must not go to whoever holds the slot now. What the robot added
                // to the conversation after it was forgotten at the close goes too.
                self.forget_conversation(id);
                continue;
            };
            self.dispatch.deliver(conn, completion.result);
            answered.push(id);
        }
        for id in answered {
            self.serve(id);
        }
    }

    /// Makes the robot forget the conversation of a connection that has closed (its answer in
    /// flight, if any, forgets it again when it comes).
    fn forget_conversation(&self, id: ConnId) {
        let config = &self.dispatch.config;
        if config.history_scope == HistoryScope::Connection {
            let conversation = Conversation::Connection(id.conversation(self.index));
            config.robot.end_conversation(&conversation);
        }
    }

    /// Says `notice` as the last line (and, on WebSocket, closes with `code`), and closes once
    /// it is written (idle, shutdown). A web connection still awaiting its request gets `notice`
    /// as a `503` instead (a load balancer's health check, a page being loaded).
    pub(super) fn say_goodbye(&mut self, id: ConnId, notice: &str, code: CloseCode) {
        let Some(conn) = find(&mut self.conns, id) else {
            return;
        };
        let state = conn.state();
        conn.close_after_output();
        match (conn.transport(), state) {
            (Transport::Line, _) | (Transport::Web, Lifecycle::Open) => {
                conn.queue_goodbye(notice, code)
            }
            (Transport::Web, Lifecycle::AwaitingRequest) => {
                self.dispatch.metrics.http_response(503);
                conn.queue_bytes(&http_unavailable(notice));
            }
            _ => {} // nothing can be said before a PROXY header
        }
        match self.dispatch.flush(&mut self.conns[id.key]) {
            Err(e) => self.close(id, CloseReason::of(e)),
            Ok(()) if self.conns[id.key].finished() => self.finish(id),
            // The notice waits for the client to read it (under the send timeout).
            Ok(()) => self.track_timers(id),
        }
    }

    // ----- closing -----

    /// Ends a connection that has nothing left to do.
    ///
    /// If it was our decision (`exit`, shutdown) the client may still be sending, and closing a
    /// socket with unread input makes the kernel send a reset, which can destroy replies not yet
    /// delivered. So we send FIN instead and discard input until the client closes too, for at
    /// most [`LINGER_TIMEOUT`], as nginx's lingering close does.
    fn finish(&mut self, id: ConnId) {
        let Some(conn) = find(&mut self.conns, id) else {
            return;
        };
        if conn.peer_closed() {
            self.close(id, CloseReason::ByClient);
            return;
        }
        if let Err(e) = conn.start_lingering() {
            self.close(id, CloseReason::of(e));
            return;
        }
        self.lingering
            .push_back((id, Instant::now() + LINGER_TIMEOUT));
        self.serve(id); // discard what has already arrived
    }

    fn expire_lingering(&mut self) {
        let now = Instant::now();
        while let Some(&(id, deadline)) = self.lingering.front() {
            if deadline > now {
                break;
            }
            self.lingering.pop_front();
            self.close(id, CloseReason::LingerTimeout); // a no-op if the client closed in time
        }
    }

    pub(super) fn close(&mut self, id: ConnId, why: CloseReason) {
        let index = self.index;
        let Some(conn) = find(&mut self.conns, id) else {
            return;
        };
        let level = why.log_level();
        if log::log_enabled!(level) {
            log::log!(level, "closed {}: {why}", conn.peer_name(index));
        }
        // Dropping the socket closes it, which also removes it from the poll.
        let conn = self.conns.remove(id.key);
        self.dispatch.metrics.open.fetch_sub(1, Ordering::Relaxed);
        if conn.transport() == Transport::Web {
            self.dispatch
                .metrics
                .web_open
                .fetch_sub(1, Ordering::Relaxed);
        }
        if conn.lookup_in_flight() {
            self.dispatch.lookups_in_flight -= 1; // its answer will be dropped when it comes
        }
        self.forget_conversation(id);
        // A file descriptor is free again: if accepting was paused for lack of them, retry.
        if self.accept_paused_until.is_some() {
            self.accept_paused_until = Some(Instant::now());
        }
    }

    // ----- shutting down -----

    fn begin_shutdown(&mut self) -> Phase {
        log::info!(
            "shutting down: {} connections open, {} robot lookups in flight",
            self.conns.len(),
            self.dispatch.lookups_in_flight
        );
        self.listener = None; // stop accepting; the ports are released
        self.web_listener = None;
        self.accept_paused_until = None;
        self.dispatch.draining = true;
        Phase::Draining(deadline_after(self.dispatch.config.shutdown_timeout))
    }

    fn send_shutdown_notices(&mut self, deadline: Instant) -> Phase {
        let notice = self.dispatch.config.shutdown_notice.clone();
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                matches!(
                    c.state(),
                    Lifecycle::Open | Lifecycle::AwaitingProxyHeader | Lifecycle::AwaitingRequest
                )
            })
            .map(|(key, c)| ConnId {
                key,
                generation: c.generation(),
            })
            .collect();
        for id in ids {
            if self.conns[id.key].abandon_lookup() {
                // Past the deadline its answer is no longer awaited.
                self.dispatch.lookups_in_flight -= 1;
            }
            self.say_goodbye(id, &notice, CloseCode::GoingAway);
        }
        Phase::Closing(deadline.max(Instant::now() + NOTICE_GRACE))
    }

    fn close_all(&mut self) {
        if !self.conns.is_empty() {
            log::info!(
                "closing {} connections that did not take their goodbye in time",
                self.conns.len()
            );
        }
        let metrics = &self.dispatch.metrics;
        let web = self
            .conns
            .iter()
            .filter(|(_, c)| c.transport() == Transport::Web)
            .count();
        metrics.open.fetch_sub(self.conns.len(), Ordering::Relaxed);
        metrics.web_open.fetch_sub(web, Ordering::Relaxed);
        self.conns.clear();
    }
}

/// `now + timeout`, or a day from now for timeouts too large to add.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// Accept errors that concern only the one connection being accepted.
fn is_per_connection_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::ETIMEDOUT
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
        )
    )
}

/// A `503` saying `why`, for a web listener's connection that cannot be served (the server
/// is full, or shutting down).
#[cfg(feature = "web")]
fn http_unavailable(why: &str) -> Box<[u8]> {
    crate::web::text_response(503, why).into_boxed_slice()
}

#[cfg(not(feature = "web"))]
fn http_unavailable(_why: &str) -> Box<[u8]> {
    Box::default() // there is no web listener
}
