//! The PROXY protocol header parser: valid v1 and v2 headers however they are cut into reads,
//! every kind of malformed or over-long header, connections without a header, and arbitrary
//! bytes (which must never panic it nor make it claim bytes it was not given).

use robochat::proxy_protocol::{parse, ProxyError, ProxyHeader, ProxyParse, MAX_HEADER};
use std::net::SocketAddr;

/// What the application sends after the header; it must never be consumed.
const APP: &[u8] = b"bob::hi\n";

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn proxied(source: &str, destination: &str) -> ProxyHeader {
    ProxyHeader::Proxied {
        source: addr(source),
        destination: addr(destination),
    }
}

/// A v2 header: signature, version/command byte, family/protocol byte, and the block with its
/// length.
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    out.extend_from_slice(block);
    out
}

/// The 12-byte address block of TCP over IPv4 192.0.2.1:56324 -> 198.51.100.11:443.
fn ipv4_block() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 1, 198, 51, 100, 11];
    b.extend_from_slice(&56324u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

/// The 36-byte address block of TCP over IPv6 [2001:db8::1]:40000 -> [2001:db8::2]:7000.
fn ipv6_block() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    b.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    b.extend_from_slice(&40000u16.to_be_bytes());
    b.extend_from_slice(&7000u16.to_be_bytes());
    b
}

/// Some TLVs as HAProxy sends them: ALPN "h2", authority "example.com", an empty NOOP.
fn tlvs() -> Vec<u8> {
    let mut t = vec![0x01, 0x00, 0x02];
    t.extend_from_slice(b"h2");
    t.extend_from_slice(&[0x02, 0x00, 0x0b]);
    t.extend_from_slice(b"example.com");
    t.extend_from_slice(&[0x04, 0x00, 0x00]);
    t
}

/// Feeds `header` the way TCP might deliver it: every proper prefix must be `Incomplete`, the
/// whole header must give `expected` consuming exactly the header, and any application bytes
/// that arrived with it must be left alone.
fn check_incremental(header: &[u8], expected: ProxyHeader) {
    for cut in 0..header.len() {
        assert_eq!(
            parse(&header[..cut]),
            ProxyParse::Incomplete,
            "prefix of {cut} bytes of {header:?}"
        );
    }
    let done = ProxyParse::Done {
        header: expected,
        consumed: header.len(),
    };
    for extra in 0..=APP.len() {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&APP[..extra]);
        assert_eq!(parse(&bytes), done, "{header:?} followed by {extra} bytes");
    }
}

fn invalid(bytes: &[u8]) -> ProxyError {
    match parse(bytes) {
        ProxyParse::Invalid(e) => e,
        other => panic!("{bytes:?} gave {other:?}, expected Invalid"),
    }
}

fn is_malformed(bytes: &[u8]) -> bool {
    matches!(parse(bytes), ProxyParse::Invalid(ProxyError::Malformed(_)))
}

// ---- v1 -------------------------------------------------------------------------------------

#[test]
fn v1_tcp4() {
    check_incremental(
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        proxied("192.168.0.1:56324", "192.168.0.11:443"),
    );
}

#[test]
fn v1_tcp4_extremes() {
    check_incremental(
        b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n",
        proxied("255.255.255.255:65535", "0.0.0.0:0"),
    );
}

#[test]
fn v1_tcp6() {
    check_incremental(
        b"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 40000 7000\r\n",
        proxied("[2001:db8::1]:40000", "[2001:db8::2]:7000"),
    );
}

#[test]
fn v1_tcp6_longest_line() {
    let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(line.len(), 104);
    let all = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    check_incremental(line, proxied(all, all));
}

#[test]
fn v1_tcp6_ipv4_mapped_as_inet_ntop_writes_it() {
    check_incremental(
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
        proxied("[::ffff:192.0.2.1]:1", "[::1]:2"),
    );
}

#[test]
fn v1_unknown_short_form() {
    check_incremental(b"PROXY UNKNOWN\r\n", ProxyHeader::Unknown);
}

#[test]
fn v1_unknown_ignores_the_rest_of_the_line() {
    check_incremental(
        b"PROXY UNKNOWN ffff::1 whatever   you like\r\n",
        ProxyHeader::Unknown,
    );
}

#[test]
fn v1_unknown_of_exactly_107_bytes_is_accepted() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(105, b'f');
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), 107);
    check_incremental(&line, ProxyHeader::Unknown);
}

#[test]
fn v1_bad_ports() {
    for port in [
        "65536", "99999", "123456", "080", "00", "-1", "+80", "8a", "", " 80", "0x50",
    ] {
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 80\r\n");
        assert!(is_malformed(line.as_bytes()), "{line:?}");
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 80 {port}\r\n");
        assert!(is_malformed(line.as_bytes()), "{line:?}");
    }
}

#[test]
fn v1_bad_ipv4_addresses() {
    for ip in [
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "1.2.3.04",
        "1..3.4",
        "1.2.3.4.",
        "a.b.c.d",
        "",
        "::1",
        "2001:db8::1",
        "1.2.3.-4",
    ] {
        let line = format!("PROXY TCP4 {ip} 5.6.7.8 1 2\r\n");
        assert!(is_malformed(line.as_bytes()), "{line:?}");
        let line = format!("PROXY TCP4 5.6.7.8 {ip} 1 2\r\n");
        assert!(is_malformed(line.as_bytes()), "{line:?}");
    }
}

#[test]
fn v1_bad_ipv6_addresses() {
    for ip in [
        "1.2.3.4",
        "2001:db8::1::2",
        "12345::1",
        "[::1]",
        "fe80::1%eth0",
        "g::1",
        "1:2:3:4:5:6:7:8:9",
        "",
    ] {
        let line = format!("PROXY TCP6 {ip} ::1 1 2\r\n");
        assert!(is_malformed(line.as_bytes()), "{line:?}");
        let line = format!("PROXY TCP6 ::1 {ip} 1 2\r\n");
        assert!(is_malformed(line.as_bytes()), "{line:?}");
    }
}

#[test]
fn v1_spacing_must_be_exact() {
    for line in [
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        "PROXY TCP4\r\n",
        "PROXY \r\n",
    ] {
        assert!(is_malformed(line.as_bytes()), "{line:?}");
    }
}

#[test]
fn v1_unknown_protocols() {
    for line in [
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY unknown\r\n",
    ] {
        assert!(is_malformed(line.as_bytes()), "{line:?}");
    }
    // A bad keyword is known from its first wrong byte, without waiting for the CRLF.
    assert!(is_malformed(b"PROXY X"));
    assert!(is_malformed(b"PROXY TCP5"));
    assert_eq!(parse(b"PROXY TCP"), ProxyParse::Incomplete);
    assert_eq!(parse(b"PROXY UNKN"), ProxyParse::Incomplete);
}

#[test]
fn v1_tcp4_with_ipv6_addresses_and_tcp6_with_ipv4() {
    assert!(is_malformed(b"PROXY TCP4 ::1 ::1 1 2\r\n"));
    assert!(is_malformed(b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n"));
    assert!(is_malformed(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"));
}

#[test]
fn v1_line_must_end_with_crlf() {
    // A lone LF or a CR followed by anything else is rejected as soon as it is seen.
    assert!(is_malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"));
    assert!(is_malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nbob::hi\n"));
    assert!(is_malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"));
    assert!(is_malformed(b"PROXY TCP4 1.2.3.4\n"));
    assert!(is_malformed(b"PROXY UNKNOWN\n"));
    assert!(is_malformed(b"PROXY UNKNOWN\r\r\n"));
    // Without any line end yet, the line may still be completed.
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
        ProxyParse::Incomplete
    );
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
        ProxyParse::Incomplete
    );
}

#[test]
fn v1_over_107_bytes_without_crlf_is_too_long() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(106, b'f');
    assert_eq!(parse(&line), ProxyParse::Incomplete);
    line.push(b'f');
    assert_eq!(line.len(), 107);
    assert_eq!(invalid(&line), ProxyError::TooLong);
    line.extend_from_slice(b"ffff\r\n");
    assert_eq!(invalid(&line), ProxyError::TooLong);

    // A CR as the 107th byte leaves no room for the LF: too long at once.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(106, b'f');
    line.push(b'\r');
    assert_eq!(invalid(&line), ProxyError::TooLong);

    // A TCP line of garbage fields is rejected by length too.
    let mut line = b"PROXY TCP4 ".to_vec();
    line.resize(200, b'1');
    assert_eq!(invalid(&line), ProxyError::TooLong);
}

#[test]
fn lowercase_proxy_is_not_the_protocol() {
    assert_eq!(
        invalid(b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        ProxyError::NotProxyProtocol
    );
    assert_eq!(invalid(b"p"), ProxyError::NotProxyProtocol);
    assert_eq!(invalid(b"PROXy"), ProxyError::NotProxyProtocol);
    assert_eq!(invalid(b"PROXYTCP4"), ProxyError::NotProxyProtocol);
}

// ---- v2 -------------------------------------------------------------------------------------

#[test]
fn v2_tcp4() {
    check_incremental(
        &v2(0x21, 0x11, &ipv4_block()),
        proxied("192.0.2.1:56324", "198.51.100.11:443"),
    );
}

#[test]
fn v2_tcp6() {
    check_incremental(
        &v2(0x21, 0x21, &ipv6_block()),
        proxied("[2001:db8::1]:40000", "[2001:db8::2]:7000"),
    );
}

#[test]
fn v2_tcp4_and_tcp6_with_tlvs() {
    let mut block = ipv4_block();
    block.extend_from_slice(&tlvs());
    check_incremental(
        &v2(0x21, 0x11, &block),
        proxied("192.0.2.1:56324", "198.51.100.11:443"),
    );
    let mut block = ipv6_block();
    block.extend_from_slice(&tlvs());
    check_incremental(
        &v2(0x21, 0x21, &block),
        proxied("[2001:db8::1]:40000", "[2001:db8::2]:7000"),
    );
}

#[test]
fn v2_the_specification_example_from_haproxy() {
    // What HAProxy sent for 172.19.0.1:42578 -> 172.19.0.3:80, followed by an HTTP request.
    let header = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00,
        0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
    ];
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        parse(&bytes),
        ProxyParse::Done {
            header: proxied("172.19.0.1:42578", "172.19.0.3:80"),
            consumed: 28,
        }
    );
}

#[test]
fn v2_unspec_is_unknown() {
    check_incremental(&v2(0x21, 0x00, &[]), ProxyHeader::Unknown);
    // The block of an unspecified family is skipped whatever it holds.
    check_incremental(&v2(0x21, 0x00, &[1, 2, 3, 4, 5]), ProxyHeader::Unknown);
    // An INET family with an unspecified transport falls back to UNSPEC too.
    check_incremental(&v2(0x21, 0x10, &[9; 7]), ProxyHeader::Unknown);
}

#[test]
fn v2_unix_and_udp_are_unknown() {
    check_incremental(&v2(0x21, 0x31, &[b'/'; 216]), ProxyHeader::Unknown);
    check_incremental(&v2(0x21, 0x32, &[0; 216]), ProxyHeader::Unknown);
    check_incremental(&v2(0x21, 0x12, &ipv4_block()), ProxyHeader::Unknown);
    let mut block = ipv6_block();
    block.extend_from_slice(&tlvs());
    check_incremental(&v2(0x21, 0x22, &block), ProxyHeader::Unknown);
}

#[test]
fn v2_local() {
    check_incremental(&v2(0x20, 0x00, &[]), ProxyHeader::Local);
    // LOCAL must skip whatever block is announced, and ignores the family.
    check_incremental(&v2(0x20, 0x11, &ipv4_block()), ProxyHeader::Local);
    check_incremental(&v2(0x20, 0xff, &[7; 40]), ProxyHeader::Local);
}

#[test]
fn v2_wrong_version_is_rejected_at_byte_13() {
    for ver_cmd in [0x01, 0x11, 0x31, 0xf1, 0x10] {
        let header = v2(ver_cmd, 0x11, &ipv4_block());
        let expected = ProxyError::UnsupportedVersion(ver_cmd >> 4);
        assert_eq!(invalid(&header[..13]), expected);
        assert_eq!(invalid(&header), expected);
    }
}

#[test]
fn v2_wrong_command_is_rejected_at_byte_13() {
    for ver_cmd in [0x22, 0x2f] {
        let header = v2(ver_cmd, 0x11, &ipv4_block());
        let expected = ProxyError::UnsupportedCommand(ver_cmd & 0x0f);
        assert_eq!(invalid(&header[..13]), expected);
        assert_eq!(invalid(&header), expected);
    }
}

#[test]
fn v2_unknown_family_or_protocol_is_rejected_at_byte_14() {
    for fam in [0x41, 0xf1, 0x13, 0x1f] {
        let header = v2(0x21, fam, &ipv4_block());
        assert!(is_malformed(&header[..14]), "{fam:#x}");
        assert!(is_malformed(&header), "{fam:#x}");
    }
}

#[test]
fn v2_length_shorter_than_the_addresses_is_rejected_at_once() {
    for (fam, needed) in [(0x11, 12), (0x12, 12), (0x21, 36), (0x22, 36), (0x31, 216)] {
        let header = v2(0x21, fam, &vec![0; needed - 1]);
        // Known as soon as the length field has arrived.
        assert!(is_malformed(&header[..16]), "{fam:#x}");
        assert!(is_malformed(&header), "{fam:#x}");
    }
    assert!(is_malformed(&v2(0x21, 0x11, &[])));
}

#[test]
fn v2_truncated_tlv_is_rejected() {
    let mut block = ipv4_block();
    block.extend_from_slice(&[0x01, 0x00, 0x05, b'h', b'2']); // says 5 bytes, has 2
    assert!(is_malformed(&v2(0x21, 0x11, &block)));
    let mut block = ipv4_block();
    block.extend_from_slice(&[0x04, 0x00]); // not even a whole TLV header
    assert!(is_malformed(&v2(0x21, 0x11, &block)));
}

#[test]
fn v2_length_over_the_cap_is_too_long_once_the_length_is_readable() {
    let cap = MAX_HEADER - 16;
    let mut header = SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11]);
    header.extend_from_slice(&u16::try_from(cap + 1).unwrap().to_be_bytes());
    assert_eq!(invalid(&header), ProxyError::TooLong);
    assert_eq!(
        invalid(&v2(0x20, 0x00, &vec![0; cap + 1])),
        ProxyError::TooLong
    );
    let mut header = SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0xff, 0xff]);
    assert_eq!(invalid(&header), ProxyError::TooLong);
}

#[test]
fn v2_length_at_the_cap_is_accepted() {
    let cap = MAX_HEADER - 16;
    // Addresses, then one NOOP TLV filling the rest.
    let mut block = ipv4_block();
    let pad = cap - block.len() - 3;
    block.extend_from_slice(&[0x04]);
    block.extend_from_slice(&u16::try_from(pad).unwrap().to_be_bytes());
    block.resize(cap, 0);
    let header = v2(0x21, 0x11, &block);
    assert_eq!(header.len(), MAX_HEADER);
    check_incremental(&header, proxied("192.0.2.1:56324", "198.51.100.11:443"));
}

// ---- no header ------------------------------------------------------------------------------

#[test]
fn missing_header_is_rejected_from_the_first_byte() {
    assert_eq!(invalid(b"bob::hi\n"), ProxyError::NotProxyProtocol);
    assert_eq!(invalid(b"b"), ProxyError::NotProxyProtocol);
    assert_eq!(invalid(b"GET / HTTP/1.1\r\n"), ProxyError::NotProxyProtocol);
    assert_eq!(invalid(b"\x16\x03\x01"), ProxyError::NotProxyProtocol); // TLS
    assert_eq!(invalid(b"PR0"), ProxyError::NotProxyProtocol);
    // A v2 signature that goes wrong part way.
    assert_eq!(
        invalid(b"\r\n\r\n\0\r\nQUIT\r"),
        ProxyError::NotProxyProtocol
    );
    assert_eq!(invalid(b"\r\r"), ProxyError::NotProxyProtocol);
    assert_eq!(invalid(b"\r\n\r\n\n"), ProxyError::NotProxyProtocol);
}

#[test]
fn signature_prefixes_are_incomplete() {
    assert_eq!(parse(b""), ProxyParse::Incomplete);
    for n in 1..=6 {
        assert_eq!(parse(&b"PROXY "[..n]), ProxyParse::Incomplete, "{n}");
    }
    for n in 1..=12 {
        assert_eq!(parse(&SIGNATURE[..n]), ProxyParse::Incomplete, "{n}");
    }
}

#[test]
fn errors_display_for_logs() {
    for e in [
        ProxyError::NotProxyProtocol,
        ProxyError::TooLong,
        ProxyError::UnsupportedVersion(1),
        ProxyError::UnsupportedCommand(2),
        ProxyError::Malformed("v1 source port is not 0-65535"),
    ] {
        let text = e.to_string();
        assert!(text.contains("PROXY"), "{text}");
    }
    assert!(ProxyError::Malformed("v1 source port is not 0-65535")
        .to_string()
        .contains("source port"));
}

// ---- arbitrary input ------------------------------------------------------------------------

/// A xorshift64* generator: deterministic, so a failure replays, and no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks what must hold for any input: no panic, `consumed` within the input and the cap, and
/// a decision that later bytes cannot change (so a caller that decides on a prefix is right).
fn check_any(bytes: &[u8]) {
    let whole = parse(bytes);
    if let ProxyParse::Done { consumed, .. } = whole {
        assert!(consumed <= bytes.len(), "{bytes:?}");
        assert!(consumed <= MAX_HEADER, "{bytes:?}");
        assert!(consumed > 0, "{bytes:?}");
    }
    // The first prefix that decides must decide the same as the whole input.
    for cut in 0..bytes.len() {
        match parse(&bytes[..cut]) {
            ProxyParse::Incomplete => continue,
            decided => {
                assert_eq!(decided, whole, "prefix of {cut} bytes of {bytes:?}");
                break;
            }
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_decisions_are_final() {
    let seeds: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 40000 7000\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2(0x21, 0x11, &ipv4_block()),
        v2(0x21, 0x21, &[ipv6_block(), tlvs()].concat()),
        v2(0x20, 0x00, &[]),
        v2(0x21, 0x31, &[0; 216]),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let mut bytes = if round % 4 == 0 {
            // Pure noise, mostly rejected at the first byte unless it starts right.
            let mut b = if rng.below(2) == 0 {
                b"PROXY ".to_vec()
            } else {
                SIGNATURE.to_vec()
            };
            let len = rng.below(300);
            b.extend((0..len).map(|_| rng.next() as u8));
            b
        } else {
            // A valid header with a few bytes changed, inserted or dropped, which reaches the
            // deeper paths.
            let mut b = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(b.len() + 1);
                let byte = match rng.below(4) {
                    0 => b' ',
                    1 => b"0123456789.:\r\n"[rng.below(14)],
                    _ => rng.next() as u8,
                };
                match rng.below(3) {
                    0 if at < b.len() => b[at] = byte,
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    _ => b.insert(at, byte),
                }
            }
            b
        };
        if rng.below(2) == 0 {
            bytes.extend_from_slice(APP);
        }
        check_any(&bytes);
    }
    // Entirely random bytes too, including short ones.
    for _ in 0..20_000 {
        let len = rng.below(40);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check_any(&bytes);
    }
}

#[test]
fn huge_inputs_are_decided_within_the_cap() {
    // However much arrives, the parser decides by MAX_HEADER bytes.
    let mut v1 = b"PROXY UNKNOWN ".to_vec();
    v1.resize(100_000, b'x');
    assert_eq!(invalid(&v1), ProxyError::TooLong);
    let mut v2_big = v2(0x21, 0x11, &ipv4_block());
    v2_big.resize(100_000, 0);
    assert!(matches!(
        parse(&v2_big),
        ProxyParse::Done { consumed: 28, .. }
    ));
}
