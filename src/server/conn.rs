//! One client connection: its socket, where it is in its life, and the bytes it holds.
//!
//! An idle connection is a socket and a few words (48 bytes on 64-bit Linux). Everything it
//! needs only while something is in flight (bytes waiting to be framed, replies the client has
//! not taken yet, the clocks of the timeouts that run only then) lives in one [`Busy`] box,
//! made when needed and freed as soon as the connection is quiet again.
//!
//! This module does the socket I/O that needs nothing else (read, write, discard) and keeps the
//! connection's own bookkeeping; it never decides what a message means (that is `dispatch`),
//! nor when to close (that is the event loop's).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;
use slab::Slab;

use super::conn_id::ConnId;
use super::timers::{Clocks, Ticks, Timeouts, NEVER};
use super::transport::Transport;
use crate::protocol::{Decoded, Framer};
use crate::proxy_protocol::{self, ProxyHeader, ProxyParse};
use crate::websocket::{self, CloseCode};

/// Unsent reply bytes past which the connection stops reading (and so stops producing replies)
/// until the client takes some: a client that never reads cannot grow the server's memory.
/// Replies are short, and the kernel's send buffer holds far more than this already.
pub(super) const OUTPUT_LIMIT: usize = 16 * 1024;

/// Where a connection is in its life. One at a time: each excludes the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// With `--proxy-protocol`: the PROXY header has not come yet, and nothing else is framed.
    AwaitingProxyHeader,
    /// A web listener's connection whose HTTP request head has not all come yet.
    AwaitingRequest,
    /// Reading messages and answering them.
    Open,
    /// Said goodbye (`exit`, idle, shutdown, too many bad lines): its output is written, nothing
    /// more is read, then it closes.
    Closing,
    /// Our side is shut down (FIN sent); input is discarded until the client closes too.
    Lingering,
}

/// One client connection.
pub(super) struct Conn {
    socket: TcpStream,
    /// Tells this connection from earlier ones that used the same slot.
    generation: u32,
    framer: Framer,
    state: Lifecycle,
    /// The socket may have bytes we have not read (we stopped before it said `WouldBlock`).
    unread_input: bool,
    /// The poll reported a hang-up, an error or urgent data: read until `WouldBlock` rather
    /// than stopping at a short read, which these can cause with bytes still queued.
    read_to_wouldblock: bool,
    /// The last read drained the socket: in legacy framing, the pending bytes are a message.
    burst_ended: bool,
    /// The client closed its sending side: answer what it sent, then close.
    peer_closed: bool,
    /// A robot lookup for this connection is on the worker pool.
    lookup_in_flight: bool,
    /// In the loop's list of connections with a timeout running.
    has_timers: bool,
    /// Bad lines since the last message.
    bad_lines: u8,
    /// When the last complete message (or the connection) came: the idle clock.
    last_message: Ticks,
    /// The client's address as a PROXY header gave it (boxed: most connections have none).
    client: Option<Box<SocketAddr>>,
    /// What the connection holds only while it has something in flight.
    busy: Option<Box<Busy>>,
}

/// The part of a connection that exists only while it has something in flight.
struct Busy {
    /// Bytes received and not yet framed: an unfinished line, or messages that wait while a
    /// lookup is in flight or the output is full.
    input: Vec<u8>,
    /// Reply bytes not yet written to the socket.
    output: Vec<u8>,
    /// A WebSocket connection's decoder, between frames (all zero unless a fragmented message
    /// is under way, as on every connection that has no box).
    decoder: websocket::Decoder,
    /// The parts of a fragmented WebSocket message so far.
    fragments: Vec<u8>,
    /// When the unfinished line began, or `NEVER`.
    line_started: Ticks,
    /// Since when unsent output has made no progress, or `NEVER`.
    output_stalled: Ticks,
    /// A write since the clocks were last updated: the client is taking its replies.
    output_moved: bool,
}

impl Busy {
    fn new() -> Box<Busy> {
        Box::new(Busy {
            input: Vec::new(),
            output: Vec::new(),
            decoder: websocket::Decoder::new(),
            fragments: Vec::new(),
            line_started: NEVER,
            output_stalled: NEVER,
            output_moved: false,
        })
    }
}

/// How far [`Conn::discard_input`] got.
pub(super) enum Discarded {
    /// The socket has nothing more for now.
    UntilWouldBlock,
    /// The client closed its side: the connection can be closed.
    UntilClosed,
    /// The read budget ran out with input still coming.
    Budget,
}

impl Conn {
    /// A new connection; a web listener's has a [`Framer::websocket`].
    pub fn new(
        socket: TcpStream,
        generation: u32,
        framer: Framer,
        now: Ticks,
        proxy_header_expected: bool,
    ) -> Conn {
        let state = if proxy_header_expected {
            Lifecycle::AwaitingProxyHeader
        } else if framer.is_websocket() {
            Lifecycle::AwaitingRequest
        } else {
            Lifecycle::Open
        };
        Conn {
            socket,
            generation,
            framer,
            state,
            unread_input: true,
            read_to_wouldblock: false,
            burst_ended: false,
            peer_closed: false,
            lookup_in_flight: false,
            has_timers: false,
            bad_lines: 0,
            last_message: now,
            client: None,
            // Waiting for the PROXY header runs the line clock, which lives in the box. (A
            // request's clock counts from the accept, `last_message`, until it has a box.)
            busy: proxy_header_expected.then(Busy::new),
        }
    }

    /// What the connection speaks: which listener it came from.
    pub fn transport(&self) -> Transport {
        if self.framer.is_websocket() {
            Transport::Web
        } else {
            Transport::Line
        }
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn state(&self) -> Lifecycle {
        self.state
    }

    /// Who this is, for log lines: the client a PROXY header named, or the socket's peer, or
    /// (once the peer is gone, when the socket no longer knows it) the connection's number in
    /// the log line of its accept.
    pub fn peer_name(&self, loop_index: usize) -> String {
        match &self.client {
            Some(client) => client.to_string(),
            None => self.socket.peer_addr().map_or_else(
                |_| format!("connection {loop_index}.{}", self.generation),
                |a| a.to_string(),
            ),
        }
    }

    // ----- reading -----

    /// The poll said the socket is readable (or hung up, failed, or has urgent data, which
    /// `read_to_wouldblock` is for).
    pub fn readable(&mut self, read_to_wouldblock: bool) {
        self.unread_input = true;
        self.read_to_wouldblock |= read_to_wouldblock;
    }

    /// Whether to read from the socket now. A blocked connection reads at most one buffer ahead;
    /// the rest waits in the kernel, which pushes back on the client through TCP.
    pub fn wants_read(&self) -> bool {
        self.unread_input
            && !self.peer_closed
            && self.reads_messages()
            && (!self.blocked() || self.input().is_empty())
    }

    /// Reads once into `scratch`; returns the bytes that came, or `None` when there were none
    /// for now, or the client closed its side (which [`finished`](Conn::finished) then knows).
    pub fn read(&mut self, scratch: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.socket.read(scratch) {
                Ok(0) => {
                    self.unread_input = false;
                    self.peer_closed = true;
                    return Ok(None);
                }
                Ok(n) => {
                    // A read that did not fill the buffer emptied the socket, and bytes arriving
                    // later raise a new event (as tokio also relies on with epoll): no need for
                    // the read that would say WouldBlock. Except after a hang-up (its event may
                    // have come with these bytes) or urgent data (a read stops short before it).
                    let drained = n < scratch.len() && !self.read_to_wouldblock;
                    self.unread_input = !drained;
                    self.burst_ended = drained;
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unread_input = false;
                    self.burst_ended = true;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Collects the PROXY header that must open the connection; what follows it stays in the
    /// input for the framer. A connection without a valid header is an error.
    pub fn take_proxy_header(&mut self, bytes: &[u8]) -> io::Result<()> {
        let busy = self.busy.get_or_insert_with(Busy::new);
        busy.input.extend_from_slice(bytes);
        match proxy_protocol::parse(&busy.input) {
            ProxyParse::Incomplete => Ok(()),
            ProxyParse::Done { header, consumed } => {
                if let ProxyHeader::Proxied { source, .. } = header {
                    if let Ok(proxy) = self.socket.peer_addr() {
                        log::debug!("connection from proxy {proxy} is for client {source}");
                    }
                    self.client = Some(Box::new(source));
                }
                self.state = if self.framer.is_websocket() {
                    Lifecycle::AwaitingRequest
                } else {
                    Lifecycle::Open
                };
                // The header's wait is over; the line clock starts again for what follows.
                busy.line_started = NEVER;
                let input = std::mem::take(&mut busy.input);
                self.keep_input(input, consumed);
                Ok(())
            }
            ProxyParse::Invalid(error) => Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        }
    }

    /// Reads and drops input, at most `reads` times (a lingering connection).
    pub fn discard_input(&mut self, scratch: &mut [u8], reads: usize) -> io::Result<Discarded> {
        for _ in 0..reads {
            match self.socket.read(scratch) {
                Ok(0) => return Ok(Discarded::UntilClosed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Discarded::UntilWouldBlock)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Discarded::Budget)
    }

    // ----- framing -----

    /// Whether what the client sends is still read as messages (or the PROXY header, or the
    /// request head).
    fn reads_messages(&self) -> bool {
        matches!(
            self.state,
            Lifecycle::Open | Lifecycle::AwaitingProxyHeader | Lifecycle::AwaitingRequest
        )
    }

    /// Bytes received and not yet framed.
    pub fn input(&self) -> &[u8] {
        self.busy.as_ref().map_or(&[], |b| &b.input)
    }

    /// Takes the unframed input out, to frame it while the connection is borrowed for
    /// answering; give back what is left with [`keep_input`](Conn::keep_input).
    pub fn take_input(&mut self) -> Vec<u8> {
        self.busy
            .as_mut()
            .map(|b| std::mem::take(&mut b.input))
            .unwrap_or_default()
    }

    /// Keeps the unframed tail of `input` after `consumed` bytes were used (none once the
    /// connection is closing: nothing more is answered).
    pub fn keep_input(&mut self, mut input: Vec<u8>, consumed: usize) {
        if consumed >= input.len() || !self.reads_messages() {
            if let Some(busy) = &mut self.busy {
                busy.input = Vec::new(); // give the memory back
            }
            self.settle();
        } else {
            input.drain(..consumed);
            self.busy.get_or_insert_with(Busy::new).input = input;
        }
    }

    /// Keeps bytes that cannot be framed yet after what is already waiting (none once the
    /// connection is closing).
    pub fn append_input(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && self.reads_messages() {
            let busy = self.busy.get_or_insert_with(Busy::new);
            busy.input.extend_from_slice(bytes);
        }
    }

    /// The next frame at the front of `pending` (the connection's input, or fresh bytes), with
    /// the end of a burst or of the stream taken into account as they apply.
    pub fn next_frame<'a>(&mut self, pending: &'a [u8]) -> Decoded<'a> {
        let decoded = self
            .framer
            .next(pending, &mut self.burst_ended, self.peer_closed);
        if decoded.consumed > 0 && !self.framer.is_discarding() {
            // A line (or burst) is complete: the clock of an unfinished line starts again from
            // whatever follows it.
            if let Some(busy) = &mut self.busy {
                busy.line_started = NEVER;
            }
        }
        decoded
    }

    /// The WebSocket frame at the front of `pending` (unmasked in place), or the close code
    /// that ends the connection. The decoder's state is kept in the box only while a fragmented
    /// message is under way.
    pub fn next_websocket_frame<'a>(
        &mut self,
        pending: &'a mut [u8],
    ) -> Result<websocket::Decoded<'a>, CloseCode> {
        let mut decoder = self
            .busy
            .as_ref()
            .map(|b| b.decoder.clone())
            .unwrap_or_default();
        let decoded = decoder.next(pending, self.framer.max_line())?;
        if let websocket::Decoded::Frame { .. } = decoded {
            if decoder.in_message() {
                self.busy.get_or_insert_with(Busy::new).decoder = decoder;
            } else if let Some(busy) = &mut self.busy {
                // Between messages: the clock of an unfinished message starts again from
                // whatever follows.
                busy.decoder = decoder;
                busy.line_started = NEVER;
            }
        }
        Ok(decoded)
    }

    /// Keeps a part of a fragmented WebSocket message (the decoder has checked its size).
    pub fn add_fragment(&mut self, data: &[u8]) {
        let busy = self.busy.get_or_insert_with(Busy::new);
        busy.fragments.extend_from_slice(data);
    }

    /// Takes the parts of a fragmented message out, to add its last part.
    pub fn take_fragments(&mut self) -> Vec<u8> {
        self.busy
            .as_mut()
            .map(|b| std::mem::take(&mut b.fragments))
            .unwrap_or_default()
    }

    /// The request was a WebSocket upgrade: from now on, its bytes are frames.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub fn upgraded(&mut self) {
        debug_assert_eq!(self.state, Lifecycle::AwaitingRequest);
        self.state = Lifecycle::Open;
        if let Some(busy) = &mut self.busy {
            busy.line_started = NEVER;
        }
    }

    /// The client has sent part of a message and is expected to finish it. Bytes that wait
    /// behind a lookup or full output are not the client's delay, and legacy-framed clients
    /// have no partial messages.
    pub fn has_partial_line(&self) -> bool {
        match self.state {
            Lifecycle::AwaitingProxyHeader | Lifecycle::AwaitingRequest => true,
            Lifecycle::Open if self.framer.is_websocket() => {
                !self.blocked()
                    && self
                        .busy
                        .as_ref()
                        .is_some_and(|b| !b.input.is_empty() || b.decoder.in_message())
            }
            Lifecycle::Open => {
                !self.framer.is_legacy()
                    && !self.blocked()
                    && (!self.input().is_empty() || self.framer.is_discarding())
            }
            Lifecycle::Closing | Lifecycle::Lingering => false,
        }
    }

    // ----- answering -----

    /// No further message can be answered now: replies must stay in order behind the lookup in
    /// flight, and the output must drain before more is produced.
    pub fn blocked(&self) -> bool {
        self.lookup_in_flight || self.output_full()
    }

    pub fn lookup_in_flight(&self) -> bool {
        self.lookup_in_flight
    }

    /// A message went to the robot on the pool; later ones wait for its answer.
    pub fn lookup_started(&mut self) {
        self.lookup_in_flight = true;
    }

    /// The lookup's answer came (or will not be awaited): answering may go on. The idle clock
    /// starts again when the answer is delivered, not when it was asked.
    pub fn lookup_ended(&mut self, now: Ticks) {
        self.lookup_in_flight = false;
        self.last_message = now;
    }

    /// A frame came: the idle clock starts again; a message (or `exit`) ends a run of bad lines.
    pub fn frame_came(&mut self, now: Ticks, is_message: bool) {
        self.last_message = now;
        if is_message {
            self.bad_lines = 0;
        }
    }

    /// A bad line came; returns how many in a row.
    pub fn bad_line_came(&mut self) -> u8 {
        self.bad_lines = self.bad_lines.saturating_add(1);
        self.bad_lines
    }

    // ----- writing -----

    pub fn output_full(&self) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|b| b.output.len() >= OUTPUT_LIMIT)
    }

    pub fn has_output(&self) -> bool {
        self.output_len() > 0
    }

    /// Reply bytes waiting to be written.
    pub fn output_len(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| b.output.len())
    }

    /// Queues `text` as one reply (a line, or a WebSocket text message).
    pub fn queue_reply(&mut self, text: &str) {
        let transport = self.transport();
        transport.reply(&mut self.busy.get_or_insert_with(Busy::new).output, text);
    }

    /// Queues bytes as they are (an HTTP response).
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        let busy = self.busy.get_or_insert_with(Busy::new);
        busy.output.extend_from_slice(bytes);
    }

    /// Queues the last words before closing: `text` and, on WebSocket, a close frame.
    pub fn queue_goodbye(&mut self, text: &str, code: CloseCode) {
        let transport = self.transport();
        transport.goodbye(
            &mut self.busy.get_or_insert_with(Busy::new).output,
            text,
            code,
        );
    }

    /// Sends `bytes` after any output already queued, writing straight away when possible so
    /// that most lines never touch the output buffer. Returns how many bytes were written now.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.has_output() {
            self.busy
                .get_or_insert_with(Busy::new)
                .output
                .extend_from_slice(bytes);
            return self.flush();
        }
        let written = write_some(&mut self.socket, bytes)?;
        if written < bytes.len() {
            let busy = self.busy.get_or_insert_with(Busy::new);
            busy.output.extend_from_slice(&bytes[written..]);
        }
        Ok(written)
    }

    /// Writes as much queued output as the socket takes; the rest waits for `WRITABLE`.
    /// Returns how many bytes were written.
    pub fn flush(&mut self) -> io::Result<usize> {
        let Some(busy) = self.busy.as_mut().filter(|b| !b.output.is_empty()) else {
            return Ok(0);
        };
        let written = write_some(&mut self.socket, &busy.output)?;
        busy.output_moved |= written > 0;
        if written == busy.output.len() {
            busy.output = Vec::new(); // give the memory back
            self.settle();
        } else {
            busy.output.drain(..written);
        }
        Ok(written)
    }

    // ----- ending -----

    /// Close once the output is written (after `exit`, at shutdown, …): read nothing more, and
    /// drop what waits unread.
    pub fn close_after_output(&mut self) {
        self.state = Lifecycle::Closing;
        if let Some(busy) = &mut self.busy {
            busy.input = Vec::new();
            busy.fragments = Vec::new();
            busy.decoder = websocket::Decoder::new();
        }
        self.settle();
    }

    /// Drops a lookup still in flight at shutdown; returns whether there was one.
    pub fn abandon_lookup(&mut self) -> bool {
        std::mem::take(&mut self.lookup_in_flight)
    }

    /// Nothing is left to do: the connection can be closed.
    pub fn finished(&self) -> bool {
        if self.lookup_in_flight || self.has_output() {
            return false;
        }
        match self.state {
            Lifecycle::Closing => true,
            Lifecycle::AwaitingProxyHeader | Lifecycle::AwaitingRequest => self.peer_closed,
            Lifecycle::Open => self.peer_closed && self.input().is_empty(),
            Lifecycle::Lingering => false,
        }
    }

    /// Whether the client has closed its sending side.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Sends FIN and goes on discarding input until the client closes too (a lingering close).
    pub fn start_lingering(&mut self) -> io::Result<()> {
        self.socket.shutdown(Shutdown::Write)?;
        self.state = Lifecycle::Lingering;
        self.busy = None;
        Ok(())
    }

    // ----- timers -----

    pub fn has_timers(&self) -> bool {
        self.has_timers
    }

    pub fn set_has_timers(&mut self, on: bool) {
        self.has_timers = on;
    }

    /// Starts, restarts or stops the clocks of the line and send timeouts after the connection
    /// was served: the line clock runs while a line is unfinished, the send clock while output
    /// waits and makes no progress.
    pub fn update_clocks(&mut self, now: Ticks, timeouts: Timeouts) {
        if self.state == Lifecycle::Lingering {
            return; // it has its own deadline
        }
        let partial = timeouts.line > 0 && self.has_partial_line();
        let Some(busy) = self.busy.as_mut() else {
            return; // no input, no output: neither clock can run
        };
        if !partial {
            busy.line_started = NEVER;
        } else if busy.line_started == NEVER {
            // A request has been awaited since the connection came.
            busy.line_started = if self.state == Lifecycle::AwaitingRequest {
                self.last_message
            } else {
                now
            };
        }
        let moved = std::mem::take(&mut busy.output_moved);
        if timeouts.send == 0 || busy.output.is_empty() {
            busy.output_stalled = NEVER;
        } else if moved || busy.output_stalled == NEVER {
            busy.output_stalled = now;
        }
    }

    /// The clocks as the timeouts read them: the idle clock runs while the connection waits for
    /// its client (not for the robot, not while closing).
    pub fn clocks(&self) -> Clocks {
        let (line_started, output_stalled) = match &self.busy {
            Some(b) => (b.line_started, b.output_stalled),
            // Awaiting the request with nothing of it yet: since the accept.
            None if self.state == Lifecycle::AwaitingRequest => (self.last_message, NEVER),
            None => (NEVER, NEVER),
        };
        match self.state {
            Lifecycle::Lingering => Clocks::STOPPED,
            Lifecycle::Closing => Clocks {
                line_started: NEVER,
                output_stalled,
                idle_since: NEVER,
            },
            Lifecycle::Open | Lifecycle::AwaitingProxyHeader | Lifecycle::AwaitingRequest => {
                Clocks {
                    line_started,
                    output_stalled,
                    idle_since: if self.lookup_in_flight {
                        NEVER
                    } else {
                        self.last_message
                    },
                }
            }
        }
    }

    /// Frees the busy box once nothing is in flight.
    fn settle(&mut self) {
        let quiet = self.busy.as_ref().is_some_and(|b| {
            b.input.is_empty()
                && b.output.is_empty()
                && !b.decoder.in_message()
                && !matches!(
                    self.state,
                    Lifecycle::AwaitingProxyHeader | Lifecycle::AwaitingRequest
                )
                && !self.framer.is_discarding()
        });
        if quiet {
            self.busy = None;
        }
    }
}

/// The connection `id` names in `conns`, if it is still open there.
pub(super) fn find(conns: &mut Slab<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns
        .get_mut(id.key)
        .filter(|c| c.generation == id.generation)
}

/// Writes until the socket would block or everything is written; returns how much was written.
fn write_some(socket: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match socket.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, Framing};
    use std::time::Duration;

    /// A connection as the server sees it, and the client's end of it.
    fn pair(proxy: bool) -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let socket = TcpStream::from_std(server);
        let framer = Framer::new(Framing::Line, 4096);
        (Conn::new(socket, 1, framer, 0, proxy), client)
    }

    /// Reads until the bytes the client sent have all arrived.
    fn read_all(conn: &mut Conn, expected: usize) -> Vec<u8> {
        let mut scratch = [0u8; 256];
        let mut got = Vec::new();
        while got.len() < expected {
            conn.readable(false);
            if let Some(n) = conn.read(&mut scratch).unwrap() {
                got.extend_from_slice(&scratch[..n]);
            }
        }
        got
    }

    #[test]
    fn an_idle_connection_stays_small() {
        // Idle connections are what this server holds most of: each is one slab slot of this
        // size (the kernel's socket memory aside). mio's sockets carry an extra word in debug
        // builds (a check of which poll owns them).
        let limit = if cfg!(debug_assertions) { 64 } else { 48 };
        let size = std::mem::size_of::<Conn>();
        assert!(size <= limit, "Conn grew to {size} bytes");
    }

    #[test]
    fn an_idle_connection_holds_no_box() {
        let (mut conn, mut client) = pair(false);
        assert!(conn.busy.is_none());
        client.write_all(b"bob::hel").unwrap();
        let bytes = read_all(&mut conn, 8);
        conn.append_input(&bytes);
        assert!(conn.busy.is_some(), "a partial line is kept");
        client.write_all(b"lo\n").unwrap();
        let rest = read_all(&mut conn, 3);
        conn.append_input(&rest);
        let input = conn.take_input();
        let decoded = conn.next_frame(&input);
        assert_eq!(
            decoded.frame,
            Some(Frame::Message {
                user: "bob",
                text: "hello"
            })
        );
        let consumed = decoded.consumed;
        conn.keep_input(input, consumed);
        assert!(conn.busy.is_none(), "nothing in flight: the box is freed");
        conn.queue_reply("a reply");
        assert!(conn.busy.is_some());
        conn.flush().unwrap();
        assert!(
            conn.busy.is_none(),
            "the reply is written: the box is freed"
        );
        let mut reply = [0u8; 8];
        std::io::Read::read_exact(&mut client, &mut reply).unwrap();
        assert_eq!(&reply, b"a reply\n");
    }

    /// A masked client text frame (the mask all zero, so the payload is as sent).
    fn client_text(payload: &[u8], fin: bool) -> Vec<u8> {
        let mut frame = vec![if fin { 0x81 } else { 0x01 }, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn a_websocket_keeps_a_box_only_while_a_message_is_unfinished() {
        let (server, _client) = pair(false);
        let socket = server.socket;
        let mut conn = Conn::new(socket, 2, Framer::websocket(4096), 0, false);
        assert_eq!(conn.state(), Lifecycle::AwaitingRequest);
        assert!(conn.has_partial_line(), "the request runs the line clock");
        conn.upgraded();
        conn.keep_input(Vec::new(), 0);
        assert!(conn.busy.is_none(), "open and quiet: no box");
        assert!(!conn.has_partial_line());

        let mut first = client_text(b"bob::hel", false);
        match conn.next_websocket_frame(&mut first) {
            Ok(websocket::Decoded::Frame { event, .. }) => {
                let websocket::Event::Text { data, fin } = event else {
                    panic!("{event:?}")
                };
                assert!(!fin);
                conn.add_fragment(data);
            }
            other => panic!("{other:?}"),
        }
        assert!(conn.busy.is_some(), "a fragmented message keeps its parts");
        assert!(conn.has_partial_line(), "and runs the line clock");

        let mut last = client_text(b"lo", true);
        last[0] = 0x80; // a continuation
        let Ok(websocket::Decoded::Frame { event, .. }) = conn.next_websocket_frame(&mut last)
        else {
            panic!("the last part")
        };
        assert_eq!(
            event,
            websocket::Event::Text {
                data: b"lo",
                fin: true
            }
        );
        assert_eq!(conn.take_fragments(), b"bob::hel");
        conn.keep_input(Vec::new(), 0);
        assert!(
            conn.busy.is_none(),
            "the message is whole: the box is freed"
        );
        assert!(!conn.has_partial_line());
    }

    #[test]
    fn what_each_state_reads_and_when_it_is_finished() {
        let (mut conn, _client) = pair(false);
        assert_eq!(conn.state(), Lifecycle::Open);
        assert!(conn.wants_read(), "a new connection reads");
        assert!(!conn.finished());
        conn.lookup_started();
        assert!(
            conn.wants_read(),
            "blocked, it still reads one buffer ahead"
        );
        conn.append_input(b"ann::waiting\n");
        assert!(
            !conn.wants_read(),
            "blocked with input waiting, it reads no more"
        );
        conn.lookup_ended(0);
        conn.close_after_output();
        assert_eq!(conn.state(), Lifecycle::Closing);
        assert!(!conn.wants_read(), "closing, it reads nothing");
        assert!(conn.input().is_empty(), "closing drops unread input");
        assert!(conn.finished(), "closing with nothing queued is finished");
        conn.queue_reply("goodbye");
        assert!(!conn.finished(), "not while the goodbye waits");
        conn.flush().unwrap();
        assert!(conn.finished());
        conn.start_lingering().unwrap();
        assert_eq!(conn.state(), Lifecycle::Lingering);
        assert!(!conn.wants_read());
        assert_eq!(conn.clocks(), Clocks::STOPPED);
    }

    #[test]
    fn a_client_that_closed_is_finished_once_answered() {
        let (mut conn, client) = pair(false);
        client.shutdown(Shutdown::Write).unwrap();
        let mut scratch = [0u8; 64];
        while !conn.peer_closed() {
            conn.readable(false);
            conn.read(&mut scratch).unwrap();
        }
        assert!(conn.finished());
        conn.lookup_started();
        assert!(!conn.finished(), "its answer is still coming");
    }

    #[test]
    fn the_proxy_header_comes_first() {
        let (mut conn, _client) = pair(true);
        assert_eq!(conn.state(), Lifecycle::AwaitingProxyHeader);
        assert!(conn.has_partial_line(), "the header runs the line clock");
        conn.take_proxy_header(b"PROXY TCP4 198.51.100.22 192.0.2.1 40000 99")
            .unwrap();
        assert_eq!(conn.state(), Lifecycle::AwaitingProxyHeader);
        conn.take_proxy_header(b"99\r\nbob::hi\n").unwrap();
        assert_eq!(conn.state(), Lifecycle::Open);
        assert_eq!(conn.peer_name(0), "198.51.100.22:40000");
        assert_eq!(
            conn.input(),
            b"bob::hi\n",
            "what follows the header is kept"
        );
        let (mut bad, _client) = pair(true);
        assert!(bad.take_proxy_header(b"bob::hi\r\n").is_err());
    }

    #[test]
    fn the_line_clock_runs_only_while_a_line_is_unfinished() {
        let timeouts = Timeouts {
            line: 100,
            send: 100,
            idle: 0,
        };
        let (mut conn, _client) = pair(false);
        conn.update_clocks(5, timeouts);
        assert_eq!(conn.clocks().line_started, NEVER);
        conn.append_input(b"bob::hal");
        conn.update_clocks(7, timeouts);
        assert_eq!(conn.clocks().line_started, 7);
        conn.update_clocks(9, timeouts);
        assert_eq!(conn.clocks().line_started, 7, "it keeps running");
        conn.lookup_started();
        conn.update_clocks(11, timeouts);
        assert_eq!(
            conn.clocks().line_started,
            NEVER,
            "bytes waiting behind a lookup are not the client's delay"
        );
        conn.lookup_ended(12);
        conn.append_input(b"f\nbob::next");
        let input = conn.take_input();
        let consumed = conn.next_frame(&input).consumed;
        conn.keep_input(input, consumed);
        conn.update_clocks(13, timeouts);
        assert_eq!(
            conn.clocks().line_started,
            13,
            "a completed line starts the clock again"
        );
    }

    #[test]
    fn the_idle_clock_waits_for_the_client_only() {
        let (mut conn, _client) = pair(false);
        conn.frame_came(20, true);
        assert_eq!(conn.clocks().idle_since, 20);
        conn.lookup_started();
        assert_eq!(conn.clocks().idle_since, NEVER, "waiting for the robot");
        conn.lookup_ended(30);
        assert_eq!(conn.clocks().idle_since, 30, "restarted by the answer");
        conn.close_after_output();
        assert_eq!(conn.clocks().idle_since, NEVER, "said goodbye already");
    }

    #[test]
    fn bad_lines_are_counted_until_a_message() {
        let (mut conn, _client) = pair(false);
        assert_eq!(conn.bad_line_came(), 1);
        assert_eq!(conn.bad_line_came(), 2);
        conn.frame_came(0, false);
        assert_eq!(conn.bad_line_came(), 3, "a blank line is no message");
        conn.frame_came(0, true);
        assert_eq!(conn.bad_line_came(), 1);
    }
}
