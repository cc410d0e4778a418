//! The PROXY protocol: learning a proxied client's real address from the header a load balancer
//! sends before the client's own bytes.
//!
//! When the server sits behind HAProxy, an AWS/GCP network load balancer, stunnel or similar, the
//! TCP peer it sees is the proxy, not the client. A proxy configured with `send-proxy` (v1, text)
//! or `send-proxy-v2` (v2, binary) first writes a short header naming the real endpoints; this
//! module parses that header as HAProxy's specification (`doc/proxy-protocol.txt`) defines it.
//!
//! Like [`crate::protocol`], everything here is pure: no sockets, no clocks, no allocation. The
//! caller keeps the bytes a connection has received so far and calls [`parse`] with all of them
//! (the same bytes first, new ones appended) until it says [`ProxyParse::Done`] or
//! [`ProxyParse::Invalid`]. After `Done { consumed, .. }`, the first `consumed` bytes were the
//! header and the rest belong to the application. The caller never needs to keep more than
//! [`MAX_HEADER`] bytes for the header: a longer one is rejected.
//!
//! The specification says a receiver must only be configured to expect the header (never guess
//! whether it is present: that would let anyone spoof addresses) and should only accept it from
//! trusted proxies. Both are the caller's job.
//!
//! # Decisions beyond the specification
//!
//! - **v2 size cap.** The v2 length field allows 65535 bytes after the 16-byte fixed part; this
//!   parser accepts at most [`MAX_HEADER`]` - 16` = 1024 (addresses plus TLVs), so a client cannot
//!   make the server buffer 64 KiB per connection. Real senders stay far below it (a header is
//!   sent in one segment, below an MSS).
//! - **Families without usable TCP addresses.** v2 `PROXY` headers for AF_UNSPEC, AF_UNIX, the
//!   UNSPEC transport or DGRAM (UDP) are accepted as [`ProxyHeader::Unknown`], as the
//!   specification allows ("fall back to the UNSPEC mode"): the connection is still proxied, but
//!   a UNIX path or a UDP address says nothing useful about a TCP client. Their address blocks
//!   must still have the length the family needs when it has one.
//! - **TLVs** are skipped, not interpreted (so a `PP2_TYPE_CRC32C` checksum is not verified, which
//!   the specification permits of a receiver that does not support it). When the address block has
//!   a known size, the TLVs after it must tile the rest of the block exactly, as HAProxy itself
//!   checks; a truncated TLV means a corrupt header.
//! - **v1 `UNKNOWN`** must be followed by the CRLF or by a space (then anything up to the CRLF
//!   is ignored); `PROXY UNKNOWNX` is malformed.
//! - **v1 IPv6 addresses** are read with the standard library's parser, which also accepts an
//!   IPv4-mapped tail such as `::ffff:192.0.2.1`: that is how `inet_ntop` (and so HAProxy) writes
//!   such addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 header starts with these bytes; `PROXY` alone could also begin something else.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest v1 line the specification allows, CRLF included (`PROXY UNKNOWN` with two full
/// IPv6 addresses and ports).
const V1_MAX: usize = 107;

/// The constant first 12 bytes of a v2 header. It contains `\0` and `QUIT\n` so that servers of
/// common protocols reject it if it is sent to them by mistake.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;

/// The most bytes accepted after the fixed part of a v2 header.
const V2_MAX_BLOCK: usize = 1024;

/// The longest a header may be, in bytes: the caller never needs to buffer more than this before
/// [`parse`] decides.
///
/// The specification allows 107 bytes for v1 and 16 + 65535 for v2. This parser caps v2 at
/// 16 + 1024 bytes (address block and TLVs together) so that a client cannot make the server
/// buffer much; a v2 header announcing more is [`ProxyError::TooLong`]. v1's limit is the
/// specification's.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_BLOCK;

/// v2 commands (low nibble of byte 13).
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;

/// v2 address families (high nibble of byte 14).
const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;

/// v2 transport protocols (low nibble of byte 14).
const PROTO_UNSPEC: u8 = 0x0;
const PROTO_STREAM: u8 = 0x1;
const PROTO_DGRAM: u8 = 0x2;

/// What a complete header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection: the real client and the address it connected to.
    Proxied {
        /// The client's address and port, as the proxy saw them.
        source: SocketAddr,
        /// The address and port the client connected to (the proxy's listener).
        destination: SocketAddr,
    },
    /// v1 `PROXY UNKNOWN`, or a v2 `PROXY` header whose family or transport gives no TCP
    /// addresses (AF_UNSPEC, AF_UNIX, UNSPEC, or DGRAM): the connection is proxied but the
    /// addresses are unknown; use the socket's own peer address.
    Unknown,
    /// v2 `LOCAL` command (health checks from the proxy itself): use the socket's own addresses.
    Local,
}

/// Why a header was rejected. [`Display`](fmt::Display) gives a message for a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The bytes do not start with a v1 (`PROXY `) or v2 signature: the peer is not speaking the
    /// PROXY protocol (a client connecting directly, or a proxy not configured to send it).
    NotProxyProtocol,
    /// A v1 line without CRLF within 107 bytes, or a v2 header longer than [`MAX_HEADER`].
    TooLong,
    /// A v2 header with a version other than 2 (the high nibble of byte 13).
    UnsupportedVersion(u8),
    /// A v2 header with a command other than LOCAL (0) or PROXY (1).
    UnsupportedCommand(u8),
    /// The header does not follow the specification; the text says how.
    Malformed(&'static str),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxyProtocol => f.write_str(
                "no PROXY protocol header: the connection did not come through the proxy",
            ),
            ProxyError::TooLong => write!(
                f,
                "PROXY protocol header too long (v1: over {V1_MAX} bytes without CRLF; v2: over {MAX_HEADER} bytes)"
            ),
            ProxyError::UnsupportedVersion(v) => {
                write!(f, "PROXY protocol v2 header with unsupported version {v}")
            }
            ProxyError::UnsupportedCommand(c) => {
                write!(f, "PROXY protocol v2 header with unsupported command {c}")
            }
            ProxyError::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Outcome of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyParse {
    /// Not enough bytes yet to decide; keep them and call again with more appended.
    Incomplete,
    /// A whole header: it used the first `consumed` bytes; what follows belongs to the application.
    Done {
        /// What the header said.
        header: ProxyHeader,
        /// The header's length in bytes; never more than the bytes given, nor than [`MAX_HEADER`].
        consumed: usize,
    },
    /// Not a valid header: the connection should be closed.
    Invalid(ProxyError),
}

/// Shorthand for the many rejections below.
fn malformed(why: &'static str) -> ProxyParse {
    ProxyParse::Invalid(ProxyError::Malformed(why))
}

/// Parses a PROXY header at the start of `bytes` (all bytes received so far on the connection).
///
/// Bytes that cannot start a header are rejected as soon as they are seen:
/// [`ProxyError::NotProxyProtocol`] from the first byte that differs from both signatures, so
/// the caller never waits for bytes that could not help. Likewise a bad v1 protocol keyword, a
/// stray CR or LF, or any bad v2 fixed field is rejected on arrival. v1 addresses and ports are
/// decoded once the CRLF has arrived, as the specification asks; v2 addresses once the whole
/// block has. Never panics.
pub fn parse(bytes: &[u8]) -> ProxyParse {
    // Both signatures are checked against however many bytes have arrived; their first bytes
    // ('P' and '\r') differ, so at most one can match.
    if is_prefix_match(bytes, V1_PREFIX) {
        if bytes.len() < V1_PREFIX.len() {
            return ProxyParse::Incomplete;
        }
        return parse_v1(bytes);
    }
    if is_prefix_match(bytes, &V2_SIGNATURE) {
        if bytes.len() < V2_SIGNATURE.len() {
            return ProxyParse::Incomplete;
        }
        return parse_v2(bytes);
    }
    ProxyParse::Invalid(ProxyError::NotProxyProtocol)
}

/// Whether `bytes` and `signature` agree on their common length (so an empty input matches: it
/// could still become either header).
fn is_prefix_match(bytes: &[u8], signature: &[u8]) -> bool {
    let n = bytes.len().min(signature.len());
    bytes[..n] == signature[..n]
}

// ---------------------------------------------------------------------------------------------
// Version 1: one line of text.
// ---------------------------------------------------------------------------------------------

/// `bytes` starts with `PROXY `. Finds the CRLF, then decodes the line.
fn parse_v1(bytes: &[u8]) -> ProxyParse {
    // The specification says to decode only once the CRLF is there, but line-ending errors can
    // be seen early: a lone LF, or a CR followed by anything but LF, can never become valid.
    let window = &bytes[..bytes.len().min(V1_MAX)];
    // The keyword after `PROXY ` is known from its first byte on.
    let keyword = &window[V1_PREFIX.len()..];
    if ![&b"TCP4 "[..], b"TCP6 ", b"UNKNOWN"]
        .iter()
        .any(|k| is_prefix_match(keyword, k))
    {
        return malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN");
    }
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if bytes.len() >= V1_MAX {
            ProxyParse::Invalid(ProxyError::TooLong)
        } else {
            ProxyParse::Incomplete
        };
    };
    if window[end] == b'\n' {
        return malformed("v1 line ends with LF without CR");
    }
    // The CRLF must fit within the 107 bytes, so a CR at index 106 already makes the line too
    // long whatever follows.
    if end + 2 > V1_MAX {
        return ProxyParse::Invalid(ProxyError::TooLong);
    }
    match bytes.get(end + 1) {
        None => ProxyParse::Incomplete,
        Some(b'\n') => match decode_v1_line(&bytes[V1_PREFIX.len()..end]) {
            Ok(header) => ProxyParse::Done {
                header,
                consumed: end + 2,
            },
            Err(why) => malformed(why),
        },
        Some(_) => malformed("v1 line has a CR not followed by LF"),
    }
}

/// Decodes what follows `PROXY ` on a v1 line, without the CRLF.
fn decode_v1_line(line: &[u8]) -> Result<ProxyHeader, &'static str> {
    if let Some(rest) = line.strip_prefix(b"UNKNOWN") {
        // The sender may omit the rest, or send addresses the receiver must ignore.
        return match rest.first() {
            None | Some(b' ') => Ok(ProxyHeader::Unknown),
            Some(_) => Err("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        };
    }
    let (is_v6, fields) = if let Some(fields) = line.strip_prefix(b"TCP4 ") {
        (false, fields)
    } else if let Some(fields) = line.strip_prefix(b"TCP6 ") {
        (true, fields)
    } else {
        return Err("v1 protocol is not TCP4, TCP6 or UNKNOWN");
    };
    // Exactly one space between fields: splitting on single spaces turns a doubled, leading or
    // trailing space into an empty field, which no parser below accepts.
    let mut parts = fields.split(|&b| b == b' ');
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("v1 line does not have exactly four single-space-separated fields");
    };
    let (src, dst) = if is_v6 {
        let src = parse_ipv6(src).ok_or("v1 TCP6 source is not an IPv6 address")?;
        let dst = parse_ipv6(dst).ok_or("v1 TCP6 destination is not an IPv6 address")?;
        (IpAddr::V6(src), IpAddr::V6(dst))
    } else {
        let src = parse_ipv4(src).ok_or("v1 TCP4 source is not a dotted-quad IPv4 address")?;
        let dst = parse_ipv4(dst).ok_or("v1 TCP4 destination is not a dotted-quad IPv4 address")?;
        (IpAddr::V4(src), IpAddr::V4(dst))
    };
    let sport = parse_decimal(sport, u16::MAX.into()).ok_or("v1 source port is not 0-65535")?;
    let dport =
        parse_decimal(dport, u16::MAX.into()).ok_or("v1 destination port is not 0-65535")?;
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(src, sport as u16),
        destination: SocketAddr::new(dst, dport as u16),
    })
}

/// A decimal number in `0..=max` written as the specification requires: ASCII digits only (no
/// sign, no spaces) and no leading zero, which could be mistaken for octal.
fn parse_decimal(digits: &[u8], max: u32) -> Option<u32> {
    // Five digits are enough for every number here and keep the arithmetic from overflowing.
    if digits.is_empty() || digits.len() > 5 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut value: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(d - b'0');
    }
    (value <= max).then_some(value)
}

/// Exactly four decimal numbers 0-255 separated by single dots, no leading zeroes. Written here
/// rather than left to `Ipv4Addr::from_str` so the leading-zero rule is the specification's.
fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        *octet = parse_decimal(parts.next()?, 255)? as u8;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// An IPv6 address in the textual forms `inet_pton` accepts (groups of up to four hex digits,
/// one `::`, optionally an IPv4 tail); no brackets, zone or port.
fn parse_ipv6(text: &[u8]) -> Option<Ipv6Addr> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Version 2: a 16-byte binary header and a length-prefixed address block.
// ---------------------------------------------------------------------------------------------

/// `bytes` starts with the 12-byte v2 signature. Each fixed field is checked as soon as it has
/// arrived, so a bad header is rejected without waiting for the rest.
fn parse_v2(bytes: &[u8]) -> ProxyParse {
    let Some(&ver_cmd) = bytes.get(12) else {
        return ProxyParse::Incomplete;
    };
    let version = ver_cmd >> 4;
    if version != 2 {
        return ProxyParse::Invalid(ProxyError::UnsupportedVersion(version));
    }
    let command = ver_cmd & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return ProxyParse::Invalid(ProxyError::UnsupportedCommand(command));
    }

    let Some(&fam) = bytes.get(13) else {
        return ProxyParse::Incomplete;
    };
    let (family, protocol) = (fam >> 4, fam & 0x0f);
    // For LOCAL the specification says the family is ignored, so only PROXY checks it. Values
    // outside the specification "must be rejected as invalid by receivers".
    if command == CMD_PROXY {
        if family > AF_UNIX {
            return malformed("v2 address family is not UNSPEC, INET, INET6 or UNIX");
        }
        if protocol > PROTO_DGRAM {
            return malformed("v2 transport protocol is not UNSPEC, STREAM or DGRAM");
        }
    }

    let (Some(&len_hi), Some(&len_lo)) = (bytes.get(14), bytes.get(15)) else {
        return ProxyParse::Incomplete;
    };
    let block_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    // Rejected before the block arrives: the point of the cap is never to buffer it.
    if block_len > V2_MAX_BLOCK {
        return ProxyParse::Invalid(ProxyError::TooLong);
    }
    // The size the family's addresses take at the start of the block, when the family and
    // transport are both specified; an UNSPEC on either side means "ignore the block".
    let address_len = if command == CMD_PROXY && family != AF_UNSPEC && protocol != PROTO_UNSPEC {
        match family {
            AF_INET => Some(2 * 4 + 2 * 2),
            AF_INET6 => Some(2 * 16 + 2 * 2),
            _ => Some(2 * 108), // AF_UNIX: two sun_path buffers, no ports
        }
    } else {
        None
    };
    if let Some(needed) = address_len {
        if block_len < needed {
            return malformed("v2 length is shorter than the address family needs");
        }
    }

    let total = V2_FIXED + block_len;
    let Some(block) = bytes.get(V2_FIXED..total) else {
        return ProxyParse::Incomplete;
    };
    let done = |header| ProxyParse::Done {
        header,
        consumed: total,
    };
    if command == CMD_LOCAL {
        // "Receivers MUST always consider this field to skip the appropriate number of bytes
        // and must not assume zero is presented for LOCAL connections."
        return done(ProxyHeader::Local);
    }
    let Some(needed) = address_len else {
        return done(ProxyHeader::Unknown);
    };
    let (addresses, tlvs) = block.split_at(needed);
    if !tlvs_are_well_formed(tlvs) {
        return malformed("v2 TLV runs past the end of the header");
    }
    if protocol != PROTO_STREAM {
        // DGRAM: UDP endpoints say nothing about this TCP connection.
        return done(ProxyHeader::Unknown);
    }
    match family {
        AF_INET => {
            let ip = |at: usize| {
                Ipv4Addr::new(
                    addresses[at],
                    addresses[at + 1],
                    addresses[at + 2],
                    addresses[at + 3],
                )
            };
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            done(ProxyHeader::Proxied {
                source: SocketAddr::new(IpAddr::V4(ip(0)), port(8)),
                destination: SocketAddr::new(IpAddr::V4(ip(4)), port(10)),
            })
        }
        AF_INET6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&addresses[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            done(ProxyHeader::Proxied {
                source: SocketAddr::new(IpAddr::V6(ip(0)), port(32)),
                destination: SocketAddr::new(IpAddr::V6(ip(16)), port(34)),
            })
        }
        // AF_UNIX stream: a path is no peer address for a TCP connection.
        _ => done(ProxyHeader::Unknown),
    }
}

/// Whether `tlvs` is a whole number of type-length-value records (1-byte type, 2-byte
/// big-endian length, value), with nothing left over.
fn tlvs_are_well_formed(mut tlvs: &[u8]) -> bool {
    while !tlvs.is_empty() {
        let [_type, hi, lo, rest @ ..] = tlvs else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some(next) = rest.get(len..) else {
            return false;
        };
        tlvs = next;
    }
    true
}
