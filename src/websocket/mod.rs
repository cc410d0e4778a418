//! WebSocket framing (RFC 6455), server side: decoding a client's frames and encoding the
//! server's.
//!
//! Pure like [`protocol`](crate::protocol): no sockets, no clocks, and the caller owns the
//! buffer. [`Decoder::next`] is given the bytes received and not yet consumed; it says how many
//! it consumed and what they were ([`Event`]), or that it needs more, or why the connection must
//! be closed ([`CloseCode`]). A frame is decoded once it is whole, so the caller holds at most
//! one frame: at most the largest message (`max_message`) and a header, since a data frame that
//! would make its message larger is refused from its header alone, and control frames are at
//! most 125 bytes.
//!
//! What a server must refuse is refused, with the close code the RFC gives: unmasked client
//! frames, reserved bits (no extension is ever negotiated), unknown opcodes, fragmented or long
//! control frames, a continuation with no message to continue or a new message inside one
//! (1002); binary messages (1003, the chat is text); text that is not UTF-8, also when a
//! character is split between fragments (1007); messages past `max_message` (1009).
//!
//! The decoder's state between frames is a few bytes, and all zero when no fragmented message is
//! under way: an idle connection needs none of it.

use std::fmt;

#[cfg(feature = "web")]
pub mod client;

/// The largest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The largest frame header: 2 bytes, a 64-bit length and the mask.
pub const MAX_HEADER: usize = 14;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Why the server closes a WebSocket connection: the status code of its close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the conversation is over (`exit`, or an echo of the client's own close).
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1002: the client broke the protocol.
    Protocol,
    /// 1003: a message of a kind the server does not take (binary).
    Unsupported,
    /// 1007: a text message that is not UTF-8.
    InvalidData,
    /// 1008: the client kept breaking the chat's rules (bad messages in a row).
    Policy,
    /// 1009: a message larger than the server takes.
    TooBig,
}

impl CloseCode {
    /// The status code on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidData => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            CloseCode::Normal => "goodbye",
            CloseCode::GoingAway => "the server is shutting down",
            CloseCode::Protocol => "WebSocket protocol error",
            CloseCode::Unsupported => "only text messages are taken",
            CloseCode::InvalidData => "the text is not valid UTF-8",
            CloseCode::Policy => "too many bad messages in a row",
            CloseCode::TooBig => "the message is too long",
        };
        write!(f, "{why} ({})", self.code())
    }
}

/// What one frame of a client was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Text: a whole message, or a part of one (`fin` says whether the message ends here). The
    /// parts of a message, joined, are valid UTF-8: that is checked here as they come, so a
    /// part alone may end inside a character.
    Text { data: &'a [u8], fin: bool },
    /// A ping: answer with a pong carrying the same data.
    Ping(&'a [u8]),
    /// A pong: nothing to do.
    Pong,
    /// The client closes: answer with a close frame of the same code (or 1000) and close.
    Close {
        /// The client's status code, if it gave one.
        code: Option<u16>,
        /// Its reason, if any.
        reason: &'a str,
    },
}

/// The outcome of one [`Decoder::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The frame is not whole yet: call again with more bytes.
    NeedMore,
    /// A frame of `consumed` bytes (from the start of the pending bytes) was this.
    Frame { consumed: usize, event: Event<'a> },
}

/// The state of one connection's incoming frames: whether a fragmented text message is under
/// way, how long it is so far, and the start of a character cut by its last fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoder {
    /// A text message has begun and not ended.
    in_message: bool,
    /// Its bytes so far.
    message_len: u32,
    /// The bytes of a character that the last part ended inside, and how many.
    carry: [u8; 3],
    carry_len: u8,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Whether a fragmented message is under way (its parts are the caller's to keep).
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Decodes the frame at the start of `pending`, unmasking its payload in place, for a
    /// server that takes messages of at most `max_message` bytes.
    pub fn next<'a>(
        &mut self,
        pending: &'a mut [u8],
        max_message: usize,
    ) -> Result<Decoded<'a>, CloseCode> {
        let Some(header) = Header::parse(pending, true)? else {
            return Ok(Decoded::NeedMore);
        };
        header.check(self.in_message, u64::from(self.message_len), max_message)?;
        let total = header.size + header.len as usize;
        if pending.len() < total {
            return Ok(Decoded::NeedMore);
        }
        let payload = &mut pending[header.size..total];
        if let Some(mask) = header.mask {
            apply_mask(payload, mask);
        }
        let payload: &'a [u8] = payload;
        let event = match header.opcode {
            OP_CLOSE => {
                let (code, reason) = close_payload(payload)?;
                Event::Close { code, reason }
            }
            OP_PING => Event::Ping(payload),
            OP_PONG => Event::Pong,
            _ => {
                self.check_utf8(payload, header.fin)?;
                if header.fin {
                    *self = Decoder::default(); // nothing kept between messages
                } else {
                    self.in_message = true;
                    self.message_len += payload.len() as u32; // within max_message, checked
                }
                Event::Text {
                    data: payload,
                    fin: header.fin,
                }
            }
        };
        Ok(Decoded::Frame {
            consumed: total,
            event,
        })
    }

    /// Checks that `data`, after what earlier parts of the message carried, goes on valid UTF-8;
    /// at the message's end (`fin`), that no character is left unfinished.
    fn check_utf8(&mut self, mut data: &[u8], fin: bool) -> Result<(), CloseCode> {
        if self.carry_len > 0 {
            let have = usize::from(self.carry_len);
            let need = char_len(self.carry[0]) - have;
            let take = need.min(data.len());
            let mut char_bytes = [0u8; 4];
            char_bytes[..have].copy_from_slice(&self.carry[..have]);
            char_bytes[have..have + take].copy_from_slice(&data[..take]);
            let so_far = &char_bytes[..have + take];
            match std::str::from_utf8(so_far) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_none() && !fin => {
                    // Still unfinished, and so far a valid start: keep it.
                    self.carry[..so_far.len()].copy_from_slice(so_far);
                    self.carry_len = so_far.len() as u8;
                    return Ok(());
                }
                Err(_) => return Err(CloseCode::InvalidData),
            }
            data = &data[take..];
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() && !fin => {
                let rest = &data[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carry_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(CloseCode::InvalidData),
        }
    }
}

/// The length of a UTF-8 character from its first byte (one that starts a valid sequence).
fn char_len(first: u8) -> usize {
    match first {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// A close frame's payload: nothing, or a valid status code and a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<(Option<u16>, &str), CloseCode> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(CloseCode::Protocol),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            // The codes a peer may send (RFC 6455 7.4 and the IANA registry); 1004–1006 and
            // 1015 are reserved, others are unassigned.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(CloseCode::Protocol);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| CloseCode::InvalidData)?;
            Ok((Some(code), reason))
        }
    }
}

/// Whether the frame at the start of `pending` is a ping or a pong (from its first byte, before
/// it is whole or decoded): what may be answered while messages wait.
pub fn starts_with_ping_or_pong(pending: &[u8]) -> bool {
    pending
        .first()
        .is_some_and(|&first| matches!(first & 0x0F, OP_PING | OP_PONG))
}

/// A frame header, read whole: the server's decoder and the client's ([`client::Decoder`])
/// both read frames through it, so that both refuse the same frames with the same codes.
struct Header {
    fin: bool,
    opcode: u8,
    /// The masking key: a client's frames have one, a server's none.
    mask: Option<[u8; 4]>,
    /// The payload's length.
    len: u64,
    /// The header's own length.
    size: usize,
}

impl Header {
    /// The header at the start of `bytes`, `None` if it is not all there yet. `masked` says
    /// whether the frame must be masked (a client's, read by the server) or must not be (a
    /// server's, read by a client): RFC 6455 5.1 has each side refuse the other kind.
    fn parse(bytes: &[u8], masked: bool) -> Result<Option<Header>, CloseCode> {
        let [first, second, ..] = *bytes else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(CloseCode::Protocol); // reserved bits: no extension was negotiated
        }
        let opcode = first & 0x0F;
        if !matches!(
            opcode,
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(CloseCode::Protocol);
        }
        if (second & 0x80 != 0) != masked {
            return Err(CloseCode::Protocol); // clients must mask, servers must not
        }
        let (len_bytes, short) = match second & 0x7F {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let mask_bytes = if masked { 4 } else { 0 };
        let size = 2 + len_bytes + mask_bytes;
        if bytes.len() < size {
            return Ok(None);
        }
        let len = match short {
            Some(n) => n,
            None => {
                let mut be = [0u8; 8];
                be[8 - len_bytes..].copy_from_slice(&bytes[2..2 + len_bytes]);
                let n = u64::from_be_bytes(be);
                if n >> 63 != 0 {
                    return Err(CloseCode::Protocol); // the most significant bit must be 0
                }
                n
            }
        };
        let mask = masked.then(|| {
            let mut mask = [0u8; 4];
            mask.copy_from_slice(&bytes[size - 4..size]);
            mask
        });
        Ok(Some(Header {
            fin: first & 0x80 != 0,
            opcode,
            mask,
            len,
            size,
        }))
    }

    /// Checks the frame against where the message stands (`in_message`: a fragmented message is
    /// under way, of `message_len` bytes so far), before its payload is waited for: a control
    /// frame is final and at most 125 bytes; a continuation continues a message and a text
    /// frame starts one (1002); binary is not taken (1003); a message stays within
    /// `max_message` (1009), refused from the header so that its payload is never waited for.
    fn check(
        &self,
        in_message: bool,
        message_len: u64,
        max_message: usize,
    ) -> Result<(), CloseCode> {
        if self.opcode >= OP_CLOSE {
            if !self.fin || self.len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(CloseCode::Protocol);
            }
            return Ok(());
        }
        match (self.opcode, in_message) {
            (OP_CONTINUATION, false) | (OP_TEXT | OP_BINARY, true) => {
                return Err(CloseCode::Protocol)
            }
            (OP_BINARY, false) => return Err(CloseCode::Unsupported),
            _ => {}
        }
        if message_len.saturating_add(self.len) > max_message as u64 {
            return Err(CloseCode::TooBig);
        }
        Ok(())
    }
}

/// Masks or unmasks `bytes` (the same operation), the first of them at the key's start.
fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Appends one final frame: masked with `mask` as a client sends them, or unmasked (`None`) as
/// a server does.
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// Appends a text message.
pub fn encode_text(out: &mut Vec<u8>, text: &str) {
    encode_frame(out, OP_TEXT, text.as_bytes(), None);
}

/// Appends a pong answering a ping's `data` (at most 125 bytes, as the ping's was).
pub fn encode_pong(out: &mut Vec<u8>, data: &[u8]) {
    let data = &data[..data.len().min(MAX_CONTROL_PAYLOAD)];
    encode_frame(out, OP_PONG, data, None);
}

/// Appends a close frame with `code` and as much of `reason` as fits (whole characters).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(out, OP_CLOSE, &payload, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1000;

    /// A client's frame with the first byte `first` (FIN, reserved bits, opcode), masked with
    /// the key of the RFC's examples.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            first & 0x0F,
            payload,
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        out[0] = first;
        out
    }

    /// What a decoder makes of `bytes` fed one at a time, as a server does: the texts of whole
    /// messages (parts joined), other events by name, and the close code if it refuses.
    fn decode_bytewise(bytes: &[u8]) -> (Vec<String>, Option<CloseCode>) {
        let mut decoder = Decoder::new();
        let mut pending = Vec::new();
        let mut message = Vec::new();
        let mut out = Vec::new();
        for &byte in bytes {
            pending.push(byte);
            loop {
                match decoder.next(&mut pending, MAX) {
                    Err(code) => return (out, Some(code)),
                    Ok(Decoded::NeedMore) => break,
                    Ok(Decoded::Frame { consumed, event }) => {
                        match event {
                            Event::Text { data, fin } => {
                                message.extend_from_slice(data);
                                if fin {
                                    out.push(
                                        String::from_utf8(std::mem::take(&mut message))
                                            .expect("checked UTF-8"),
                                    );
                                }
                            }
                            Event::Ping(data) => {
                                out.push(format!("ping {}", String::from_utf8_lossy(data)))
                            }
                            Event::Pong => out.push("pong".into()),
                            Event::Close { code, reason } => {
                                out.push(format!("close {code:?} {reason}"))
                            }
                        }
                        pending.drain(..consumed);
                    }
                }
            }
        }
        (out, None)
    }

    #[test]
    fn the_rfc_example_decodes_byte_by_byte() {
        // RFC 6455 5.7: a masked "Hello".
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(decode_bytewise(&bytes), (vec!["Hello".to_owned()], None));
        assert_eq!(frame(0x81, b"Hello"), bytes);
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_come_between() {
        let mut bytes = frame(0x01, "小".as_bytes());
        bytes.extend(frame(0x89, b"are you there"));
        bytes.extend(frame(0x00, "明::".as_bytes()));
        bytes.extend(frame(0x80, b"hi"));
        bytes.extend(frame(0x8A, b""));
        bytes.extend(frame(0x88, &[0x03, 0xE8, b'b', b'y', b'e']));
        let (events, refused) = decode_bytewise(&bytes);
        assert_eq!(refused, None);
        assert_eq!(
            events,
            [
                "ping are you there",
                "小明::hi",
                "pong",
                "close Some(1000) bye"
            ]
        );
    }

    #[test]
    fn lengths_of_16_and_64_bits() {
        let medium = "m".repeat(300);
        let (events, _) = decode_bytewise(&frame(0x81, medium.as_bytes()));
        assert_eq!(events, [medium]);
        // A 64-bit length (as a client may send for anything), within the limit.
        let mut bytes = vec![0x81, 0x80 | 127];
        bytes.extend_from_slice(&5u64.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(b"hello");
        assert_eq!(decode_bytewise(&bytes).0, ["hello"]);
    }

    #[test]
    fn protocol_errors_close_with_1002() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        let reserved = frame(0x81 | 0x40, b"hi");
        let unknown_opcodes = [0x83, 0x87, 0x8B, 0x8F].map(|b| frame(b, b""));
        let fragmented_ping = frame(0x09, b"x");
        let long_ping = frame(0x89, &[b'x'; 126]);
        let stray_continuation = frame(0x80, b"x");
        let mut text_inside_text = frame(0x01, b"a");
        text_inside_text.extend(frame(0x81, b"b"));
        let short_close = frame(0x88, &[0x03]);
        let bad_close_codes = [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000]
            .map(|code| frame(0x88, &code.to_be_bytes()));
        let mut top_bit_length = vec![0x81, 0x80 | 127];
        top_bit_length.extend_from_slice(&(1u64 << 63).to_be_bytes());
        top_bit_length.extend_from_slice(&[0; 4]);
        let cases = [
            vec![unmasked.to_vec(), reserved, fragmented_ping, long_ping],
            unknown_opcodes.to_vec(),
            vec![stray_continuation, text_inside_text, short_close],
            bad_close_codes.to_vec(),
            vec![top_bit_length],
        ];
        for bytes in cases.concat() {
            assert_eq!(
                decode_bytewise(&bytes).1,
                Some(CloseCode::Protocol),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn valid_close_codes_are_taken() {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4999,
        ] {
            let (events, refused) = decode_bytewise(&frame(0x88, &code.to_be_bytes()));
            assert_eq!(refused, None, "{code}");
            assert_eq!(events, [format!("close Some({code}) ")]);
        }
        assert_eq!(decode_bytewise(&frame(0x88, b"")).0, ["close None "]);
    }

    #[test]
    fn binary_is_refused_with_1003() {
        assert_eq!(
            decode_bytewise(&frame(0x82, b"\x00\x01")).1,
            Some(CloseCode::Unsupported)
        );
    }

    #[test]
    fn invalid_utf8_closes_with_1007_also_across_fragments() {
        assert_eq!(
            decode_bytewise(&frame(0x81, b"ok \xff")).1,
            Some(CloseCode::InvalidData)
        );
        // 中 is E4 B8 AD: cut after its first byte, the message is still fine...
        let mut split = frame(0x01, b"a\xe4");
        split.extend(frame(0x00, b"\xb8"));
        split.extend(frame(0x80, b"\xadb"));
        assert_eq!(decode_bytewise(&split), (vec!["a中b".to_owned()], None));
        // ...but a wrong continuation in the next fragment is not.
        let mut wrong = frame(0x01, b"a\xe4");
        wrong.extend(frame(0x80, b"\x41"));
        assert_eq!(decode_bytewise(&wrong).1, Some(CloseCode::InvalidData));
        // Nor is a message that ends inside a character.
        let mut unfinished = frame(0x01, b"a");
        unfinished.extend(frame(0x80, b"\xe4\xb8"));
        assert_eq!(decode_bytewise(&unfinished).1, Some(CloseCode::InvalidData));
        // A close reason must be UTF-8 too.
        assert_eq!(
            decode_bytewise(&frame(0x88, b"\x03\xe8\xff")).1,
            Some(CloseCode::InvalidData)
        );
    }

    #[test]
    fn a_message_past_the_limit_is_refused_from_its_header() {
        // Only the header is sent: the refusal does not wait for the megabyte.
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 20).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(decode_bytewise(&header).1, Some(CloseCode::TooBig));
        // Fragments that add up past it.
        let mut parts = frame(0x01, &[b'x'; 600]);
        parts.extend(frame(0x80, &[b'x'; 600]));
        assert_eq!(decode_bytewise(&parts).1, Some(CloseCode::TooBig));
        // Exactly the limit is fine.
        let (events, refused) = decode_bytewise(&frame(0x81, &[b'x'; MAX]));
        assert_eq!((events.len(), refused), (1, None));
    }

    #[test]
    fn an_idle_decoder_holds_nothing() {
        let mut decoder = Decoder::new();
        let mut bytes = frame(0x01, b"a\xe4");
        let Ok(Decoded::Frame { consumed, .. }) = decoder.next(&mut bytes, MAX) else {
            panic!("a frame")
        };
        assert_eq!(consumed, bytes.len());
        assert!(decoder.in_message());
        let mut end = frame(0x80, b"\xb8\xad");
        assert!(decoder.next(&mut end, MAX).is_ok());
        assert_eq!(decoder, Decoder::new());
        assert!(std::mem::size_of::<Decoder>() <= 12);
    }

    #[test]
    fn encoding() {
        let mut out = Vec::new();
        encode_text(&mut out, "hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        encode_text(&mut out, &"x".repeat(126));
        assert_eq!(out[..4], [0x81, 126, 0, 126]);
        out.clear();
        encode_text(&mut out, &"x".repeat(70_000));
        assert_eq!(out[..2], [0x81, 127]);
        assert_eq!(out[2..10], 70_000u64.to_be_bytes());
        out.clear();
        encode_pong(&mut out, b"p");
        assert_eq!(out, [0x8A, 1, b'p']);
        out.clear();
        encode_close(&mut out, 1001, &"再见".repeat(100));
        assert_eq!(out[0], 0x88);
        assert!(usize::from(out[1]) <= MAX_CONTROL_PAYLOAD);
        assert_eq!(out[2..4], 1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
