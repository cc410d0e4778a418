//! One client connection: a non-blocking socket, the framing of what it receives, the bytes it
//! has not managed to send yet, and the due times of its messages still waiting for a reply.
//! With `--web`, the connection first upgrades to WebSocket, and then its messages and replies
//! are text messages (`web`).
//!
//! It knows nothing of phases or statistics: it turns socket readiness into [`Incoming`]
//! events, and the worker decides what they mean.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use robochat::protocol;
use robochat::websocket::client::{self, Decoded, Frame, Handshake, HandshakeError};
use robochat::websocket::CloseCode;

use super::options::Framing;

/// Longest reply line kept while waiting for its end; a server sending more is misbehaving, and
/// the connection is dropped rather than growing without bound.
pub const MAX_REPLY_LINE: usize = 64 * 1024;

/// Where the web listener takes WebSocket upgrades.
const WEBSOCKET_PATH: &str = "/ws";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Connecting, or connected and waiting for the greeting.
    Connecting,
    /// Greeted: messages may be sent.
    Open,
    /// We asked the server to close (`exit`, a close frame), and wait for it to.
    Closing,
    /// Gone (its socket is closed).
    Closed,
}

/// What a read produced, in order.
#[derive(Debug)]
pub enum Incoming {
    /// The greeting arrived: the connection is open.
    Greeting,
    /// The greeting was an `ERR ` line (such as "the server is full"); the connection is closed.
    Refused,
    /// The reply to the oldest outstanding message, which was due at `due`.
    Reply { due: Instant, err: bool },
    /// A reply with no message outstanding.
    Unexpected,
    /// The server closed the connection we asked it to close.
    Closed,
    /// The connection ended, before its greeting if `connecting`, with `lost` messages
    /// outstanding.
    Ended {
        why: End,
        connecting: bool,
        lost: usize,
    },
}

#[derive(Debug)]
pub enum End {
    /// The server closed it.
    Eof,
    /// A socket error (refused, reset, ...).
    Error(io::Error),
    /// A reply line longer than [`MAX_REPLY_LINE`].
    Overlong,
    /// WebSocket: the server did not accept the upgrade (a `503` when it is full).
    Handshake(HandshakeError),
    /// WebSocket: a frame a client must refuse (a reply over [`MAX_REPLY_LINE`] is `TooBig`).
    BadFrame(CloseCode),
    /// WebSocket: the server sent a close frame, with this code.
    CloseFrame(Option<u16>),
}

pub struct Conn {
    stream: Option<TcpStream>,
    pub stage: Stage,
    framing: Framing,
    /// When the connect started: connect time runs from here to the greeting.
    pub started: Instant,
    /// Line framing: the start of a reply line whose end has not arrived yet. WebSocket: bytes
    /// received and not decoded yet (the start of the `101`, or of a frame).
    partial: Vec<u8>,
    /// Bytes to send; `output[written..]` has not been accepted by the socket yet.
    output: Vec<u8>,
    written: usize,
    /// Due (closed loop: send) times of the messages waiting for a reply, oldest first; the
    /// server answers in order, so each reply belongs to the front one.
    outstanding: VecDeque<Instant>,
    web: Web,
}

/// A WebSocket connection's state (unused with the other framings).
#[derive(Default)]
struct Web {
    /// The opening handshake, until the server's `101` has arrived.
    handshake: Option<Handshake>,
    decoder: client::Decoder,
    /// The message whose parts are arriving began with `ERR ` (the server never splits one,
    /// but a client must take parts).
    err: bool,
    /// Xorshift state for the key and the masks: cheap, and never 0.
    random: u32,
}

impl Web {
    fn next_random(&mut self) -> u32 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.random = x;
        x
    }

    fn mask(&mut self) -> [u8; 4] {
        self.next_random().to_ne_bytes()
    }
}

impl Conn {
    /// Starts a non-blocking connect to `target` (the `n`th connection: it picks the source
    /// address) and registers the socket under `token`. With WebSocket framing, the upgrade
    /// request is queued at once, and leaves when the connect is done.
    pub fn connect(
        target: &Target,
        n: usize,
        framing: Framing,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Conn> {
        let started = Instant::now();
        let mut stream = target.connect(n)?;
        // Writable too: a short write resumes on the edge when the socket drains.
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        let mut conn = Conn {
            stream: Some(stream),
            stage: Stage::Connecting,
            framing,
            started,
            partial: Vec::new(),
            output: Vec::new(),
            written: 0,
            outstanding: VecDeque::new(),
            web: Web::default(),
        };
        if framing == Framing::Web {
            conn.web.random = seed(n);
            let mut key = [0u8; 16];
            for part in key.chunks_mut(4) {
                part.copy_from_slice(&conn.web.mask());
            }
            let handshake = Handshake::new(key);
            conn.output = handshake.request(&target.addr.to_string(), WEBSOCKET_PATH);
            conn.web.handshake = Some(handshake);
        }
        Ok(conn)
    }

    /// A slot with no connection in it (yet).
    pub fn none() -> Conn {
        Conn {
            stream: None,
            stage: Stage::Closed,
            framing: Framing::Line,
            started: Instant::now(),
            partial: Vec::new(),
            output: Vec::new(),
            written: 0,
            outstanding: VecDeque::new(),
            web: Web::default(),
        }
    }

    /// Whether part of a line has arrived without its newline (a greeting that never ends is
    /// what the tutorial's server sends to a line-framed client).
    pub fn has_partial_line(&self) -> bool {
        self.framing == Framing::Line && !self.partial.is_empty()
    }

    /// Due time of the oldest message still waiting for its reply.
    pub fn oldest_due(&self) -> Option<Instant> {
        self.outstanding.front().copied()
    }

    /// Queues one message due at `due` and sends what the socket takes. An error closes the
    /// connection and is reported like a read's end.
    pub fn send(&mut self, message: &[u8], due: Instant, out: &mut VecDeque<Incoming>) {
        if self.stage != Stage::Open {
            return;
        }
        self.outstanding.push_back(due);
        if self.framing == Framing::Web {
            let text = std::str::from_utf8(message).expect("the message is text");
            let mask = self.web.mask();
            client::encode_text(&mut self.output, text, mask);
        } else {
            self.output.extend_from_slice(message);
        }
        self.flush(out);
    }

    /// Writes queued bytes until done or the socket is full (the rest waits for WRITABLE).
    pub fn flush(&mut self, out: &mut VecDeque<Incoming>) {
        while self.written < self.output.len() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match stream.write(&self.output[self.written..]) {
                Ok(0) => return self.end(End::Error(ErrorKind::WriteZero.into()), out),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Not connected yet: the bytes wait for the connect to finish.
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => return self.end(End::Error(e), out),
            }
        }
        self.output.clear();
        self.written = 0;
    }

    /// Reads everything available (edge-triggered readiness) and reports what it meant.
    ///
    /// A read that does not fill `scratch` has emptied the socket, and any later bytes raise a
    /// new readiness event, so it ends the loop without the read that would say `WouldBlock`
    /// (one system call saved per reply). A hang-up is the exception: its event may have come
    /// with the last bytes, so with `drain` the loop reads on to the end of the stream.
    pub fn receive(&mut self, scratch: &mut [u8], drain: bool, out: &mut VecDeque<Incoming>) {
        while self.stage != Stage::Closed {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let n = match stream.read(scratch) {
                Ok(0) => return self.end(End::Eof, out),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.end(End::Error(e), out),
            };
            let data = &scratch[..n];
            match self.framing {
                // The tutorial's server sends each greeting or reply with one send(): one read.
                Framing::Legacy => {
                    self.complete(data.starts_with(protocol::ERROR_PREFIX.as_bytes()), out)
                }
                Framing::Line => self.frame_lines(data, out),
                Framing::Web => self.frame_websocket(data, out),
            }
            if n < scratch.len() && !drain {
                return;
            }
        }
    }

    /// Reports a socket error found outside a read (an error event during connect).
    pub fn fail(&mut self, error: io::Error, out: &mut VecDeque<Incoming>) {
        self.end(End::Error(error), out);
    }

    /// The pending socket error, if the event loop flagged one.
    pub fn take_error(&self) -> Option<io::Error> {
        self.stream
            .as_ref()
            .and_then(|s| s.take_error().ok().flatten())
    }

    /// Asks the server to end the connection (WebSocket: a close frame, 1000; lines: `exit`,
    /// the bytes given) and waits for it to close its side ([`Incoming::Closed`]), reading
    /// past its answer. So the server closes first, as a browser's closing handshake has it.
    pub fn start_closing(&mut self, exit: &[u8], out: &mut VecDeque<Incoming>) {
        if self.framing == Framing::Web {
            let mask = self.web.mask();
            client::encode_close(&mut self.output, 1000, mask);
        } else {
            self.output.extend_from_slice(exit);
        }
        self.stage = Stage::Closing;
        self.flush(out);
    }

    /// Closes the connection from our side (a WebSocket one without a close frame, as when a
    /// browser's tab is closed); returns how many messages were still outstanding.
    pub fn close(&mut self) -> usize {
        self.stream = None;
        self.stage = Stage::Closed;
        self.output = Vec::new();
        self.partial = Vec::new();
        std::mem::take(&mut self.outstanding).len()
    }

    fn frame_lines(&mut self, mut data: &[u8], out: &mut VecDeque<Incoming>) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            if self.partial.len() + pos > MAX_REPLY_LINE {
                return self.end(End::Overlong, out);
            }
            // Only the start of a line matters (is it an ERR?), but it may have come in pieces.
            let err = if self.partial.is_empty() {
                data[..pos].starts_with(protocol::ERROR_PREFIX.as_bytes())
            } else {
                self.partial.extend_from_slice(&data[..pos]);
                let err = self.partial.starts_with(protocol::ERROR_PREFIX.as_bytes());
                self.partial.clear();
                err
            };
            self.complete(err, out);
            if self.stage == Stage::Closed {
                return;
            }
            data = &data[pos + 1..];
        }
        if self.partial.len() + data.len() > MAX_REPLY_LINE {
            return self.end(End::Overlong, out);
        }
        self.partial.extend_from_slice(data);
    }

    /// WebSocket: the `101` first, then frames, each text message one greeting or reply. What
    /// is not whole yet waits in `partial`.
    fn frame_websocket(&mut self, data: &[u8], out: &mut VecDeque<Incoming>) {
        let mut pending = std::mem::take(&mut self.partial);
        pending.extend_from_slice(data);
        let mut at = 0;
        if let Some(handshake) = self.web.handshake {
            match handshake.response(&pending) {
                Ok(None) => {
                    self.partial = pending;
                    return;
                }
                Ok(Some(head)) => {
                    at = head;
                    self.web.handshake = None;
                }
                Err(e) => return self.end(End::Handshake(e), out),
            }
        }
        let mut pong = false;
        while self.stage != Stage::Closed {
            let continuing = self.web.decoder.in_message();
            let frame = match self.web.decoder.next(&pending[at..], MAX_REPLY_LINE) {
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Frame { consumed, frame }) => {
                    at += consumed;
                    frame
                }
                Err(code) => return self.end(End::BadFrame(code), out),
            };
            if self.stage == Stage::Closing {
                continue; // the end of stream after the server's close frame is what counts
            }
            match frame {
                Frame::Text { data, fin } => {
                    if !continuing {
                        self.web.err = data.starts_with(protocol::ERROR_PREFIX.as_bytes());
                    }
                    if fin {
                        self.complete(self.web.err, out);
                    }
                }
                Frame::Ping(data) => {
                    let mask = self.web.mask();
                    client::encode_pong(&mut self.output, data, mask);
                    pong = true;
                }
                Frame::Pong(_) => {}
                Frame::Close { code, .. } => return self.end(End::CloseFrame(code), out),
            }
        }
        if self.stage == Stage::Closed {
            return;
        }
        pending.drain(..at);
        self.partial = pending;
        if pong {
            self.flush(out);
        }
    }

    /// One whole greeting or reply arrived.
    fn complete(&mut self, err: bool, out: &mut VecDeque<Incoming>) {
        match self.stage {
            Stage::Connecting if err => {
                self.close();
                out.push_back(Incoming::Refused);
            }
            Stage::Connecting => {
                self.stage = Stage::Open;
                out.push_back(Incoming::Greeting);
            }
            Stage::Open => match self.outstanding.pop_front() {
                Some(due) => out.push_back(Incoming::Reply { due, err }),
                None => out.push_back(Incoming::Unexpected),
            },
            Stage::Closing | Stage::Closed => {}
        }
    }

    fn end(&mut self, why: End, out: &mut VecDeque<Incoming>) {
        match self.stage {
            Stage::Closed => return,
            Stage::Closing => {
                self.close();
                return out.push_back(Incoming::Closed);
            }
            Stage::Connecting | Stage::Open => {}
        }
        let connecting = self.stage == Stage::Connecting;
        let lost = self.close();
        out.push_back(Incoming::Ended {
            why,
            connecting,
            lost,
        });
    }
}

/// A starting point for connection `n`'s key and masks: the clock's nanoseconds and `n`, mixed
/// (never 0, where xorshift would stay).
fn seed(n: usize) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    (nanos ^ (n as u32).wrapping_mul(0x9E37_79B9)).max(1)
}

/// Where the connections go, and from which local addresses.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Local addresses to connect from, in turn (`--source-ip`); empty: the system chooses.
    /// Each address has its own range of ephemeral ports, so several of them allow more
    /// connections to one server address than one does (about 28,000 each).
    pub sources: Arc<[IpAddr]>,
}

impl Target {
    fn connect(&self, n: usize) -> io::Result<TcpStream> {
        if self.sources.is_empty() {
            return TcpStream::connect(self.addr);
        }
        let source = self.sources[n % self.sources.len()];
        let socket = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        match socket.connect(&self.addr.into()) {
            Ok(()) => {}
            // Non-blocking: the connect finishes later, and the socket turns writable.
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }
}
