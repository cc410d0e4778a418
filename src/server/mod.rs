//! The server: event loops that own every socket, and a pool of workers for the robot.
//!
//! This module is the public face: [`Server`] (bound and ready), [`ServerBuilder`] (its
//! settings), [`ServerHandle`] (to stop it) and [`BuildError`]. Inside:
//!
//! - `event_loop`: one mio poll; accepts, serves and closes connections; shuts down in phases.
//! - `dispatch`: a connection's bytes → messages → robot answers or jobs → reply lines.
//! - `conn`: one connection's state and socket I/O; `conn_id`: who a token or a ticket names.
//! - `timers`: line, send and idle timeouts; `pool`: the worker threads and their channels.
//! - `transport`: lines or WebSocket messages; `http`: the web listener's answer to a request.
//! - `listen`: the listening socket; `metrics` and `metrics_endpoint`: counters and `/metrics`.

mod builder;
mod conn;
mod conn_id;
mod dispatch;
mod event_loop;
#[cfg(feature = "web")]
mod http;
mod listen;
mod metrics;
mod metrics_endpoint;
mod pool;
mod timers;
mod transport;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};

use builder::Config;
pub use builder::{
    auto_workers, BuildError, HistoryScope, ServerBuilder, DEFAULT_BACKLOG,
    DEFAULT_BLOCKING_WORKERS, DEFAULT_GREETING, DEFAULT_SEND_BUFFER,
};
pub use conn_id::MAX_CONNECTIONS_LIMIT;
use conn_id::{LISTENER, WAKER, WEB_LISTENER};
use event_loop::EventLoop;
use metrics::Metrics;
use metrics_endpoint::MetricsEndpoint;
use pool::PoolLink;
pub use timers::MAX_TIMEOUT;

/// A chat-robot server, bound and ready to [`run`](Server::run).
pub struct Server {
    /// One per event loop (`loops`), each with its own listener on the shared port.
    loops: Vec<LoopParts>,
    local_addr: SocketAddr,
    /// The web listener's address, when there is one.
    web_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    config: Config,
    metrics: Arc<Metrics>,
    /// Bound when `metrics` is set; served by a thread of its own.
    metrics_listener: Option<std::net::TcpListener>,
}

/// What one event loop owns before it runs.
struct LoopParts {
    poll: Poll,
    listener: TcpListener,
    /// The web listener (the page and WebSocket), when there is one.
    web_listener: Option<TcpListener>,
    waker: Arc<Waker>,
    /// Its way to the workers; `None` when the robot answers on the loop (`workers(0)`).
    pool: Option<PoolLink>,
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

    /// Binds every loop's listener (the first address of `addrs` that works, then the same
    /// port for the others) and the metrics port, and starts the workers.
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
        let first = bind_first("listen", addrs, options)?;
        let local_addr = first.local_addr()?;
        let mut loops = vec![LoopParts::new(first)?];
        for _ in 1..config.loops {
            let listener = bind_first("listen", &[local_addr], options)?;
            loops.push(LoopParts::new(listener)?);
        }
        let web_addr = bind_web(&config, &mut loops)?;
        let metrics = Arc::new(Metrics::new(Arc::clone(&config.robot), config.workers));
        if config.workers > 0 {
            let wakers: Vec<Arc<Waker>> = loops.iter().map(|l| Arc::clone(&l.waker)).collect();
            let links = pool::start(
                Arc::clone(&config.robot),
                config.workers,
                config.queue,
                &wakers,
                &metrics.robot,
            )?;
            for (parts, link) in loops.iter_mut().zip(links) {
                parts.pool = Some(link);
            }
        }
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
            web_addr,
            stop: Arc::new(AtomicBool::new(false)),
            config,
            metrics,
            metrics_listener,
        })
    }

    /// The address the server listens on (with the real port when it was asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the web listener (the page and WebSocket), when there is one, with the
    /// real port when it was asked for port 0.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
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
        self.log_start();
        // If one loop fails, the others are told to stop too, or `run` would never return.
        let everyone = self.handle();
        let endpoint = match self.metrics_listener {
            Some(listener) => {
                log::info!("metrics on http://{}/metrics", listener.local_addr()?);
                Some(MetricsEndpoint::start(listener, Arc::clone(&self.metrics))?)
            }
            None => None,
        };
        let mut loops = self.loops.into_iter().enumerate().map(|(index, parts)| {
            EventLoop::new(index, parts, self.config.clone(), &self.stop, &self.metrics)
        });
        let mut first = loops.next().expect("a server has at least one loop");
        let others: io::Result<Vec<_>> = loops.map(|l| spawn_loop(l, &everyone)).collect();
        let result = others.and_then(|others| {
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
            result
        });
        if result.is_err() {
            everyone.shutdown();
        }
        if let Some(endpoint) = endpoint {
            endpoint.stop();
        }
        result
    }

    fn log_start(&self) {
        let config = &self.config;
        if let Some(web) = self.web_addr {
            log::info!("web chat on http://{web}/ (WebSocket at /ws, health check at /healthz)");
        }
        log::info!(
            "robochat listening on {} (robot {}, {} workers, {} loop{}, framing {}, up to {} \
             connections)",
            self.local_addr,
            config.robot.name(),
            config.workers,
            config.loops,
            if config.loops == 1 { "" } else { "s" },
            config.framing,
            config.max_connections,
        );
    }
}

/// Runs an event loop on a thread of its own; if it fails, every loop is told to stop.
fn spawn_loop(
    mut event_loop: EventLoop,
    everyone: &ServerHandle,
) -> io::Result<thread::JoinHandle<io::Result<()>>> {
    let stopper = everyone.clone();
    thread::Builder::new()
        .name(format!("robochat-loop-{}", event_loop.index()))
        .spawn(move || {
            let outcome = event_loop.run();
            if outcome.is_err() {
                stopper.shutdown();
            }
            outcome
        })
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
            web_listener: None,
            waker,
            pool: None,
        })
    }
}

/// Binds the web listener of every loop (the first address of `config.web` that works, then the
/// same port for the others) and registers it; returns its address, or `None` without one.
fn bind_web(config: &Config, loops: &mut [LoopParts]) -> Result<Option<SocketAddr>, BuildError> {
    if config.web.is_empty() {
        return Ok(None);
    }
    let options = config.listen_options();
    let mut addr: Option<SocketAddr> = None;
    for parts in loops.iter_mut() {
        // The other loops take the port the first one got.
        let addrs = match &addr {
            Some(addr) => std::slice::from_ref(addr),
            None => &config.web[..],
        };
        let mut listener = bind_first("web", addrs, options)?;
        addr = Some(listener.local_addr()?);
        parts
            .poll
            .registry()
            .register(&mut listener, WEB_LISTENER, Interest::READABLE)?;
        parts.web_listener = Some(listener);
    }
    Ok(addr)
}

/// A listener on the first of `addrs` that can be bound, or the error of the last one tried
/// (named after the builder `setting` the addresses came from).
fn bind_first(
    setting: &'static str,
    addrs: &[SocketAddr],
    options: listen::ListenOptions,
) -> Result<TcpListener, BuildError> {
    let mut last_error = None;
    for &addr in addrs {
        match listen::listen(addr, options) {
            Ok(listener) => return Ok(listener),
            Err(error) => {
                last_error = Some(BuildError::Bind {
                    setting,
                    addr,
                    error,
                })
            }
        }
    }
    Err(last_error.unwrap_or_else(|| BuildError::Address("the name has no addresses".into())))
}
