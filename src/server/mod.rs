//! The server: one single-threaded mio event loop owning every socket.
//!
//! The loop accepts connections, reads into one shared scratch buffer, frames messages, answers
//! them (or hands them to the [`WorkerPool`]), and writes replies. It never blocks: robot calls
//! run on the workers (unless the robot never blocks and there are none), which wake the loop
//! through a `mio::Waker` when answers are ready.
//!
//! Tokens carry a connection's slab key and a generation, so that an event or a late robot
//! answer for a closed connection can never reach a newer one that reuses its slot.

mod builder;
mod conn;
mod listen;
mod metrics;
mod metrics_endpoint;
mod timers;

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::protocol::{encode_error, encode_line, Frame, Framer};
use crate::proxy_protocol::{self, ProxyHeader, ProxyParse};
use crate::robot::{call_robot, Completions, Job, RobotError, SubmitError, WorkerPool};
use metrics::Metrics;
use metrics_endpoint::MetricsEndpoint;

use builder::Config;
pub use builder::{
    BuildError, ServerBuilder, DEFAULT_BACKLOG, DEFAULT_GREETING, DEFAULT_SEND_BUFFER,
};
use conn::{Conn, Discarded};
pub use timers::MAX_TIMEOUT;
use timers::{ticks_since, Ticks, NEVER};

/// The largest `max_connections` accepted: slab keys must fit in the low half of a token.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 24;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// Bits of a token that hold the slab key; the generation sits above them.
const KEY_BITS: u32 = 24;
/// Generations wrap within the bits above the key, leaving the top bit clear so that no
/// connection's token can equal a fixed token.
const GENERATION_BITS: u32 = usize::BITS - KEY_BITS - 1;
const GENERATION_MASK: u32 = if GENERATION_BITS > 31 {
    u32::MAX
} else {
    (1 << GENERATION_BITS) - 1
};
const SCRATCH_SIZE: usize = 16 * 1024;
/// Bad lines in a row (no message between them) after which a connection is closed.
const BAD_LINES_IN_A_ROW: u8 = 16;
/// Reads one connection may take per loop turn before others get theirs.
const READS_PER_TURN: usize = 16;
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

/// A chat-robot server, bound and ready to [`run`](Server::run).
pub struct Server {
    /// One per event loop (`loops`), each with its own listener on the shared port.
    loops: Vec<LoopParts>,
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    config: Config,
    pool: Option<(WorkerPool, Vec<Completions>)>,
    metrics: Arc<Metrics>,
    /// Bound when `--metrics` is set; served by a thread of its own.
    metrics_listener: Option<std::net::TcpListener>,
}

/// What one event loop owns before it runs.
struct LoopParts {
    poll: Poll,
    listener: TcpListener,
    waker: Arc<Waker>,
}

/// Stops a running server from another thread. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    wakers: Arc<[Arc<Waker>]>,
    stop: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Asks the server to shut down gracefully: stop accepting, let robot lookups in flight
    /// deliver their replies (up to the shutdown timeout), send each client a goodbye line and
    /// close. [`Server::run`] then returns.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for waker in self.wakers.iter() {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake an event loop to shut down: {e}");
            }
        }
    }
}

impl Server {
    /// Starts building a server; see [`ServerBuilder`] for the settings and their defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    fn bind(addrs: &[SocketAddr], mut config: Config) -> Result<Server, BuildError> {
        // Several loops share the port the way several processes do.
        config.reuse_port |= config.loops > 1;
        let options = config.listen_options();
        if let Some(cap) = listen::backlog_cap().filter(|&cap| cap < config.backlog) {
            log::warn!(
                "the listen backlog is {} but the system caps it at {cap} \
                 (net.core.somaxconn): raise that with sysctl for reconnect storms",
                config.backlog
            );
        }
        let mut last_error = None;
        let mut bound = None;
        for &addr in addrs {
            match listen::listen(addr, options) {
                Ok(listener) => {
                    bound = Some(listener);
                    break;
                }
                Err(error) => {
                    last_error = Some(BuildError::Bind {
                        setting: "listen",
                        addr,
                        error,
                    })
                }
            }
        }
        let Some(first) = bound else {
            return Err(last_error
                .unwrap_or_else(|| BuildError::Address("the name has no addresses".into())));
        };
        let local_addr = first.local_addr()?;
        let mut loops = vec![LoopParts::new(first)?];
        for _ in 1..config.loops {
            let listener =
                listen::listen(local_addr, options).map_err(|error| BuildError::Bind {
                    setting: "listen",
                    addr: local_addr,
                    error,
                })?;
            loops.push(LoopParts::new(listener)?);
        }
        let metrics = Arc::new(Metrics::new(Arc::clone(&config.robot), config.workers));
        let pool = if config.workers == 0 {
            None
        } else {
            Some(WorkerPool::start(
                Arc::clone(&config.robot),
                config.workers,
                config.queue,
                config.robot_delay,
                loops.iter().map(|l| Arc::clone(&l.waker)).collect(),
                Arc::clone(&metrics.robot),
            )?)
        };
        let metrics_listener = match config.metrics {
            Some(addr) => {
                Some(
                    std::net::TcpListener::bind(addr).map_err(|error| BuildError::Bind {
                        setting: "metrics",
                        addr,
                        error,
                    })?,
                )
            }
            None => None,
        };
        Ok(Server {
            loops,
            local_addr,
            stop: Arc::new(AtomicBool::new(false)),
            config,
            pool,
            metrics,
            metrics_listener,
        })
    }

    /// The address the server listens on (with the real port when it was asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics endpoint, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// A handle that stops the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            wakers: self.loops.iter().map(|l| Arc::clone(&l.waker)).collect(),
            stop: Arc::clone(&self.stop),
        }
    }

    /// Serves clients until [`ServerHandle::shutdown`] is called: the first event loop on this
    /// thread, any others on threads of their own.
    ///
    /// Errors are returned only if an event loop itself fails; a failing connection is closed
    /// and logged, and never stops the server.
    pub fn run(self) -> io::Result<()> {
        log::info!(
            "robochat listening on {} (robot {}, {} workers, {} loop{}, framing {}, up to {} \
             connections)",
            self.local_addr,
            self.config.robot.name(),
            self.config.workers,
            self.config.loops,
            if self.config.loops == 1 { "" } else { "s" },
            self.config.framing,
            self.config.max_connections,
        );
        // If one loop fails, the others are told to stop too, or `run` would never return.
        let everyone = self.handle();
        let metrics = self.metrics;
        let endpoint = match self.metrics_listener {
            Some(listener) => {
                log::info!("metrics on http://{}/metrics", listener.local_addr()?);
                Some(MetricsEndpoint::start(listener, Arc::clone(&metrics))?)
            }
            None => None,
        };
        let (pool, completions) = match self.pool {
            Some((pool, completions)) => (Some(pool), completions),
            None => (None, Vec::new()),
        };
        // One `Completions` per loop, in loop order.
        let mut completions = completions.into_iter();
        let mut loops: Vec<EventLoop> = self
            .loops
            .into_iter()
            .enumerate()
            .map(|(index, parts)| {
                let link = pool
                    .clone()
                    .zip(completions.next())
                    .map(|(pool, completions)| PoolLink {
                        pool,
                        completions,
                        origin: index,
                    });
                EventLoop::new(
                    index,
                    parts,
                    self.config.clone(),
                    link,
                    &self.stop,
                    &metrics,
                )
            })
            .collect();
        drop(pool); // the loops hold the pool now; when they are gone, the workers end
        let mut first = loops.remove(0);
        let mut others = Vec::with_capacity(loops.len());
        for mut event_loop in loops {
            let stopper = everyone.clone();
            let spawned = thread::Builder::new()
                .name(format!("robochat-loop-{}", event_loop.index))
                .spawn(move || {
                    let outcome = event_loop.run();
                    if outcome.is_err() {
                        stopper.shutdown();
                    }
                    outcome
                });
            match spawned {
                Ok(thread) => others.push(thread),
                Err(e) => {
                    everyone.shutdown();
                    if let Some(endpoint) = endpoint {
                        endpoint.stop();
                    }
                    return Err(e);
                }
            }
        }
        let mut result = first.run();
        if result.is_err() {
            everyone.shutdown();
        }
        for thread in others {
            let outcome = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an event loop panicked")));
            result = result.and(outcome);
        }
        if let Some(endpoint) = endpoint {
            endpoint.stop();
        }
        result
    }
}

impl LoopParts {
    fn new(mut listener: TcpListener) -> io::Result<LoopParts> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(LoopParts {
            poll,
            listener,
            waker,
        })
    }
}

/// One event loop's way to the worker pool.
struct PoolLink {
    pool: WorkerPool,
    completions: Completions,
    /// This loop's index: the answers to its jobs come back to it.
    origin: usize,
}

/// What answering a message needs, kept apart from the connection table so both can be
/// borrowed at once.
struct Ctx {
    /// Which loop this is, for log lines.
    loop_index: usize,
    config: Config,
    pool: Option<PoolLink>,
    lookups_in_flight: usize,
    /// Shutting down: answer nothing new, only deliver lookups already in flight.
    draining: bool,
    /// The clock of the timeouts, read once per turn.
    now: Ticks,
    /// The counters of the whole server; `open` counts the connections of all loops together,
    /// for `max_connections`.
    metrics: Arc<Metrics>,
}

struct EventLoop {
    /// Which loop this is (0 unless `loops` is more than 1).
    index: usize,
    poll: Poll,
    /// `None` once shutting down.
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    /// Every read lands here first; only bytes that must wait are copied to a connection.
    scratch: Box<[u8]>,
    ctx: Ctx,
    greeting: Box<[u8]>,
    refusal: Box<[u8]>,
    stop: Arc<AtomicBool>,
    next_generation: u32,
    accept_paused_until: Option<Instant>,
    last_accept_log: Option<Instant>,
    /// Tokens that used up their turn's budget with work left; served again next turn.
    rerun: Vec<Token>,
    /// Connections waiting for the client to close after our goodbye, oldest first (all wait
    /// equally long, so this is also deadline order).
    lingering: VecDeque<(Token, Instant)>,
    /// When the loop started: `ctx.now` counts from here.
    started: Instant,
    /// Connections with a timeout running (an unfinished line, stalled output, or an idle
    /// timeout). Only these are checked, once a second; idle connections cost nothing.
    timed: Vec<Token>,
    next_sweep: Option<Instant>,
}

enum Phase {
    Running,
    /// Waiting for lookups in flight, until the deadline.
    Draining(Instant),
    /// Goodbyes sent; waiting for them to be written, until the deadline.
    Closing(Instant),
}

impl EventLoop {
    fn new(
        index: usize,
        parts: LoopParts,
        config: Config,
        pool: Option<PoolLink>,
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
        EventLoop {
            index,
            poll: parts.poll,
            listener: Some(parts.listener),
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            ctx: Ctx {
                loop_index: index,
                config,
                pool,
                lookups_in_flight: 0,
                draining: false,
                now: 0,
                metrics: Arc::clone(metrics),
            },
            started: Instant::now(),
            timed: Vec::new(),
            next_sweep: None,
            greeting: greeting.into_boxed_slice(),
            refusal: refusal.into_boxed_slice(),
            stop: Arc::clone(stop),
            next_generation: 0,
            accept_paused_until: None,
            last_accept_log: None,
            rerun: Vec::new(),
            lingering: VecDeque::new(),
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut phase = Phase::Running;
        loop {
            // One step can lead to the next at once (no lookups to wait for, no connections
            // left to close), so each is checked in turn before sleeping in poll.
            if matches!(phase, Phase::Running) && self.stop.load(Ordering::SeqCst) {
                phase = self.begin_shutdown();
            }
            if let Phase::Draining(deadline) = phase {
                if self.ctx.lookups_in_flight == 0 || Instant::now() >= deadline {
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
            self.ctx.now = ticks_since(self.started, Instant::now());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.take_completions(),
                    token => {
                        if event.is_readable()
                            || event.is_read_closed()
                            || event.is_error()
                            || event.is_priority()
                        {
                            if let Some(conn) = self.conn_mut(token) {
                                conn.unread_input = true;
                                conn.read_to_wouldblock |= event.is_read_closed()
                                    || event.is_error()
                                    || event.is_priority();
                            }
                        }
                        self.serve(token);
                    }
                }
            }
            for token in std::mem::take(&mut self.rerun) {
                if token == LISTENER {
                    self.accept();
                } else {
                    self.serve(token);
                }
            }
            if self
                .accept_paused_until
                .is_some_and(|t| Instant::now() >= t)
            {
                self.accept_paused_until = None;
                self.accept();
            }
            self.expire_lingering();
            if self.next_sweep.is_some_and(|t| Instant::now() >= t) {
                self.sweep_timers();
            }
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

    fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        let (key, generation) = split_token(token);
        self.conns
            .get_mut(key)
            .filter(|conn| same_generation(conn, generation))
    }

    // ----- accepting -----

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((socket, addr)) => self.admit(socket, addr),
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
        self.rerun.push(LISTENER);
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

    fn admit(&mut self, mut socket: TcpStream, addr: SocketAddr) {
        let open = self.ctx.metrics.open.load(Ordering::Relaxed);
        if open >= self.ctx.config.max_connections {
            log::info!("refused connection from {addr}: the server is full ({open} connections)");
            Metrics::add(&self.ctx.metrics.refused, 1);
            // Best effort: the line fits in any socket buffer; if not, the close says enough.
            let _ = io::Write::write(&mut socket, &self.refusal);
            return;
        }
        let entry = self.conns.vacant_entry();
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let token = make_token(entry.key(), generation);
        if let Err(e) = self.poll.registry().register(
            &mut socket,
            token,
            // PRIORITY: a read stops short before urgent (out-of-band) data even though more
            // bytes are queued, so such a connection must be read until `WouldBlock`.
            Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY,
        ) {
            log::warn!("cannot watch the connection from {addr}: {e}");
            return;
        }
        // Replies are single small writes that should leave at once.
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY for {addr}: {e}");
        }
        let framer = Framer::new(self.ctx.config.framing, self.ctx.config.max_line);
        let conn = entry.insert(Conn::new(socket, generation, framer, self.ctx.now));
        conn.awaiting_proxy_header = self.ctx.config.proxy_protocol;
        self.ctx.metrics.open.fetch_add(1, Ordering::Relaxed);
        Metrics::add(&self.ctx.metrics.accepted, 1);
        log::debug!(
            "loop {} accepted {addr} (connection {}.{generation})",
            self.index,
            self.index
        );
        match conn.send(&self.greeting) {
            Ok(sent) => Metrics::add(&self.ctx.metrics.bytes_out, sent),
            Err(e) => {
                self.close(token, CloseReason::Failed(e));
                return;
            }
        }
        self.track_timers(token);
    }

    // ----- serving connections -----

    /// Does everything a connection allows now: answer waiting messages, read, write. Closes it
    /// when it is finished or its socket fails.
    fn serve(&mut self, token: Token) {
        let (key, generation) = split_token(token);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !same_generation(conn, generation) {
            return; // an event for an earlier connection in this slot
        }
        if conn.lingering {
            match conn.discard_input(&mut self.scratch, READS_PER_TURN) {
                Ok(Discarded::UntilWouldBlock) => {}
                Ok(Discarded::Budget) => self.rerun.push(token),
                Ok(Discarded::UntilClosed) => self.close(token, CloseReason::AfterGoodbye),
                Err(e) => self.close(token, CloseReason::Failed(e)),
            }
            return;
        }
        match serve_conn(&mut self.ctx, conn, token, &mut self.scratch) {
            Ok(Progress::Done) if conn.finished() => self.finish(token),
            Ok(Progress::Done) => self.track_timers(token),
            Ok(Progress::MoreToRead) => {
                self.rerun.push(token);
                self.track_timers(token);
            }
            Err(e) if is_disconnect(&e) => self.close(token, CloseReason::Reset),
            Err(e) => self.close(token, CloseReason::Failed(e)),
        }
    }

    /// Ends a connection that has nothing left to do.
    ///
    /// If it was our decision (`exit`, shutdown) the client may still be sending, and closing a
    /// socket with unread input makes the kernel send a reset, which can destroy replies not yet
    /// delivered. So we send FIN instead and discard input until the client closes too, for at
    /// most [`LINGER_TIMEOUT`], as nginx's lingering close does.
    fn finish(&mut self, token: Token) {
        let Some(conn) = self.conn_mut(token) else {
            return;
        };
        if conn.peer_closed {
            self.close(token, CloseReason::ByClient);
            return;
        }
        if let Err(e) = conn.socket.shutdown(std::net::Shutdown::Write) {
            self.close(token, CloseReason::Failed(e));
            return;
        }
        conn.lingering = true;
        self.lingering
            .push_back((token, Instant::now() + LINGER_TIMEOUT));
        self.serve(token); // discard what has already arrived
    }

    fn expire_lingering(&mut self) {
        let now = Instant::now();
        while let Some(&(token, deadline)) = self.lingering.front() {
            if deadline > now {
                break;
            }
            self.lingering.pop_front();
            self.close(token, CloseReason::LingerTimeout); // a no-op if the client closed in time
        }
    }

    fn take_completions(&mut self) {
        let Some(pool) = &self.ctx.pool else {
            return;
        };
        let completions: Vec<_> = pool.completions.take().collect();
        let mut answered = Vec::with_capacity(completions.len());
        for completion in completions {
            let (key, generation) = split_ticket(completion.ticket);
            let Some(conn) = self
                .conns
                .get_mut(key)
                .filter(|conn| conn.generation == generation && conn.lookup_in_flight)
            else {
                // The connection closed while its lookup was in flight: the answer has nobody
                // to go to, and must not go to whoever holds the slot now.
                continue;
            };
            conn.lookup_in_flight = false;
            // The idle clock starts again when the answer is delivered, not when it was asked.
            conn.last_message = self.ctx.now;
            self.ctx.lookups_in_flight -= 1;
            if !conn.closing {
                push_answer(conn, completion.result, &self.ctx);
            }
            answered.push(make_token(key, generation));
        }
        for token in answered {
            self.serve(token);
        }
    }

    fn close(&mut self, token: Token, why: CloseReason) {
        let (key, generation) = split_token(token);
        let Some(conn) = self
            .conns
            .get(key)
            .filter(|conn| same_generation(conn, generation))
        else {
            return;
        };
        let level = why.log_level();
        if log::log_enabled!(level) {
            log::log!(level, "closed {}: {why}", conn.peer_name(self.index));
        }
        // Dropping the socket closes it, which also removes it from the poll.
        let conn = self.conns.remove(key);
        self.ctx.metrics.open.fetch_sub(1, Ordering::Relaxed);
        if conn.lookup_in_flight {
            self.ctx.lookups_in_flight -= 1; // its answer will be dropped when it comes
        }
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
            self.ctx.lookups_in_flight
        );
        self.listener = None; // stop accepting; the port is released
        self.accept_paused_until = None;
        self.ctx.draining = true;
        Phase::Draining(deadline_after(self.ctx.config.shutdown_timeout))
    }

    fn send_shutdown_notices(&mut self, deadline: Instant) -> Phase {
        let mut notice = Vec::new();
        encode_line(&mut notice, &self.ctx.config.shutdown_notice);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let token = make_token(key, conn.generation);
            if conn.closing {
                continue; // said goodbye already (`exit`)
            }
            conn.closing = true;
            if std::mem::take(&mut conn.lookup_in_flight) {
                // Past the deadline its answer is no longer awaited.
                self.ctx.lookups_in_flight -= 1;
            }
            match conn.send(&notice) {
                Err(e) => self.close(token, CloseReason::Failed(e)),
                Ok(_) if conn.finished() => self.finish(token),
                Ok(_) => {}
            }
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
        self.ctx
            .metrics
            .open
            .fetch_sub(self.conns.len(), Ordering::Relaxed);
        self.conns.clear();
    }
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

/// What is left for a connection after its turn.
enum Progress {
    /// Nothing until its socket or the robot has news.
    Done,
    /// It used its read budget with bytes still waiting: give it another turn soon.
    MoreToRead,
}

fn serve_conn(
    ctx: &mut Ctx,
    conn: &mut Conn,
    token: Token,
    scratch: &mut [u8],
) -> io::Result<Progress> {
    let mut reads = 0;
    loop {
        answer_waiting(ctx, conn, token);
        if conn.output_full() {
            Metrics::add(&ctx.metrics.bytes_out, conn.flush()?);
            if conn.output_full() {
                // The client is not reading; WRITABLE will bring us back.
                return Ok(Progress::Done);
            }
            continue;
        }
        if ctx.draining || !conn.wants_read() {
            break;
        }
        if reads == READS_PER_TURN {
            Metrics::add(&ctx.metrics.bytes_out, conn.flush()?);
            return Ok(Progress::MoreToRead);
        }
        reads += 1;
        match conn.socket.read(scratch) {
            Ok(0) => {
                conn.unread_input = false;
                conn.peer_closed = true;
            }
            Ok(n) if conn.awaiting_proxy_header => {
                Metrics::add(&ctx.metrics.bytes_in, n);
                take_proxy_header(conn, &scratch[..n])?;
            }
            Ok(n) => {
                Metrics::add(&ctx.metrics.bytes_in, n);
                take_bytes(ctx, conn, token, &scratch[..n]);
                // A read that did not fill the buffer emptied the socket, and bytes arriving
                // later raise a new event (as tokio also relies on with epoll and kqueue): no
                // need for the read that would say WouldBlock. Except after a hang-up (its
                // event may have come with these bytes) or urgent data (a read stops short
                // before it): then read on until WouldBlock.
                if n < scratch.len() && !conn.read_to_wouldblock {
                    conn.unread_input = false;
                    conn.burst_ended = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.unread_input = false;
                conn.burst_ended = true;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Metrics::add(&ctx.metrics.bytes_out, conn.flush()?);
    Ok(Progress::Done)
}

/// Collects the PROXY header that must open the connection (`--proxy-protocol`); what follows
/// it stays in the input for the framer. A connection without a valid header is an error.
fn take_proxy_header(conn: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    conn.input.extend_from_slice(bytes);
    match proxy_protocol::parse(&conn.input) {
        ProxyParse::Incomplete => Ok(()),
        ProxyParse::Done { header, consumed } => {
            if let ProxyHeader::Proxied { source, .. } = header {
                if let Ok(proxy) = conn.socket.peer_addr() {
                    log::debug!("connection from proxy {proxy} is for client {source}");
                }
                conn.client = Some(Box::new(source));
            }
            conn.awaiting_proxy_header = false;
            let input = std::mem::take(&mut conn.input);
            conn.keep_input(input, consumed);
            Ok(())
        }
        ProxyParse::Invalid(error) => Err(io::Error::new(io::ErrorKind::InvalidData, error)),
    }
}

/// Frames and answers freshly read bytes. When nothing is waiting they are framed straight from
/// the scratch buffer; only what cannot be answered yet is copied into the connection.
fn take_bytes(ctx: &mut Ctx, conn: &mut Conn, token: Token, bytes: &[u8]) {
    conn.burst_ended = false;
    if conn.input.is_empty() {
        let consumed = answer_frames(ctx, conn, token, bytes);
        conn.input.extend_from_slice(&bytes[consumed..]);
    } else {
        conn.input.extend_from_slice(bytes);
    }
}

/// Answers what waits in the connection's input, as far as its state allows.
fn answer_waiting(ctx: &mut Ctx, conn: &mut Conn, token: Token) {
    if conn.closing {
        conn.input = Vec::new();
        return;
    }
    if ctx.draining || conn.awaiting_proxy_header {
        return;
    }
    let input = std::mem::take(&mut conn.input);
    let consumed = answer_frames(ctx, conn, token, &input);
    conn.keep_input(input, consumed);
}

/// Takes frames from the front of `pending` and answers them until the connection is blocked or
/// needs more bytes. Returns how many bytes were used.
fn answer_frames(ctx: &mut Ctx, conn: &mut Conn, token: Token, pending: &[u8]) -> usize {
    let mut used = 0;
    while !conn.blocked() && !conn.closing {
        let rest = &pending[used..];
        let mut decoded = conn.framer.decode(rest);
        if decoded.needs_more() && std::mem::take(&mut conn.burst_ended) {
            decoded = conn.framer.end_of_burst(rest);
        }
        if decoded.needs_more() && conn.peer_closed {
            decoded = conn.framer.end_of_stream(rest);
        }
        if decoded.needs_more() {
            break;
        }
        used += decoded.consumed;
        if decoded.consumed > 0 && !conn.framer.is_discarding() {
            // A line (or burst) is complete: the clock of an unfinished line starts again from
            // whatever follows it.
            conn.line_started = NEVER;
        }
        if let Some(frame) = decoded.frame {
            answer(ctx, conn, token, frame);
        }
    }
    used
}

fn answer(ctx: &mut Ctx, conn: &mut Conn, token: Token, frame: Frame<'_>) {
    conn.last_message = ctx.now;
    if matches!(frame, Frame::Message { .. } | Frame::Exit) {
        conn.bad_lines = 0;
    }
    match frame {
        Frame::Message { user, text } => match &ctx.pool {
            None => {
                Metrics::add(&ctx.metrics.messages, 1);
                let started = Instant::now();
                let result = call_robot(&*ctx.config.robot, user, text);
                ctx.metrics.robot.record(result.is_ok(), started.elapsed());
                push_answer(conn, result, ctx);
            }
            Some(link) => {
                Metrics::add(&ctx.metrics.messages, 1);
                let (key, _) = split_token(token);
                let job = Job {
                    ticket: make_ticket(key, conn.generation),
                    origin: link.origin,
                    user: user.to_owned(),
                    text: text.to_owned(),
                };
                match link.pool.submit(job) {
                    Ok(()) => {
                        conn.lookup_in_flight = true;
                        ctx.lookups_in_flight += 1;
                    }
                    Err(SubmitError::Full(_)) => {
                        Metrics::add(&ctx.metrics.replies_busy, 1);
                        encode_error(
                            &mut conn.output,
                            &"the robot is busy; please try again in a moment",
                        );
                    }
                    Err(SubmitError::Closed(_)) => push_answer(
                        conn,
                        Err(RobotError::Unavailable("its workers have stopped".into())),
                        ctx,
                    ),
                }
            }
        },
        Frame::Exit => {
            encode_line(&mut conn.output, &ctx.config.goodbye);
            conn.closing = true;
        }
        Frame::Blank => {}
        Frame::Invalid(error) => {
            Metrics::add(&ctx.metrics.replies_error, 1);
            conn.bad_lines = conn.bad_lines.saturating_add(1);
            if conn.bad_lines < BAD_LINES_IN_A_ROW {
                encode_error(&mut conn.output, &error);
                return;
            }
            // Answering garbage without end would only fill the kernel's buffers with error
            // lines (25 times the bytes for a 2-byte bad line): as Redis does with a protocol
            // error, say so once and close.
            encode_error(
                &mut conn.output,
                &format_args!(
                    "{error}. That is {BAD_LINES_IN_A_ROW} bad lines in a row; closing the \
                     connection."
                ),
            );
            conn.closing = true;
            log::info!(
                "closing {}: {BAD_LINES_IN_A_ROW} bad lines in a row",
                conn.peer_name(ctx.loop_index)
            );
        }
    }
}

/// Queues the robot's answer (or why there is none) as one line of at most `max_reply`
/// characters, so that no robot, and no error message from a web API, can send a huge line.
fn push_answer(conn: &mut Conn, result: Result<String, RobotError>, ctx: &Ctx) {
    let (line, counter) = match result {
        Ok(reply) => (reply, &ctx.metrics.replies_ok),
        Err(error) => (format!("ERR {error}"), &ctx.metrics.replies_error),
    };
    Metrics::add(counter, 1);
    encode_line(&mut conn.output, cut_to_chars(&line, ctx.config.max_reply));
}

/// The first `max` characters of `text` (all of it if shorter), cut at a character boundary.
fn cut_to_chars(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(end, _)| &text[..end])
}

/// `now + timeout`, or a day from now for timeouts too large to add.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

fn make_token(key: usize, generation: u32) -> Token {
    debug_assert!(key < MAX_CONNECTIONS_LIMIT);
    Token(((generation & GENERATION_MASK) as usize) << KEY_BITS | key)
}

fn split_token(token: Token) -> (usize, u32) {
    (
        token.0 & ((1 << KEY_BITS) - 1),
        (token.0 >> KEY_BITS) as u32,
    )
}

/// Whether a generation taken from a token names the connection of this generation.
fn same_generation(conn: &Conn, token_generation: u32) -> bool {
    conn.generation & GENERATION_MASK == token_generation
}

/// A robot job's ticket: the key and the whole generation, which a token may not have room for.
fn make_ticket(key: usize, generation: u32) -> u64 {
    u64::from(generation) << 32 | key as u64
}

fn split_ticket(ticket: u64) -> (usize, u32) {
    (
        (ticket & u64::from(u32::MAX)) as usize,
        (ticket >> 32) as u32,
    )
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

/// The client went away: ordinary, not worth a log line.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_collide_with_fixed_tokens() {
        for (key, generation) in [(0, 0), (5, 7), (MAX_CONNECTIONS_LIMIT - 1, GENERATION_MASK)] {
            let token = make_token(key, generation);
            assert_ne!(token, LISTENER);
            assert_ne!(token, WAKER);
            let (k, g) = split_token(token);
            assert_eq!(k, key);
            assert_eq!(make_token(k, g), token);
        }
        assert_ne!(make_token(3, 1), make_token(3, 2));
    }

    #[test]
    fn an_idle_connection_stays_small() {
        // Idle connections are what this server holds most of: each is one slab slot of this
        // size (the kernel's socket memory aside). Growing it costs memory at every connection.
        // mio's sockets carry an extra word in debug builds (a check of which poll owns them).
        let limit = if cfg!(debug_assertions) { 112 } else { 104 };
        assert!(
            std::mem::size_of::<Conn>() <= limit,
            "Conn grew to {} bytes",
            std::mem::size_of::<Conn>()
        );
    }
}
