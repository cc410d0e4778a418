//! The client's side of WebSocket framing (masked frames out, the server's frames in), for load
//! generators and tests.
//!
//! Pure like the server's side: no sockets, no clocks, no randomness. The caller chooses each
//! frame's mask and the handshake's key (RFC 6455 asks for unpredictable ones against proxies
//! that cache; on loopback, for a load generator, a cheap generator will do), and owns the
//! buffer of bytes received: [`Handshake::response`] reads the `101` at its start, then
//! [`Decoder::next`] the frames after it, one at a time.
//!
//! What a client must refuse is refused with the close code the RFC gives: masked frames from
//! the server, reserved bits, unknown opcodes, fragmented or long control frames, a
//! continuation with no message to continue or a new message inside one, a bad close payload
//! (1002); binary messages (1003: the chat is text); messages past the caller's limit (1009,
//! from the header alone). These are the server's own checks, in the same order: one header
//! parser and one set of rules read both sides' frames, which differ only in the masking. The
//! text itself is given as bytes: whether a message is UTF-8 is
//! the caller's to check once its parts are joined (the server never splits one).

use std::fmt;

use super::{close_payload, encode_frame, CloseCode, Header, MAX_CONTROL_PAYLOAD};
use super::{OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// The largest response head read while waiting for its end.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// One frame from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Text: a whole message, or a part of one (`fin` says whether the message ends here).
    Text { data: &'a [u8], fin: bool },
    /// A ping: answer with a pong carrying the same data ([`encode_pong`]).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The server closes, with its status code if it gave one, and its reason.
    Close { code: Option<u16>, reason: &'a str },
}

/// The outcome of one [`Decoder::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The frame is not whole yet: call again with more bytes.
    NeedMore,
    /// A frame of `consumed` bytes (from the start of the pending bytes) was this.
    Frame { consumed: usize, frame: Frame<'a> },
}

/// The state of the server's frames between calls: whether a fragmented text message is under
/// way, and its length so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoder {
    in_message: bool,
    message_len: u64,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Whether a fragmented message is under way (its parts are the caller's to keep).
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Decodes the server's frame at the start of `pending`, for a client that takes messages
    /// of at most `max_message` bytes. On an error, the client closes with that code.
    pub fn next<'a>(
        &mut self,
        pending: &'a [u8],
        max_message: usize,
    ) -> Result<Decoded<'a>, CloseCode> {
        let Some(header) = Header::parse(pending, false)? else {
            return Ok(Decoded::NeedMore);
        };
        header.check(self.in_message, self.message_len, max_message)?;
        let Some(payload) = pending.get(header.size..header.size + header.len as usize) else {
            return Ok(Decoded::NeedMore);
        };
        let frame = match header.opcode {
            OP_CLOSE => {
                let (code, reason) = close_payload(payload)?;
                Frame::Close { code, reason }
            }
            OP_PING => Frame::Ping(payload),
            OP_PONG => Frame::Pong(payload),
            _ => {
                let fin = header.fin;
                self.in_message = !fin;
                self.message_len = if fin {
                    0
                } else {
                    self.message_len + header.len
                };
                Frame::Text { data: payload, fin }
            }
        };
        Ok(Decoded::Frame {
            consumed: header.size + payload.len(),
            frame,
        })
    }
}

/// Appends a text message, masked with `mask`.
pub fn encode_text(out: &mut Vec<u8>, text: &str, mask: [u8; 4]) {
    encode_frame(out, OP_TEXT, text.as_bytes(), Some(mask));
}

/// Appends a pong answering a ping's `data` (at most 125 bytes, as the ping's was).
pub fn encode_pong(out: &mut Vec<u8>, data: &[u8], mask: [u8; 4]) {
    let data = &data[..data.len().min(MAX_CONTROL_PAYLOAD)];
    encode_frame(out, OP_PONG, data, Some(mask));
}

/// Appends a close frame with `code` and no reason.
pub fn encode_close(out: &mut Vec<u8>, code: u16, mask: [u8; 4]) {
    encode_frame(out, OP_CLOSE, &code.to_be_bytes(), Some(mask));
}

/// The opening handshake of one connection: its key, the request, and the check of the
/// server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// `Sec-WebSocket-Key`: 16 bytes in base64.
    key: [u8; 24],
}

/// Why the server's answer to the upgrade is not a WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// No end of the head within [`MAX_RESPONSE_HEAD`] bytes.
    TooLong,
    /// Not an HTTP/1.1 status line and headers.
    Malformed,
    /// A status other than 101 (a `503` when the server is full, a `403` for an origin, ...).
    Status(u16),
    /// A 101 without `Upgrade: websocket` and `Connection: Upgrade`.
    NotWebSocket,
    /// A `Sec-WebSocket-Accept` missing, or not the one for this key.
    WrongAccept,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::TooLong => write!(f, "the upgrade's response head is over 8 KiB"),
            HandshakeError::Malformed => write!(f, "the upgrade's response is not HTTP/1.1"),
            HandshakeError::Status(status) => {
                write!(f, "the upgrade was answered {status}, not 101")
            }
            HandshakeError::NotWebSocket => {
                write!(f, "the 101 lacks Upgrade: websocket or Connection: Upgrade")
            }
            HandshakeError::WrongAccept => {
                write!(f, "the 101's Sec-WebSocket-Accept is not the key's")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

impl Handshake {
    /// A handshake with `key` (the RFC asks for 16 random bytes).
    pub fn new(key: [u8; 16]) -> Handshake {
        use base64::Engine as _;
        let mut encoded = [0u8; 24];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(key, &mut encoded)
            .expect("16 bytes are 24 in base64");
        debug_assert_eq!(written, encoded.len());
        Handshake { key: encoded }
    }

    /// The key as sent: base64.
    pub fn key(&self) -> &str {
        std::str::from_utf8(&self.key).expect("base64 is ASCII")
    }

    /// The upgrade request for `path` on `host` (the `Host` header: such as `127.0.0.1:8080`),
    /// with no `Origin` (as a program, not a page, sends it).
    pub fn request(&self, host: &str, path: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.key()
        )
        .into_bytes()
    }

    /// Reads the server's answer at the start of `received`: `None` while its head is not all
    /// there, then the head's length (the frames start after it) if it accepted the upgrade.
    /// Its `Sec-WebSocket-Accept` must be the key's.
    pub fn response(&self, received: &[u8]) -> Result<Option<usize>, HandshakeError> {
        // Not waiting for the end of something that is not HTTP (a line server's greeting).
        let start = &received[..received.len().min(5)];
        if !b"HTTP/".starts_with(start) {
            return Err(HandshakeError::Malformed);
        }
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            return match received.len() {
                n if n >= MAX_RESPONSE_HEAD => Err(HandshakeError::TooLong),
                _ => Ok(None),
            };
        };
        if end + 4 > MAX_RESPONSE_HEAD {
            return Err(HandshakeError::TooLong);
        }
        let head = std::str::from_utf8(&received[..end]).map_err(|_| HandshakeError::Malformed)?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.strip_prefix("HTTP/1.1 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or(HandshakeError::Malformed)?;
        if status != 101 {
            return Err(HandshakeError::Status(status));
        }
        let (mut upgrade, mut connection, mut accept) = (false, false, None);
        for line in lines {
            let (name, value) = line.split_once(':').ok_or(HandshakeError::Malformed)?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("upgrade") {
                upgrade = value.eq_ignore_ascii_case("websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection = value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
            } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept = Some(value);
            }
        }
        if !(upgrade && connection) {
            return Err(HandshakeError::NotWebSocket);
        }
        match accept {
            Some(accept) if accept == crate::web::accept_key(self.key()) => Ok(Some(end + 4)),
            _ => Err(HandshakeError::WrongAccept),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::Event;

    const MAX: usize = 1000;

    /// A server's frame (unmasked) with the first byte `first` (FIN, reserved bits, opcode).
    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, first & 0x0F, payload, None);
        out[0] = first;
        out
    }

    /// What a decoder makes of `bytes` fed one at a time: whole messages (parts joined) and
    /// other frames by name, and the close code if it refuses.
    fn decode_bytewise(bytes: &[u8]) -> (Vec<String>, Option<CloseCode>) {
        let mut decoder = Decoder::new();
        let mut pending = Vec::new();
        let mut message = Vec::new();
        let mut out = Vec::new();
        for &byte in bytes {
            pending.push(byte);
            loop {
                match decoder.next(&pending, MAX) {
                    Err(code) => return (out, Some(code)),
                    Ok(Decoded::NeedMore) => break,
                    Ok(Decoded::Frame { consumed, frame }) => {
                        match frame {
                            Frame::Text { data, fin } => {
                                message.extend_from_slice(data);
                                if fin {
                                    let text = std::mem::take(&mut message);
                                    out.push(String::from_utf8(text).expect("UTF-8"));
                                }
                            }
                            Frame::Ping(data) => {
                                out.push(format!("ping {}", String::from_utf8_lossy(data)))
                            }
                            Frame::Pong(data) => {
                                out.push(format!("pong {}", String::from_utf8_lossy(data)))
                            }
                            Frame::Close { code, reason } => {
                                out.push(format!("close {code:?} {reason}"))
                            }
                        }
                        pending.drain(..consumed);
                    }
                }
            }
        }
        assert!(pending.is_empty(), "bytes left over: {pending:02x?}");
        (out, None)
    }

    #[test]
    fn the_servers_frames_decode_byte_by_byte() {
        let mut bytes = Vec::new();
        super::super::encode_text(&mut bytes, "你好，欢迎来到机器人聊天器！");
        super::super::encode_text(&mut bytes, &"m".repeat(300));
        super::super::encode_pong(&mut bytes, b"p");
        super::super::encode_close(&mut bytes, 1001, "");
        let (events, refused) = decode_bytewise(&bytes);
        assert_eq!(refused, None);
        assert_eq!(
            events,
            [
                "你好，欢迎来到机器人聊天器！".to_owned(),
                "m".repeat(300),
                "pong p".into(),
                "close Some(1001) ".into()
            ]
        );
    }

    #[test]
    fn fragments_pings_and_64_bit_lengths() {
        let mut bytes = server_frame(0x01, b"ERR ");
        bytes.extend(server_frame(0x89, b"there?"));
        bytes.extend(server_frame(0x00, b"too "));
        bytes.extend(server_frame(0x80, b"long"));
        bytes.extend(server_frame(0x88, b""));
        let mut long = vec![0x81, 127];
        long.extend_from_slice(&2u64.to_be_bytes());
        long.extend_from_slice(b"ok");
        bytes.extend(long);
        assert_eq!(
            decode_bytewise(&bytes),
            (
                vec![
                    "ping there?".into(),
                    "ERR too long".into(),
                    "close None ".into(),
                    "ok".into()
                ],
                None
            )
        );
    }

    #[test]
    fn what_a_client_refuses() {
        let masked = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        let reserved = server_frame(0x81 | 0x20, b"hi");
        let unknown = server_frame(0x83, b"");
        let fragmented_ping = server_frame(0x09, b"");
        let long_ping = server_frame(0x89, &[b'x'; 126]);
        let stray_continuation = server_frame(0x80, b"x");
        let mut text_inside_text = server_frame(0x01, b"a");
        text_inside_text.extend(server_frame(0x81, b"b"));
        let mut binary_inside_text = server_frame(0x01, b"a");
        binary_inside_text.extend(server_frame(0x82, b"b"));
        let bad_close = server_frame(0x88, &1005u16.to_be_bytes());
        let mut top_bit_length = vec![0x81, 127];
        top_bit_length.extend_from_slice(&(1u64 << 63).to_be_bytes());
        for bytes in [
            &masked[..],
            &reserved,
            &unknown,
            &fragmented_ping,
            &long_ping,
            &stray_continuation,
            &text_inside_text,
            &binary_inside_text,
            &bad_close,
            &top_bit_length,
        ] {
            assert_eq!(
                decode_bytewise(bytes).1,
                Some(CloseCode::Protocol),
                "{bytes:02x?}"
            );
        }
        assert_eq!(
            decode_bytewise(&server_frame(0x82, b"\0")).1,
            Some(CloseCode::Unsupported)
        );
        // Too long: refused from the header alone, the payload never waited for.
        let mut header = vec![0x81, 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(decode_bytewise(&header).1, Some(CloseCode::TooBig));
        let mut parts = server_frame(0x01, &[b'x'; 600]);
        parts.extend(server_frame(0x80, &[b'x'; 600]));
        assert_eq!(decode_bytewise(&parts).1, Some(CloseCode::TooBig));
        let (events, refused) = decode_bytewise(&server_frame(0x81, &[b'x'; MAX]));
        assert_eq!((events.len(), refused), (1, None));
    }

    /// What the server's decoder makes of a client's bytes.
    fn as_server_reads(mut bytes: Vec<u8>) -> Vec<String> {
        let mut decoder = super::super::Decoder::new();
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let Ok(super::super::Decoded::Frame { consumed, event }) =
                decoder.next(&mut bytes, MAX)
            else {
                panic!("the server refused {bytes:02x?}");
            };
            out.push(format!("{event:?}"));
            bytes.drain(..consumed);
        }
        out
    }

    #[test]
    fn masked_frames_are_what_the_server_reads() {
        // RFC 6455 5.7: a masked "Hello".
        let mut out = Vec::new();
        encode_text(&mut out, "Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        out.clear();
        encode_text(&mut out, "bench::hello", [9, 8, 7, 6]);
        encode_text(&mut out, &"x".repeat(200), [0, 0, 0, 1]);
        encode_pong(&mut out, b"are you there", [1, 1, 1, 1]);
        encode_close(&mut out, 1000, [0xff; 4]);
        let read = as_server_reads(out);
        let text = |data: &[u8]| format!("{:?}", Event::Text { data, fin: true });
        assert_eq!(read[0], text(b"bench::hello"));
        assert_eq!(read[1], text(&[b'x'; 200]));
        assert_eq!(read[2], format!("{:?}", Event::Pong));
        let close = Event::Close {
            code: Some(1000),
            reason: "",
        };
        assert_eq!(read[3], format!("{close:?}"));
        assert_eq!(read.len(), 4);
    }

    #[test]
    fn the_request_and_its_key() {
        // RFC 6455 1.3: the key of the sample nonce.
        let nonce = *b"the sample nonce";
        let handshake = Handshake::new(nonce);
        assert_eq!(handshake.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        let request = String::from_utf8(handshake.request("127.0.0.1:8080", "/ws")).unwrap();
        assert!(request.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        for header in [
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Version: 13\r\n",
        ] {
            assert!(request.contains(header), "{header} in {request}");
        }
        assert!(request.ends_with("\r\n\r\n"));
    }

    /// The RFC's sample 101, as the server writes it.
    const ACCEPTED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[test]
    fn the_101_is_read_byte_by_byte_and_the_frames_follow_it() {
        let handshake = Handshake::new(*b"the sample nonce");
        let mut received = ACCEPTED.to_vec();
        super::super::encode_text(&mut received, "hi");
        for end in 0..ACCEPTED.len() {
            assert_eq!(handshake.response(&received[..end]), Ok(None), "{end}");
        }
        assert_eq!(handshake.response(&received), Ok(Some(ACCEPTED.len())));
        let rest = &received[ACCEPTED.len()..];
        assert!(matches!(
            Decoder::new().next(rest, MAX),
            Ok(Decoded::Frame {
                frame: Frame::Text {
                    data: b"hi",
                    fin: true
                },
                ..
            })
        ));
        // Header names and the Connection tokens in any case, other headers ignored.
        let relaxed = b"HTTP/1.1 101 OK\r\nconnection: keep-alive, upgrade\r\nX-A: b\r\n\
            UPGRADE: WebSocket\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(handshake.response(relaxed), Ok(Some(relaxed.len())));
    }

    #[test]
    fn answers_that_are_not_an_upgrade() {
        let handshake = Handshake::new(*b"the sample nonce");
        let full = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nfull\n";
        assert_eq!(handshake.response(full), Err(HandshakeError::Status(503)));
        let no_upgrade = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(
            handshake.response(no_upgrade),
            Err(HandshakeError::NotWebSocket)
        );
        let no_accept =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(
            handshake.response(no_accept),
            Err(HandshakeError::WrongAccept)
        );
        let greeting = "你好，欢迎来到机器人聊天器！\n".as_bytes();
        for malformed in [
            greeting,
            b"HTTP/1.1 101\r\nno colon\r\n\r\n",
            b"HTTP/2 101\r\n\r\n",
        ] {
            assert_eq!(
                handshake.response(malformed),
                Err(HandshakeError::Malformed)
            );
        }
        let mut endless = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
        endless.resize(MAX_RESPONSE_HEAD, b'x');
        assert_eq!(handshake.response(&endless), Err(HandshakeError::TooLong));
    }

    #[test]
    fn another_keys_accept_is_refused() {
        let other = Handshake::new([7; 16]);
        assert_eq!(other.response(ACCEPTED), Err(HandshakeError::WrongAccept));
    }
}
