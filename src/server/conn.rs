//! The state of one client connection, and the socket I/O that needs nothing else.
//!
//! An idle connection is a socket and a few words: its buffers are empty `Vec`s with no
//! allocation behind them. Bytes are held only for an unfinished line, messages waiting behind
//! a robot lookup, or replies the client has not yet taken, and the memory is given back as soon
//! as they are gone.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::timers::{Ticks, NEVER};
use crate::protocol::Framer;

/// Unsent reply bytes past which the connection stops reading (and so stops producing replies)
/// until the client takes some: a client that never reads cannot grow the server's memory.
/// Replies are short, and the kernel's send buffer holds far more than this already.
pub(super) const OUTPUT_LIMIT: usize = 16 * 1024;

/// One client connection.
pub(super) struct Conn {
    pub socket: TcpStream,
    /// Distinguishes this connection from earlier ones that used the same slab slot.
    pub generation: u32,
    pub framer: Framer,
    /// Bytes received and not yet framed: an unfinished line, or messages that wait while a
    /// lookup is in flight or the output is full.
    pub input: Vec<u8>,
    /// Reply bytes not yet written to the socket.
    pub output: Vec<u8>,
    /// A robot lookup for this connection is on the worker pool.
    pub lookup_in_flight: bool,
    /// The socket may have bytes we have not read (we stopped before it said `WouldBlock`).
    pub unread_input: bool,
    /// The last read drained the socket: in legacy framing, the pending bytes are a message.
    pub burst_ended: bool,
    /// The client closed its sending side: answer what it sent, then close.
    pub peer_closed: bool,
    /// Close once the output is written (after `exit`, or at shutdown); read nothing more.
    pub closing: bool,
    /// Our side is shut down; input is discarded until the client closes too.
    pub lingering: bool,
    /// The poll reported a hang-up, an error or urgent data: read until `WouldBlock` rather
    /// than stopping at a short read, which these can cause with bytes still queued.
    pub read_to_wouldblock: bool,
    /// The connection is in the loop's list of connections with timers.
    pub has_timers: bool,
    /// A write since the timers last looked: the client is taking its replies.
    pub output_moved: bool,
    /// When the unfinished line began, or `NEVER`.
    pub line_started: Ticks,
    /// Since when unsent output has made no progress, or `NEVER`.
    pub output_stalled: Ticks,
    /// When the last complete message (or the connection) came.
    pub last_message: Ticks,
    /// Bad lines since the last message: too many in a row close the connection.
    pub bad_lines: u8,
    /// With `--proxy-protocol`: the PROXY header has not come yet; nothing else is read.
    pub awaiting_proxy_header: bool,
    /// The client's address as a PROXY header gave it (boxed: most connections have none).
    pub client: Option<Box<SocketAddr>>,
}

/// How far [`Conn::discard_input`] got.
pub(super) enum Discarded {
    /// The socket has nothing more for now.
    UntilWouldBlock,
    /// The client closed its side (or the socket failed): the connection can be closed.
    UntilClosed,
    /// The read budget ran out with input still coming.
    Budget,
}

impl Conn {
    pub fn new(socket: TcpStream, generation: u32, framer: Framer, now: Ticks) -> Self {
        Conn {
            socket,
            generation,
            framer,
            input: Vec::new(),
            output: Vec::new(),
            lookup_in_flight: false,
            unread_input: true,
            burst_ended: false,
            peer_closed: false,
            closing: false,
            lingering: false,
            read_to_wouldblock: false,
            has_timers: false,
            output_moved: false,
            line_started: NEVER,
            output_stalled: NEVER,
            last_message: now,
            awaiting_proxy_header: false,
            bad_lines: 0,
            client: None,
        }
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

    /// The client has sent part of a message and is expected to finish it. Bytes that wait
    /// behind a lookup or full output are not the client's delay, and legacy-framed clients
    /// have no partial messages.
    pub fn has_partial_line(&self) -> bool {
        self.awaiting_proxy_header
            || (!self.framer.is_legacy()
                && !self.blocked()
                && (!self.input.is_empty() || self.framer.is_discarding()))
    }

    /// No further message can be answered now: replies must stay in order behind the lookup in
    /// flight, and the output must drain before more is produced.
    pub fn blocked(&self) -> bool {
        self.lookup_in_flight || self.output_full()
    }

    pub fn output_full(&self) -> bool {
        self.output.len() >= OUTPUT_LIMIT
    }

    /// Whether to read from the socket now. A blocked connection reads at most one buffer ahead;
    /// the rest waits in the kernel, which pushes back on the client through TCP.
    pub fn wants_read(&self) -> bool {
        self.unread_input
            && !self.peer_closed
            && !self.closing
            && (!self.blocked() || self.input.is_empty())
    }

    /// Nothing is left to do: the connection can be closed.
    pub fn finished(&self) -> bool {
        !self.lookup_in_flight
            && self.output.is_empty()
            && (self.closing
                || (self.peer_closed && (self.input.is_empty() || self.awaiting_proxy_header)))
    }

    /// Sends `bytes` after any output already queued, writing straight away when possible so
    /// that most replies never touch the output buffer. Returns how many bytes were written now.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.output.is_empty() {
            self.output.extend_from_slice(bytes);
            return Ok(0);
        }
        let written = write_some(&mut self.socket, bytes)?;
        self.output.extend_from_slice(&bytes[written..]);
        Ok(written)
    }

    /// Writes as much queued output as the socket takes; the rest waits for `WRITABLE`.
    /// Returns how many bytes were written.
    pub fn flush(&mut self) -> io::Result<usize> {
        if self.output.is_empty() {
            return Ok(0);
        }
        let written = write_some(&mut self.socket, &self.output)?;
        self.output_moved |= written > 0;
        if written == self.output.len() {
            self.output = Vec::new(); // give the memory back
        } else {
            self.output.drain(..written);
        }
        Ok(written)
    }

    /// Reads and drops input, at most `reads` times.
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

    /// Keeps the unframed tail of `input` after `consumed` bytes were used, freeing the buffer
    /// when nothing is left.
    pub fn keep_input(&mut self, mut input: Vec<u8>, consumed: usize) {
        if consumed >= input.len() {
            self.input = Vec::new();
        } else {
            input.drain(..consumed);
            self.input = input;
        }
    }
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
