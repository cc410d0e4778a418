//! The Prometheus endpoint (`--metrics ADDR`): a small non-blocking HTTP server on a thread of
//! its own, answering `GET /metrics` with [`Metrics::render`] and anything else with a short
//! error.
//!
//! It has its own mio poll, so that no scraper, however slow or hostile, can hold up the chat
//! loops, and so that scrapes are answered even while a chat loop is saturated, which is when
//! they matter most. A client gets one deadline for its whole exchange, at most
//! [`MAX_CLIENTS`] are served at once (a new one evicts the oldest), and stopping never waits
//! on a client.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::metrics::Metrics;

/// Time a client has for its whole exchange: sending the request head, taking the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// The longest request head; a GET for /metrics is far shorter.
const MAX_HEAD: usize = 8 * 1024;
/// Clients served at once. Past this, accepting one closes the oldest: a scraper sends its
/// request at once and is done in milliseconds, so only idle or dribbling clients are evicted.
pub const MAX_CLIENTS: usize = 64;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// The endpoint's thread; stopped by [`MetricsEndpoint::stop`].
pub struct MetricsEndpoint {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Serves `metrics` on `listener` from a new thread.
    pub fn start(
        listener: std::net::TcpListener,
        metrics: Arc<Metrics>,
    ) -> io::Result<MetricsEndpoint> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Endpoint {
            poll,
            listener,
            clients: Slab::with_capacity(MAX_CLIENTS),
            metrics,
            stop: Arc::clone(&stop),
        };
        let thread = thread::Builder::new()
            .name("robochat-metrics".into())
            .spawn(move || {
                if let Err(e) = server.run() {
                    log::error!("the metrics endpoint stopped: {e}");
                }
            })?;
        Ok(MetricsEndpoint {
            stop,
            waker,
            thread,
        })
    }

    /// Ends the thread, closing any client it has; it never blocks on one, so this is quick.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the metrics endpoint to stop it: {e}");
            return; // joining could wait for ever
        }
        let _ = self.thread.join();
    }
}

struct Endpoint {
    poll: Poll,
    listener: TcpListener,
    clients: Slab<Client>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

/// One HTTP client: its request head as it arrives, then the answer as it leaves.
struct Client {
    stream: TcpStream,
    deadline: Instant,
    head: Vec<u8>,
    /// The answer, once the head is complete; `sent` bytes of it are written.
    answer: Option<Vec<u8>>,
    sent: usize,
}

impl Endpoint {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = self
                .clients
                .iter()
                .map(|(_, c)| c.deadline)
                .min()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => self.serve(key),
                }
            }
            let now = Instant::now();
            self.clients.retain(|_, c| c.deadline > now);
        }
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: the chat loops log that; try again on the next
                    // connection rather than spin.
                    log::debug!("metrics endpoint cannot accept: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                self.evict_oldest();
            }
            let entry = self.clients.vacant_entry();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, Token(entry.key()), interest)
            {
                log::debug!("metrics endpoint cannot watch a connection: {e}");
                continue;
            }
            let key = entry.key();
            entry.insert(Client {
                stream,
                deadline: Instant::now() + DEADLINE,
                head: Vec::new(),
                answer: None,
                sent: 0,
            });
            // Its request may have come with the connection.
            self.serve(key);
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .clients
            .iter()
            .min_by_key(|(_, c)| c.deadline)
            .map(|(key, _)| key);
        if let Some(key) = oldest {
            self.clients.remove(key);
        }
    }

    fn serve(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        match client.step(&self.metrics) {
            Ok(false) => {}
            Ok(true) | Err(_) => {
                self.clients.remove(key);
            }
        }
    }
}

impl Client {
    /// Reads the head, answers it, writes the answer, as far as the socket allows. Returns
    /// whether the exchange is over.
    fn step(&mut self, metrics: &Metrics) -> io::Result<bool> {
        if self.answer.is_none() {
            let mut buf = [0u8; 1024];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return Ok(true),
                    Ok(n) => self.head.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                if head_is_complete(&self.head) || self.head.len() > MAX_HEAD {
                    break;
                }
            }
            if self.head.len() > MAX_HEAD {
                self.answer = Some(response("431 Request Header Fields Too Large", "", ""));
            } else if head_is_complete(&self.head) {
                self.answer = Some(answer(&self.head, metrics));
            } else {
                return Ok(false);
            }
            self.head = Vec::new();
        }
        let answer = self.answer.as_deref().unwrap_or_default();
        while self.sent < answer.len() {
            match self.stream.write(&answer[self.sent..]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // All sent: FIN, so the client reads the whole answer before its end.
        let _ = self.stream.shutdown(Shutdown::Write);
        Ok(true)
    }
}

/// Whether `head` holds a whole HTTP request head (up to its blank line).
fn head_is_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// The answer to a complete request head.
fn answer(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => response(
            "200 OK",
            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
            &metrics.render(),
        ),
        (_, "/metrics") => response(
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "only GET /metrics is served here\n",
        ),
        _ => response("404 Not Found", "", "only GET /metrics is served here\n"),
    }
}

fn response(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_answered_by_their_first_line() {
        let metrics = Metrics::new(Arc::new(crate::EchoRobot), 1);
        let ok = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &metrics);
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let with_query = answer(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &metrics);
        assert!(with_query.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let post = answer(b"POST /metrics HTTP/1.1\r\n\r\n", &metrics);
        assert!(post.starts_with(b"HTTP/1.1 405 "));
        let other = answer(b"GET / HTTP/1.1\r\n\r\n", &metrics);
        assert!(other.starts_with(b"HTTP/1.1 404 "));
        let garbage = answer(b"\x00\xff\r\n\r\n", &metrics);
        assert!(garbage.starts_with(b"HTTP/1.1 404 "));
    }

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert!(!head_is_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        assert!(head_is_complete(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(head_is_complete(b"GET /metrics HTTP/1.0\n\n"));
    }
}
