//! The wire protocol: framing incoming bytes into messages, and encoding reply lines.
//!
//! Everything here is pure: no sockets, no clocks, no allocation on the framing path. The
//! [`Framer`] is fed the bytes a connection has received and not yet consumed; it says how many of
//! them it consumed and which [`Frame`] (if any) they made. The caller owns the buffer, which keeps
//! buffering (and its memory limits) apart from framing.
//!
//! A message is one line `USERNAME::TEXT`, ended by `\n` or `\r\n`. For the tutorial's client,
//! which sends `USERNAME::TEXT` with no newline and waits for the answer, a connection can instead
//! be *legacy-framed*: each burst of bytes (everything read until the socket has no more) is one
//! message. See [`Framing`].

use std::fmt;

/// The longest username accepted, in bytes.
pub const MAX_USERNAME: usize = 64;

/// The largest first burst that automatic framing takes for a tutorial-style message: the
/// tutorial's server read messages with `recv(1024)`, so its clients' messages fit in that. A
/// longer first line without a newline is more likely a line client's line cut by TCP.
pub const LEGACY_BURST_MAX: usize = 1024;

/// How a connection's byte stream is cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Lines, unless the connection's first message arrives without a newline (and contains
    /// `::`) and then the client stops sending: such a connection is served like the tutorial's
    /// server did, one message per burst.
    #[default]
    Auto,
    /// Lines only.
    Line,
    /// Every burst of bytes is one message (the tutorial's framing, for every connection).
    Legacy,
}

impl std::str::FromStr for Framing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Framing::Auto),
            "line" => Ok(Framing::Line),
            "legacy" => Ok(Framing::Legacy),
            other => Err(format!(
                "unknown framing '{other}': expected auto, line or legacy"
            )),
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framing::Auto => "auto",
            Framing::Line => "line",
            Framing::Legacy => "legacy",
        })
    }
}

/// One thing a client said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message for the robot.
    Message {
        /// What came before the first `::`.
        user: &'a str,
        /// Everything after the first `::`.
        text: &'a str,
    },
    /// The text was `exit`: say goodbye and close.
    Exit,
    /// A blank line or a message with empty text: nothing to answer.
    Blank,
    /// Something that is not a message; it is answered with an `ERR ` line.
    Invalid(FrameError),
}

/// Why some bytes were not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// No `::` in the line.
    MissingSeparator,
    /// Nothing before the `::`.
    EmptyUsername,
    /// More than [`MAX_USERNAME`] bytes before the `::`.
    UsernameTooLong,
    /// The line is not UTF-8.
    InvalidUtf8,
    /// The line is longer than the limit; the rest of it is being discarded.
    LineTooLong {
        /// The limit, in bytes.
        max_line: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::MissingSeparator => {
                f.write_str("expected USERNAME::TEXT (a name, two colons, then your message)")
            }
            FrameError::EmptyUsername => {
                f.write_str("the username before '::' is empty; expected USERNAME::TEXT")
            }
            FrameError::UsernameTooLong => write!(
                f,
                "the username is longer than {MAX_USERNAME} bytes; expected USERNAME::TEXT"
            ),
            FrameError::InvalidUtf8 => {
                f.write_str("the message is not valid UTF-8; send text encoded as UTF-8")
            }
            FrameError::LineTooLong { max_line } => write!(
                f,
                "the line is longer than {max_line} bytes and was discarded; send shorter messages"
            ),
        }
    }
}

/// What one call to [`Framer::decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// How many bytes at the front of the buffer were used up; the caller drops them.
    pub consumed: usize,
    /// The frame those bytes made, if any. Discarded bytes of an over-long line make none.
    pub frame: Option<Frame<'a>>,
}

impl Decoded<'_> {
    /// Nothing can be done until more bytes arrive.
    pub fn needs_more(&self) -> bool {
        self.consumed == 0 && self.frame.is_none()
    }

    const NEED_MORE: Decoded<'static> = Decoded {
        consumed: 0,
        frame: None,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `Framing::Auto` before the first complete line or burst decided it.
    Undecided,
    Line,
    /// `Framing::Legacy`: one message per burst, always.
    Legacy,
    /// `Framing::Auto` took this for the tutorial's client: one message per burst, until a
    /// newline shows it is a line client after all.
    DetectedLegacy,
    /// A connection of the web listener: an HTTP request, then WebSocket frames, each text
    /// message one message (see [`websocket`](crate::websocket)). Kept here so that a
    /// connection needs no other mark of what it speaks.
    WebSocket,
}

/// The incremental message framer of one connection.
///
/// The caller keeps the bytes received but not yet consumed, and passes them all to
/// [`decode`](Framer::decode) each time (the same bytes first, new ones appended). It must drop
/// `consumed` bytes from the front after each call. When a read drains the socket, it calls
/// [`end_of_burst`](Framer::end_of_burst); when the peer closes, [`end_of_stream`](Framer::end_of_stream).
///
/// The framer never asks the caller to keep more than `max_line + 1` bytes of an unfinished line:
/// past that it reports [`FrameError::LineTooLong`] once and consumes the rest of that line as it
/// arrives.
#[derive(Debug, Clone)]
pub struct Framer {
    mode: Mode,
    max_line: u32,
    /// How many leading bytes of the pending buffer are known to hold no newline, so that a line
    /// arriving byte by byte is scanned once, not once per byte.
    scanned: u32,
    /// Inside an over-long line: consume everything up to the end of the line (or burst).
    discarding: bool,
}

impl Framer {
    /// A framer for a new connection. `max_line` is capped at 64 MiB.
    pub fn new(framing: Framing, max_line: usize) -> Self {
        let mode = match framing {
            Framing::Auto => Mode::Undecided,
            Framing::Line => Mode::Line,
            Framing::Legacy => Mode::Legacy,
        };
        Framer {
            mode,
            max_line: max_line.min(64 << 20) as u32,
            scanned: 0,
            discarding: false,
        }
    }

    /// A framer for a connection of the web listener, whose messages come in WebSocket frames
    /// that the caller decodes; `max_line` is the largest message. It frames no lines:
    /// [`decode`](Framer::decode) must not be given its bytes.
    pub fn websocket(max_line: usize) -> Self {
        Framer {
            mode: Mode::WebSocket,
            ..Framer::new(Framing::Line, max_line)
        }
    }

    /// Whether this is a web listener's connection ([`Framer::websocket`]).
    pub fn is_websocket(&self) -> bool {
        self.mode == Mode::WebSocket
    }

    /// The largest message, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line as usize
    }

    /// Whether the framer is inside a line too long to keep, discarding it as it arrives.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Whether this connection is being served one message per burst.
    pub fn is_legacy(&self) -> bool {
        matches!(self.mode, Mode::Legacy | Mode::DetectedLegacy)
    }

    /// Finds the next frame at the front of `pending`, the bytes received and not yet consumed.
    pub fn decode<'a>(&mut self, pending: &'a [u8]) -> Decoded<'a> {
        if self.mode == Mode::Legacy {
            // Nothing is whole before the burst ends; only the size limit applies.
            return self.check_unfinished(pending);
        }
        let start = (self.scanned as usize).min(pending.len());
        match memchr_newline(&pending[start..]) {
            Some(offset) => {
                let end = start + offset;
                self.scanned = 0;
                // A newline settles it, even on a connection first taken for the tutorial's
                // client (whose messages never hold one): this is a line client.
                self.mode = Mode::Line;
                let frame = if self.discarding {
                    self.discarding = false;
                    None
                } else {
                    Some(self.line_frame(&pending[..end]))
                };
                Decoded {
                    consumed: end + 1,
                    frame,
                }
            }
            None => {
                self.scanned = pending.len() as u32;
                self.check_unfinished(pending)
            }
        }
    }

    /// The next frame at the front of `pending`, as a connection drives the framer: first
    /// [`decode`](Framer::decode); if that needs more bytes and `*burst_ended` (the last read
    /// drained the socket), [`end_of_burst`](Framer::end_of_burst), which clears the flag; if
    /// still more is needed and `stream_ended` (the peer closed its side),
    /// [`end_of_stream`](Framer::end_of_stream). Every user of the framer drives it through this
    /// one method, so they all see the same frames.
    pub fn next<'a>(
        &mut self,
        pending: &'a [u8],
        burst_ended: &mut bool,
        stream_ended: bool,
    ) -> Decoded<'a> {
        let mut decoded = self.decode(pending);
        if decoded.needs_more() && std::mem::take(burst_ended) {
            decoded = self.end_of_burst(pending);
        }
        if decoded.needs_more() && stream_ended {
            decoded = self.end_of_stream(pending);
        }
        decoded
    }

    /// The socket has no more bytes for now. In legacy framing the pending bytes are one
    /// message; with [`Framing::Auto`], a first message (of at most [`LEGACY_BURST_MAX`] bytes,
    /// with `::`) that arrived without a newline makes this a legacy connection. Call only after
    /// [`decode`](Framer::decode) needs more.
    pub fn end_of_burst<'a>(&mut self, pending: &'a [u8]) -> Decoded<'a> {
        if self.mode == Mode::Undecided
            && !self.discarding
            && pending.len() <= LEGACY_BURST_MAX
            && find_separator(pending).is_some()
            && memchr_newline(pending).is_none()
        {
            self.mode = Mode::DetectedLegacy;
        }
        if self.is_legacy() {
            self.take_burst(pending)
        } else {
            Decoded::NEED_MORE
        }
    }

    /// The peer closed its side: whatever is pending is its last message, ended or not.
    pub fn end_of_stream<'a>(&mut self, pending: &'a [u8]) -> Decoded<'a> {
        if self.is_legacy() {
            return self.take_burst(pending);
        }
        if pending.is_empty() {
            return Decoded::NEED_MORE;
        }
        self.scanned = 0;
        let frame = if std::mem::take(&mut self.discarding) {
            None
        } else {
            Some(self.line_frame(pending))
        };
        Decoded {
            consumed: pending.len(),
            frame,
        }
    }

    fn take_burst<'a>(&mut self, pending: &'a [u8]) -> Decoded<'a> {
        // The burst is over, so is any over-long message in it.
        let was_discarding = std::mem::take(&mut self.discarding);
        if pending.is_empty() {
            return Decoded::NEED_MORE;
        }
        self.scanned = 0;
        let frame = if was_discarding {
            None
        } else {
            let burst = pending.strip_suffix(b"\n").unwrap_or(pending);
            Some(self.line_frame(burst))
        };
        Decoded {
            consumed: pending.len(),
            frame,
        }
    }

    /// An unfinished line or burst: consume it if it is being discarded or has grown too long.
    fn check_unfinished<'a>(&mut self, pending: &'a [u8]) -> Decoded<'a> {
        if self.discarding {
            self.scanned = 0;
            return Decoded {
                consumed: pending.len(),
                frame: None,
            };
        }
        // A trailing `\r` may be the first half of a `\r\n` ending, not part of the line.
        let content = pending.strip_suffix(b"\r").unwrap_or(pending);
        if content.len() > self.max_line as usize {
            self.discarding = true;
            self.scanned = 0;
            return Decoded {
                consumed: pending.len(),
                frame: Some(Frame::Invalid(FrameError::LineTooLong {
                    max_line: self.max_line as usize,
                })),
            };
        }
        Decoded::NEED_MORE
    }

    /// Parses one line (without its `\n`) into a frame.
    fn line_frame<'a>(&self, line: &'a [u8]) -> Frame<'a> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line as usize {
            return Frame::Invalid(FrameError::LineTooLong {
                max_line: self.max_line as usize,
            });
        }
        parse_message(line)
    }
}

/// Parses the content of one line (no line ending) as `USERNAME::TEXT`.
pub fn parse_message(line: &[u8]) -> Frame<'_> {
    if line.is_empty() {
        return Frame::Blank;
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Frame::Invalid(FrameError::InvalidUtf8);
    };
    let Some(at) = find_separator(line.as_bytes()) else {
        return Frame::Invalid(FrameError::MissingSeparator);
    };
    let (user, text) = (&line[..at], &line[at + 2..]);
    if user.is_empty() {
        Frame::Invalid(FrameError::EmptyUsername)
    } else if user.len() > MAX_USERNAME {
        Frame::Invalid(FrameError::UsernameTooLong)
    } else if text.is_empty() {
        Frame::Blank
    } else if text.trim() == "exit" {
        Frame::Exit
    } else {
        Frame::Message { user, text }
    }
}

/// One message as a client sends it: `USERNAME::TEXT`, ended by a newline when `newline` (line
/// framing), or not (the tutorial's framing).
pub fn encode_message(user: &str, text: &str, newline: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(user.len() + text.len() + 3);
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(b"::");
    out.extend_from_slice(text.as_bytes());
    if newline {
        out.push(b'\n');
    }
    out
}

/// Why a name cannot be a client's username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameError {
    /// Empty, or longer than [`MAX_USERNAME`] bytes.
    Length,
    /// It holds `::` or a line break, which would end it early or split the message.
    Separator,
}

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsernameError::Length => write!(f, "must be 1 to {MAX_USERNAME} bytes long"),
            UsernameError::Separator => f.write_str("must not contain '::' or line breaks"),
        }
    }
}

/// Checks a name a client means to send as its username: one the server will take as it is.
pub fn check_username(user: &str) -> Result<(), UsernameError> {
    if user.is_empty() || user.len() > MAX_USERNAME {
        return Err(UsernameError::Length);
    }
    if user.contains("::") || user.contains(['\n', '\r']) {
        return Err(UsernameError::Separator);
    }
    Ok(())
}

/// Appends `text` to `out` as one reply line: newlines inside it become spaces.
pub fn encode_line(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 1);
    let mut rest = text.as_bytes();
    while let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        out.extend_from_slice(&rest[..at]);
        out.push(b' ');
        // A `\r\n` pair is one line break, so it becomes one space.
        let skip = if rest[at..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[at + skip..];
    }
    out.extend_from_slice(rest);
    out.push(b'\n');
}

/// What every error line starts with; the rest of the line says what to do about it.
pub const ERROR_PREFIX: &str = "ERR ";

/// Appends an error line ([`ERROR_PREFIX`] and the reason) to `out`.
pub fn encode_error(out: &mut Vec<u8>, reason: &dyn fmt::Display) {
    encode_line(out, &format!("{ERROR_PREFIX}{reason}"));
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn find_separator(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"::")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a framer makes of a whole stream, owned so tests can compare.
    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Msg(String, String),
        Exit,
        Blank,
        Err(FrameError),
    }

    fn own(frame: Frame<'_>) -> Out {
        match frame {
            Frame::Message { user, text } => Out::Msg(user.into(), text.into()),
            Frame::Exit => Out::Exit,
            Frame::Blank => Out::Blank,
            Frame::Invalid(e) => Out::Err(e),
        }
    }

    fn msg(user: &str, text: &str) -> Out {
        Out::Msg(user.into(), text.into())
    }

    /// A connection's input side in miniature: a pending buffer fed by reads, drained by the
    /// framer. Returns the frames and the largest the pending buffer ever grew.
    struct Harness {
        framer: Framer,
        pending: Vec<u8>,
        out: Vec<Out>,
        peak: usize,
    }

    impl Harness {
        fn new(framing: Framing, max_line: usize) -> Self {
            Harness {
                framer: Framer::new(framing, max_line),
                pending: Vec::new(),
                out: Vec::new(),
                peak: 0,
            }
        }

        fn drain(&mut self, step: Step) {
            let mut burst_ended = matches!(step, Step::BurstEnds);
            let stream_ended = matches!(step, Step::StreamEnds);
            loop {
                let decoded = self
                    .framer
                    .next(&self.pending, &mut burst_ended, stream_ended);
                let (consumed, done) = (decoded.consumed, decoded.needs_more());
                if let Some(frame) = decoded.frame {
                    self.out.push(own(frame));
                }
                self.pending.drain(..consumed);
                if done {
                    break;
                }
            }
        }

        fn read(&mut self, bytes: &[u8]) {
            self.pending.extend_from_slice(bytes);
            self.peak = self.peak.max(self.pending.len());
            self.drain(Step::Read);
        }

        fn burst_ends(&mut self) {
            self.drain(Step::BurstEnds);
        }

        fn stream_ends(&mut self) {
            self.drain(Step::StreamEnds);
        }
    }

    #[derive(Clone, Copy)]
    enum Step {
        Read,
        BurstEnds,
        StreamEnds,
    }

    fn frames_of(framing: Framing, reads: &[&[u8]]) -> Vec<Out> {
        let mut h = Harness::new(framing, 4096);
        for r in reads {
            h.read(r);
        }
        h.out
    }

    #[test]
    fn messages_are_encoded_as_clients_send_them() {
        assert_eq!(
            encode_message("小明", "你好", false),
            "小明::你好".as_bytes()
        );
        assert_eq!(encode_message("bob", "hi", true), b"bob::hi\n");
        let line = encode_message("bob", "a::b", true);
        let mut framer = Framer::new(Framing::Line, 4096);
        let frame = framer.next(&line, &mut false, false).frame;
        assert_eq!(
            frame,
            Some(Frame::Message {
                user: "bob",
                text: "a::b"
            })
        );
    }

    #[test]
    fn usernames_are_checked_as_the_framer_reads_them() {
        assert_eq!(check_username("bob"), Ok(()));
        assert_eq!(check_username(&"x".repeat(MAX_USERNAME)), Ok(()));
        assert_eq!(check_username(""), Err(UsernameError::Length));
        assert_eq!(
            check_username(&"x".repeat(MAX_USERNAME + 1)),
            Err(UsernameError::Length)
        );
        assert_eq!(check_username("a::b"), Err(UsernameError::Separator));
        assert_eq!(check_username("a\nb"), Err(UsernameError::Separator));
    }

    #[test]
    fn one_line_one_message() {
        assert_eq!(
            frames_of(Framing::Line, &[b"bob::hello\n"]),
            vec![msg("bob", "hello")]
        );
    }

    #[test]
    fn crlf_endings_are_stripped() {
        assert_eq!(
            frames_of(Framing::Line, &[b"bob::hello\r\nann::hi\r\n"]),
            vec![msg("bob", "hello"), msg("ann", "hi")]
        );
    }

    #[test]
    fn many_messages_in_one_read_come_out_in_order() {
        let input: Vec<u8> = (0..100)
            .flat_map(|i| format!("u{i}::m{i}\n").into_bytes())
            .collect();
        let expected: Vec<Out> = (0..100)
            .map(|i| msg(&format!("u{i}"), &format!("m{i}")))
            .collect();
        assert_eq!(frames_of(Framing::Line, &[&input]), expected);
    }

    #[test]
    fn split_at_every_byte_gives_the_same_messages() {
        let input = "小明::你好\r\nbob::what is 3*4\nann::a::b\n".as_bytes();
        let expected = vec![
            msg("小明", "你好"),
            msg("bob", "what is 3*4"),
            msg("ann", "a::b"),
        ];
        let byte_reads: Vec<&[u8]> = input.chunks(1).collect();
        for framing in [Framing::Line, Framing::Auto] {
            assert_eq!(frames_of(framing, &byte_reads), expected, "{framing}");
        }
        for cut in 0..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(frames_of(Framing::Line, &[a, b]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn utf8_split_across_reads_is_reassembled() {
        let input = "用户::中文消息\n".as_bytes();
        for cut in 1..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(
                frames_of(Framing::Line, &[a, b]),
                vec![msg("用户", "中文消息")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn text_is_everything_after_the_first_separator() {
        assert_eq!(
            frames_of(Framing::Line, &[b"a::b::c\n"]),
            vec![msg("a", "b::c")]
        );
    }

    #[test]
    fn blank_lines_and_empty_text_are_blank() {
        assert_eq!(
            frames_of(Framing::Line, &[b"\n\r\nbob::\n"]),
            vec![Out::Blank, Out::Blank, Out::Blank]
        );
    }

    #[test]
    fn exit_is_recognised() {
        assert_eq!(
            frames_of(Framing::Line, &[b"bob::exit\r\n"]),
            vec![Out::Exit]
        );
    }

    #[test]
    fn malformed_lines_are_errors() {
        let long_user = format!("{}::hi\n", "u".repeat(MAX_USERNAME + 1));
        let max_user = format!("{}::hi\n", "u".repeat(MAX_USERNAME));
        let frames = frames_of(
            Framing::Line,
            &[
                b"no separator\n",
                b"::no user\n",
                long_user.as_bytes(),
                max_user.as_bytes(),
                b"bob::\xff\xfe\n",
            ],
        );
        assert_eq!(
            frames,
            vec![
                Out::Err(FrameError::MissingSeparator),
                Out::Err(FrameError::EmptyUsername),
                Out::Err(FrameError::UsernameTooLong),
                msg(&"u".repeat(MAX_USERNAME), "hi"),
                Out::Err(FrameError::InvalidUtf8),
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_accepted() {
        let mut h = Harness::new(Framing::Line, 16);
        let line = b"bob::0123456789A"; // 16 bytes
        h.read(line);
        h.read(b"\r");
        h.read(b"\n");
        assert_eq!(h.out, vec![msg("bob", "0123456789A")]);
    }

    #[test]
    fn an_over_long_line_is_one_error_and_is_never_buffered() {
        let mut h = Harness::new(Framing::Line, 64);
        h.read(b"bob::");
        for _ in 0..10_000 {
            h.read(&[b'x'; 100]);
        }
        h.read(b"still the same line\nbob::next\n");
        assert_eq!(
            h.out,
            vec![
                Out::Err(FrameError::LineTooLong { max_line: 64 }),
                msg("bob", "next")
            ]
        );
        assert!(h.peak <= 64 + 100, "pending grew to {}", h.peak);
    }

    #[test]
    fn an_over_long_line_in_one_read_is_an_error() {
        let line = format!("bob::{}\nbob::ok\n", "x".repeat(100));
        assert_eq!(
            frames_of_limited(Framing::Line, 64, &[line.as_bytes()]),
            vec![
                Out::Err(FrameError::LineTooLong { max_line: 64 }),
                msg("bob", "ok")
            ]
        );
    }

    fn frames_of_limited(framing: Framing, max_line: usize, reads: &[&[u8]]) -> Vec<Out> {
        let mut h = Harness::new(framing, max_line);
        for r in reads {
            h.read(r);
        }
        h.out
    }

    #[test]
    fn auto_framing_serves_a_tutorial_client_one_message_per_burst() {
        let mut h = Harness::new(Framing::Auto, 4096);
        h.read("小明::你好".as_bytes());
        assert!(h.out.is_empty());
        h.burst_ends();
        assert_eq!(h.out, vec![msg("小明", "你好")]);
        assert!(h.framer.is_legacy());
        // From now on each burst is a message, cut by TCP or not.
        h.read("小明::今天".as_bytes());
        h.read("天气怎么样".as_bytes());
        h.burst_ends();
        h.read("小明::exit".as_bytes());
        h.burst_ends();
        assert_eq!(
            h.out,
            vec![
                msg("小明", "你好"),
                msg("小明", "今天天气怎么样"),
                Out::Exit
            ]
        );
    }

    #[test]
    fn auto_framing_returns_to_lines_when_a_newline_shows_up() {
        // A line client whose first line happened to arrive in two bursts.
        let mut h = Harness::new(Framing::Auto, 4096);
        h.read(b"bob::part");
        h.burst_ends();
        h.read(b"bob::second\nbob::th");
        h.burst_ends();
        h.read(b"ird\n");
        assert_eq!(
            h.out,
            vec![
                msg("bob", "part"),
                msg("bob", "second"),
                msg("bob", "third")
            ]
        );
        assert!(!h.framer.is_legacy());
    }

    #[test]
    fn auto_framing_takes_a_long_first_burst_for_part_of_a_line() {
        let mut h = Harness::new(Framing::Auto, 4096);
        let long = format!("bob::{}", "x".repeat(LEGACY_BURST_MAX));
        h.read(long.as_bytes());
        h.burst_ends();
        assert!(h.out.is_empty() && !h.framer.is_legacy());
        h.read(b"yz\n");
        assert_eq!(
            h.out,
            vec![msg("bob", &format!("{}yz", "x".repeat(LEGACY_BURST_MAX)))]
        );
    }

    #[test]
    fn auto_framing_stays_line_framed_after_a_complete_line() {
        let mut h = Harness::new(Framing::Auto, 4096);
        h.read(b"bob::one\nbob::tw");
        h.burst_ends();
        assert_eq!(h.out, vec![msg("bob", "one")]);
        h.read(b"o\n");
        assert_eq!(h.out, vec![msg("bob", "one"), msg("bob", "two")]);
        assert!(!h.framer.is_legacy());
    }

    #[test]
    fn auto_framing_waits_for_a_separator_before_choosing_legacy() {
        let mut h = Harness::new(Framing::Auto, 4096);
        h.read(b"bo");
        h.burst_ends();
        assert!(h.out.is_empty());
        h.read(b"b::hi\n");
        assert_eq!(h.out, vec![msg("bob", "hi")]);
        assert!(!h.framer.is_legacy());
    }

    #[test]
    fn line_framing_never_chooses_legacy() {
        let mut h = Harness::new(Framing::Line, 4096);
        h.read(b"bob::hi");
        h.burst_ends();
        assert!(h.out.is_empty());
        h.read(b"\n");
        assert_eq!(h.out, vec![msg("bob", "hi")]);
    }

    #[test]
    fn legacy_framing_limits_a_burst_and_recovers_at_the_next() {
        let mut h = Harness::new(Framing::Legacy, 8);
        h.read(b"bob::0123456789");
        h.read(b"more");
        h.burst_ends();
        h.read(b"bob::ok");
        h.burst_ends();
        assert_eq!(
            h.out,
            vec![
                Out::Err(FrameError::LineTooLong { max_line: 8 }),
                msg("bob", "ok")
            ]
        );
        assert!(h.peak <= 15);
    }

    #[test]
    fn end_of_stream_delivers_an_unfinished_last_line() {
        let mut h = Harness::new(Framing::Line, 4096);
        h.read(b"bob::one\nbob::two");
        h.stream_ends();
        assert_eq!(h.out, vec![msg("bob", "one"), msg("bob", "two")]);
    }

    #[test]
    fn reply_lines_never_contain_newlines() {
        let mut out = Vec::new();
        encode_line(&mut out, "a\nb\r\nc\rd");
        assert_eq!(out, b"a b c d\n");
        out.clear();
        encode_error(&mut out, &FrameError::InvalidUtf8);
        assert!(out.starts_with(b"ERR "));
        assert!(out.ends_with(b"\n"));
    }

    #[test]
    fn framing_names_parse() {
        assert_eq!("legacy".parse::<Framing>(), Ok(Framing::Legacy));
        assert!("lines".parse::<Framing>().is_err());
    }
}
