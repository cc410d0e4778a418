//! Server settings and the builder that checks them and binds the listener.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::Framing;
use crate::robot::{EmbeddedRobot, Robot};

use super::conn_id::MAX_CONNECTIONS_LIMIT;
use super::timers::{ticks_of, Timeouts, MAX_TIMEOUT};
use super::Server;

/// The most event loops a server may run.
pub const MAX_LOOPS: usize = 256;
/// The most worker threads a server may start.
pub const MAX_WORKERS: usize = 4096;
/// The longest robot queue, in jobs.
pub const MAX_QUEUE: usize = 1_000_000;

/// Connections the kernel may queue before they are accepted: enough for thousands of clients
/// reconnecting at once after a restart or a load balancer's failover (Redis and nginx use 511).
pub const DEFAULT_BACKLOG: u32 = 1024;
/// The kernel send buffer of each connection (`SO_SNDBUF`), in bytes. Replies are small; this
/// holds hundreds of them, and it bounds what a client that never reads can make the kernel keep
/// for it (autotuning would let that grow to 4 MiB per connection).
pub const DEFAULT_SEND_BUFFER: usize = 64 * 1024;

/// Workers for a robot that may block, when not chosen: each waits on one call (of a web API)
/// at a time, so this is how many calls can be in flight at once.
pub const DEFAULT_BLOCKING_WORKERS: usize = 4;

/// The workers a server gets when none are chosen. A robot that may block gets
/// [`DEFAULT_BLOCKING_WORKERS`]. A robot that never blocks gets one per core not taken by an
/// event loop (at least one): its loops answer what they have time for, and the workers, on the
/// other cores, the rest.
pub fn auto_workers(robot: &dyn Robot, loops: usize) -> usize {
    if !robot.never_blocks() {
        return DEFAULT_BLOCKING_WORKERS;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(loops).max(1)
}

/// The greeting sent to every new connection, as in the tutorial.
pub const DEFAULT_GREETING: &str = "你好，欢迎来到机器人聊天器！";

/// The settings one server runs with. Built and checked by [`ServerBuilder`].
#[derive(Clone)]
pub(crate) struct Config {
    pub robot: Arc<dyn Robot>,
    pub workers: usize,
    pub queue: usize,
    pub max_connections: usize,
    pub max_line: usize,
    pub max_reply: usize,
    pub framing: Framing,
    pub greeting: String,
    pub goodbye: String,
    pub shutdown_notice: String,
    pub shutdown_timeout: Duration,
    pub timeouts: Timeouts,
    pub idle_notice: String,
    pub reuse_port: bool,
    pub backlog: u32,
    /// `SO_SNDBUF` of each connection, or `None` for the kernel's autotuning.
    pub send_buffer: Option<usize>,
    pub proxy_protocol: bool,
    pub loops: usize,
    pub metrics: Option<SocketAddr>,
    pub history_scope: HistoryScope,
    /// How long a message may wait for the robot's answer, queue included.
    pub robot_timeout: Option<Duration>,
    /// Where the web listener listens (the page, `/healthz`, WebSocket): the first address that
    /// works. Empty: no web listener.
    pub web: Vec<SocketAddr>,
    /// The pages, besides the server's own, that may open a WebSocket.
    #[cfg(feature = "web")]
    pub origins: crate::web::Origins,
}

/// Whose conversation a message belongs to, which decides who shares the robot's memory of it
/// (a chat model's history, a remembered name): see [`Conversation`](crate::robot::Conversation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HistoryScope {
    /// Each connection's own, forgotten when it closes: what a server for strangers needs, since
    /// anyone can send any username (the tutorial's client sends the same one for everyone).
    #[default]
    Connection,
    /// Everyone's who sends the same username: only where usernames are trusted.
    User,
}

/// Builds a [`Server`]: `Server::builder().listen(addr).robot(r).workers(4).build()`.
///
/// Every setting has a default that suits a public chat server: `127.0.0.1:9999`, the embedded
/// robot, workers as [`auto_workers`] decides, a queue of 1024 jobs, 10,000 connections,
/// 4096-byte lines, automatic framing.
pub struct ServerBuilder {
    listen: Vec<SocketAddr>,
    listen_error: Option<String>,
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    web_error: Option<String>,
    /// The first timeout set longer than [`MAX_TIMEOUT`], reported by `build`.
    timeout_too_long: Option<&'static str>,
    /// `None`: [`auto_workers`], decided once the robot and the loops are known.
    workers: Option<usize>,
    config: Config,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9999))],
            listen_error: None,
            web_error: None,
            timeout_too_long: None,
            workers: None,
            config: Config {
                robot: Arc::new(EmbeddedRobot::new()),
                workers: 0,
                queue: 1024,
                max_connections: 10_000,
                max_line: 4096,
                max_reply: 2000,
                framing: Framing::Auto,
                greeting: DEFAULT_GREETING.to_owned(),
                goodbye: "再见！Goodbye!".to_owned(),
                shutdown_notice: "服务器正在关闭，再见！The server is shutting down. Goodbye!"
                    .to_owned(),
                shutdown_timeout: Duration::from_secs(5),
                timeouts: Timeouts {
                    line: ticks_of(Duration::from_secs(30)),
                    send: ticks_of(Duration::from_secs(30)),
                    idle: 0,
                },
                idle_notice: "你很久没有说话了，再见！Closing this idle connection. Goodbye!"
                    .to_owned(),
                reuse_port: false,
                backlog: DEFAULT_BACKLOG,
                send_buffer: Some(DEFAULT_SEND_BUFFER),
                proxy_protocol: false,
                loops: 1,
                metrics: None,
                history_scope: HistoryScope::Connection,
                robot_timeout: None,
                web: Vec::new(),
                #[cfg(feature = "web")]
                origins: crate::web::Origins::SameHost,
            },
        }
    }
}

impl ServerBuilder {
    /// The address to listen on, such as `"127.0.0.1:9999"` or `"[::]:9999"`. Port 0 picks a
    /// free port; [`Server::local_addr`] tells which. Names are resolved here, once.
    pub fn listen(mut self, addr: impl ToSocketAddrs) -> Self {
        match addr.to_socket_addrs() {
            Ok(addrs) => {
                self.listen = addrs.collect();
                self.listen_error = None;
            }
            Err(e) => self.listen_error = Some(e.to_string()),
        }
        self
    }

    /// Also serves browsers on `addr` (default: not): `GET /` the chat page, `GET /ws` the chat
    /// over WebSocket (each text message one `USERNAME::TEXT` message, each reply one text
    /// message), `GET /healthz` for load balancers. A listener of every loop, like the line
    /// port, with the same robot and limits. [`Server::web_addr`] tells the port.
    #[cfg(feature = "web")]
    pub fn web(mut self, addr: impl ToSocketAddrs) -> Self {
        match addr.to_socket_addrs() {
            Ok(addrs) => self.config.web = addrs.collect(),
            Err(e) => self.web_error = Some(e.to_string()),
        }
        self
    }

    /// Which other web pages may open the chat's WebSocket (default: only the server's own
    /// page, and programs, which send no `Origin`).
    #[cfg(feature = "web")]
    pub fn allow_origins(mut self, origins: crate::web::Origins) -> Self {
        self.config.origins = origins;
        self
    }

    /// The robot that answers messages (default: the embedded robot).
    pub fn robot(self, robot: impl Robot + 'static) -> Self {
        self.shared_robot(Arc::new(robot))
    }

    /// The robot, already shared.
    pub fn shared_robot(mut self, robot: Arc<dyn Robot>) -> Self {
        self.config.robot = robot;
        self
    }

    /// Worker threads calling the robot (default: [`auto_workers`]).
    ///
    /// A robot that may block (a web API) is called on the workers only, each call holding one.
    /// A robot whose [`Robot::never_blocks`] is true answers on the event loop while that takes
    /// under 50 µs of each loop turn, and the workers take the rest of the turn's messages, so
    /// that under load the robot's work spreads over the cores; `0` keeps all of it on the loop.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Robot jobs that may wait for a worker (default 1024). Past that, messages are answered
    /// with a "robot is busy" error line.
    pub fn queue(mut self, jobs: usize) -> Self {
        self.config.queue = jobs;
        self
    }

    /// Connections served at once (default 10,000). One more gets an error line and is closed.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// The longest message line accepted, in bytes (default 4096). Longer lines get an error
    /// line and are discarded as they arrive, never buffered.
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.config.max_line = bytes;
        self
    }

    /// The longest reply line, in characters (default 2000): longer robot answers are cut at a
    /// character boundary.
    pub fn max_reply(mut self, chars: usize) -> Self {
        self.config.max_reply = chars;
        self
    }

    /// How messages are cut from the byte stream (default [`Framing::Auto`]).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.config.framing = framing;
        self
    }

    /// The line sent to each new connection.
    pub fn greeting(mut self, greeting: impl Into<String>) -> Self {
        self.config.greeting = greeting.into();
        self
    }

    /// A connection that has sent part of a line and not finished it for this long is closed
    /// (slowloris); its clock starts again whenever a line is completed. Default 30 s; zero
    /// turns it off. Timeouts fire after their time, never before, and at most about 60 ms
    /// late (hundredths of a second, checked when the earliest is due).
    pub fn line_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.line = ticks_of(timeout.min(MAX_TIMEOUT));
        if timeout > MAX_TIMEOUT {
            self.timeout_too_long.get_or_insert("line_timeout");
        }
        self
    }

    /// A connection whose unsent replies have made no progress for this long is closed (a
    /// client that never reads). Default 30 s; zero turns it off.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.send = ticks_of(timeout.min(MAX_TIMEOUT));
        if timeout > MAX_TIMEOUT {
            self.timeout_too_long.get_or_insert("send_timeout");
        }
        self
    }

    /// A connection with no complete message for this long gets a goodbye line and is closed.
    /// Default off (zero): idle connections are what this server is for.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.idle = ticks_of(timeout.min(MAX_TIMEOUT));
        if timeout > MAX_TIMEOUT {
            self.timeout_too_long.get_or_insert("idle_timeout");
        }
        self
    }

    /// Lets other servers (in this process or others) listen on the same port, with the kernel
    /// spreading new connections over them (`SO_REUSEPORT`): one loop per core. Default off.
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.config.reuse_port = reuse;
        self
    }

    /// Connections the kernel may queue for accepting (default [`DEFAULT_BACKLOG`]); the system
    /// caps it at `net.core.somaxconn`, and the server warns at start if that is lower.
    pub fn backlog(mut self, connections: u32) -> Self {
        self.config.backlog = connections;
        self
    }

    /// The kernel send buffer of each connection (`SO_SNDBUF`, default
    /// [`DEFAULT_SEND_BUFFER`]): with the server's own 16 KiB of unsent output per connection,
    /// it bounds the memory a client that never reads can tie up. `0` leaves it to the kernel's
    /// autotuning (up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default).
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.config.send_buffer = (bytes > 0).then_some(bytes);
        self
    }

    /// Requires every connection to start with a PROXY protocol header (v1 or v2), as a load
    /// balancer such as HAProxy sends with `send-proxy`: the client address it carries is the
    /// one logged. A missing, malformed or late (past the line timeout) header closes the
    /// connection. Default off: then such a header is an ordinary (bad) line.
    pub fn proxy_protocol(mut self, required: bool) -> Self {
        self.config.proxy_protocol = required;
        self
    }

    /// Event loops (default 1), each a thread with its own listener on the shared port
    /// (`SO_REUSEPORT`), sharing the worker pool: one loop per core. `max_connections` counts
    /// the connections of all loops together.
    pub fn loops(mut self, loops: usize) -> Self {
        self.config.loops = loops;
        self
    }

    /// Serves Prometheus metrics (`GET /metrics`) on `addr`, from a thread of its own.
    /// Default: none.
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.config.metrics = Some(addr);
        self
    }

    /// How long a shutdown waits for robot lookups in flight before closing (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Whose conversation the robot remembers a message in (default: the connection's own).
    pub fn history_scope(mut self, scope: HistoryScope) -> Self {
        self.config.history_scope = scope;
        self
    }

    /// The whole time a message may take to be answered, counted from when it is queued for the
    /// robot (default: no limit but the robot's own). A message that has waited past it is not
    /// given to a robot that would make it wait longer ([`Robot::answer_late`] says; else it is
    /// answered with an `ERR` line), and a robot is told what is left of it ([`Request::deadline`](crate::robot::Request::deadline)).
    pub fn robot_timeout(mut self, timeout: Duration) -> Self {
        self.config.robot_timeout = Some(timeout.min(MAX_TIMEOUT));
        if timeout > MAX_TIMEOUT {
            self.timeout_too_long.get_or_insert("robot_timeout");
        }
        self
    }

    /// Checks the settings, binds the listener and starts the workers.
    pub fn build(self) -> Result<Server, BuildError> {
        if let Some(why) = self.listen_error {
            return Err(BuildError::Address(why));
        }
        if let Some(problem) = self.web_error {
            return Err(BuildError::Config {
                setting: "web",
                problem,
            });
        }
        let mut config = self.config;
        config.workers = self
            .workers
            .unwrap_or_else(|| auto_workers(&*config.robot, config.loops));
        let invalid = |setting, problem: String| Err(BuildError::Config { setting, problem });
        if let Some(setting) = self.timeout_too_long {
            return invalid(
                setting,
                format!("must be at most {} days", MAX_TIMEOUT.as_secs() / 86_400),
            );
        }
        if config.workers == 0 && !config.robot.never_blocks() {
            return invalid(
                "workers",
                format!(
                    "must be at least 1 for the {} robot, which may block (0 answers on the event \
                     loop and is only for robots that never block, such as embedded and echo)",
                    config.robot.name()
                ),
            );
        }
        if !(1..=MAX_LOOPS).contains(&config.loops) {
            return invalid("loops", format!("must be between 1 and {MAX_LOOPS}"));
        }
        if config.workers > MAX_WORKERS {
            return invalid(
                "workers",
                format!("must be at most {MAX_WORKERS}; a robot that needs more should not block"),
            );
        }
        // The queue's slots are allocated up front.
        if config.workers > 0 && !(1..=MAX_QUEUE).contains(&config.queue) {
            return invalid("queue", format!("must be between 1 and {MAX_QUEUE} jobs"));
        }
        if config.max_connections == 0 || config.max_connections > MAX_CONNECTIONS_LIMIT {
            return invalid(
                "max_connections",
                format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}"),
            );
        }
        if config.max_line < crate::protocol::MAX_USERNAME + 3 {
            return invalid(
                "max_line",
                format!(
                    "must be at least {} bytes, enough for a username and a short message",
                    crate::protocol::MAX_USERNAME + 3
                ),
            );
        }
        if config.max_reply < 16 {
            return invalid("max_reply", "must be at least 16 characters".into());
        }
        if config.backlog == 0 {
            return invalid("backlog", "must be at least 1".into());
        }
        if config
            .send_buffer
            .is_some_and(|b| !(4096..=1 << 30).contains(&b))
        {
            return invalid(
                "send_buffer",
                "must be 0 (the kernel's autotuning) or between 4096 and 1 GiB".into(),
            );
        }
        if config.greeting.contains(['\n', '\r']) {
            return invalid("greeting", "must be one line (no newlines)".into());
        }
        Server::bind(&self.listen, config)
    }
}

impl Config {
    pub(super) fn listen_options(&self) -> super::listen::ListenOptions {
        super::listen::ListenOptions {
            reuse_port: self.reuse_port,
            backlog: self.backlog,
            send_buffer: self.send_buffer,
        }
    }
}

/// Why a server could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The listen address could not be resolved.
    Address(String),
    /// An address could not be bound (in use, not permitted, ...).
    Bind {
        /// The builder setting it came from: `"listen"`, `"web"` or `"metrics"`.
        setting: &'static str,
        /// The address tried last.
        addr: SocketAddr,
        /// What the system said.
        error: io::Error,
    },
    /// A setting is out of range or contradicts another.
    Config {
        /// The builder setting at fault, such as `"max_line"`.
        setting: &'static str,
        /// What is wrong with it, such as "must be at least 67 bytes".
        problem: String,
    },
    /// The event loop or the workers could not be set up.
    Io(io::Error),
}

impl BuildError {
    /// The builder setting the error is about (its method's name, such as `"max_line"`), when
    /// it is about one: a command line can name its own flag for it.
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            BuildError::Address(_) => Some("listen"),
            BuildError::Bind { setting, .. } | BuildError::Config { setting, .. } => Some(setting),
            BuildError::Io(_) => None,
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Address(why) => write!(f, "cannot resolve the listen address: {why}"),
            BuildError::Bind { addr, error, .. } => {
                write!(f, "cannot listen on {addr}: {error}")?;
                if error.kind() == io::ErrorKind::AddrInUse {
                    f.write_str(" (another program is using that port)")?;
                }
                Ok(())
            }
            BuildError::Config { setting, problem } => write!(f, "{setting} {problem}"),
            BuildError::Io(e) => write!(f, "cannot start the server: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Bind { error, .. } | BuildError::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for BuildError {
    fn from(e: io::Error) -> Self {
        BuildError::Io(e)
    }
}
