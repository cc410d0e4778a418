//! The web listener's WebSocket against RFC 6455, case by case, after the sections of the
//! Autobahn|Testsuite: 1 framing and text, 2 pings and pongs, 3 reserved bits, 4 opcodes,
//! 5 fragmentation, 6 UTF-8, 7 closing, 9 limits; then the chat's own rules over WebSocket.
//!
//! Raw frames go over a real loopback socket to an in-process server with the echo robot, and
//! everything the server sends back is compared: text messages, pongs, the close frame's code,
//! and the end of the connection after it. A case that the server takes is sent whole, in
//! 7-byte pieces and byte by byte, then closed by the client (1000, echoed). A case that the
//! server refuses is followed by a valid message, which must not be answered.
#![cfg(feature = "web")]

mod common;
mod ws;

use std::time::{Duration, Instant};

use common::GateRobot;
use robochat::{EchoRobot, Server, DEFAULT_GREETING};
use ws::{
    close, frame, frame_with, header, ping, text, upgrade_request, Len, Out, WebServer, WsClient,
    FIN, GOODBYE, MASK, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
    SHUTDOWN_NOTICE,
};

const MISSING_SEPARATOR: &str =
    "ERR expected USERNAME::TEXT (a name, two colons, then your message)";

/// The largest message of [`big_server`].
const BIG: usize = 1 << 17;

/// The echo robot with the default limits (messages of at most 4096 bytes).
fn server() -> WebServer {
    WebServer::echo()
}

/// The echo robot with messages and replies of up to [`BIG`] bytes.
fn big_server() -> WebServer {
    WebServer::start(
        Server::builder()
            .robot(EchoRobot)
            .max_line(BIG)
            .max_reply(BIG),
    )
}

/// What the server sends to `bytes` (written `chunk` bytes at a time) on a new chat, after its
/// greeting, until it closes the connection.
fn outs(server: &WebServer, bytes: &[u8], chunk: usize) -> Vec<Out> {
    let mut client = server.open();
    client.send_chopped(bytes, chunk);
    client.outs_until_closed()
}

/// The pieces a case is sent in: whole, and for short cases 7 bytes and 1 byte at a time.
fn chunk_sizes(len: usize) -> Vec<usize> {
    if len <= 4096 {
        vec![len, 7, 1]
    } else {
        vec![len, 1021]
    }
}

/// The server takes `bytes`: it answers them with `expected`, and then the client's close
/// with the same code.
fn taken(server: &WebServer, bytes: &[u8], expected: &[Out]) {
    answered(server, bytes, &close(1000, b""), expected, Out::Close(1000));
}

/// The server refuses `bytes`: it answers what came before the fault with `before`, closes
/// with `code`, and answers nothing sent after.
fn refused(server: &WebServer, bytes: &[u8], before: &[Out], code: u16) {
    let after = concat(&[text("u::after the fault"), ping(b"after the fault")]);
    answered(server, bytes, &after, before, Out::Close(code));
}

/// `bytes` and then `after`, however they are cut into reads, are answered with `expected`
/// and then `last`.
fn answered(server: &WebServer, bytes: &[u8], after: &[u8], expected: &[Out], last: Out) {
    let all = [bytes, after].concat();
    let mut want = expected.to_vec();
    want.push(last);
    for chunk in chunk_sizes(all.len()) {
        assert_eq!(
            outs(server, &all, chunk),
            want,
            "sent in pieces of {chunk}: {:02x?}",
            &bytes[..bytes.len().min(64)]
        );
    }
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ----- the handshake -----

#[test]
fn the_handshake_is_rfc_6455s_and_the_greeting_comes_first() {
    let server = server();
    let mut client = WsClient::handshake(server.web);
    assert_eq!(client.text(), DEFAULT_GREETING);
    assert_eq!(client.ask("bob", "hello"), "hello");
}

#[test]
fn extensions_and_subprotocols_offered_are_not_taken() {
    let server = server();
    let mut client = WsClient::connect(server.web);
    client.send(upgrade_request(
        &server.web.to_string(),
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
         Sec-WebSocket-Protocol: chat, superchat\r\n",
    ));
    client.expect_upgrade(); // checks that neither is in the 101
    assert_eq!(client.text(), DEFAULT_GREETING);
    // With no extension, RSV1 (a compressed message under permessage-deflate) is an error.
    client.send(frame(FIN | 0x40 | OP_TEXT, b"u::compressed?"));
    client.expect_close(1002);
}

#[test]
fn frames_may_follow_the_request_head_in_the_same_write() {
    let server = server();
    // RFC 6455 4.1 asks a client to wait for the 101, but a hasty one may not: its frames come
    // in the same segment as the head, and nothing more follows. The server keeps those bytes;
    // it must answer them (or refuse them), not leave them until the next packet comes.
    let mut client = WsClient::connect(server.web);
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = upgrade_request(&server.web.to_string(), "").into_bytes();
    bytes.extend(text("u::at once"));
    bytes.extend(ping(b"p"));
    client.send(&bytes);
    client.expect_upgrade();
    assert_eq!(client.text(), DEFAULT_GREETING);
    assert_eq!(client.text(), "at once");
    assert_eq!(client.out(), Some(Out::pong(b"p")));
}

#[test]
fn the_request_and_frames_sent_byte_by_byte_are_served() {
    let server = server();
    let mut client = WsClient::connect(server.web);
    let head = upgrade_request(&server.web.to_string(), "");
    client.send_chopped(head.as_bytes(), 1);
    client.expect_upgrade();
    assert_eq!(client.text(), DEFAULT_GREETING);
    client.send_chopped(&text("u::byte by byte"), 1);
    assert_eq!(client.text(), "byte by byte");
}

// ----- 1: framing and text -----

#[test]
fn s1_text_messages_of_every_length_encoding() {
    let server = big_server();
    for len in [4usize, 125, 126, 127, 128, 65535, 65536, BIG] {
        let message = format!("u::{}", "x".repeat(len - 3));
        let reply = Out::Text("x".repeat(len - 3));
        taken(&server, &text(&message), std::slice::from_ref(&reply));
        // A sender need not use the shortest form; the server takes the longer ones too.
        let forms: &[Len] = if len <= 0xFFFF {
            &[Len::Bits16, Len::Bits64]
        } else {
            &[Len::Bits64]
        };
        for &form in forms {
            let bytes = frame_with(FIN | OP_TEXT, message.as_bytes(), Some(MASK), form);
            taken(&server, &bytes, std::slice::from_ref(&reply));
        }
    }
}

#[test]
fn s1_replies_use_the_shortest_length_encoding() {
    // The client checks every server frame's length form; here the replies cross each bound.
    let server = big_server();
    let mut client = server.open();
    for len in [1usize, 125, 126, 65535, 65536, 70000] {
        let reply = "y".repeat(len);
        assert_eq!(client.ask("u", &reply), reply);
    }
}

#[test]
fn s1_an_empty_message_gets_no_reply() {
    let server = server();
    // An empty text message and an empty text after the name are blank, as blank lines are.
    let bytes = concat(&[text(""), text("u::"), text("u::after")]);
    taken(&server, &bytes, &[Out::text("after")]);
}

#[test]
fn s1_masking_keys_of_all_kinds_are_taken() {
    let server = server();
    for mask in [[0, 0, 0, 0], [0xff; 4], [1, 2, 3, 4], MASK] {
        let bytes = frame_with(
            FIN | OP_TEXT,
            "u::被掩码的".as_bytes(),
            Some(mask),
            Len::Shortest,
        );
        taken(&server, &bytes, &[Out::text("被掩码的")]);
    }
}

#[test]
fn s1_unmasked_frames_are_refused_with_1002() {
    let server = server();
    let unmasked = |first: u8, payload: &[u8]| frame_with(first, payload, None, Len::Shortest);
    for bytes in [
        unmasked(FIN | OP_TEXT, b"u::unmasked"),
        unmasked(FIN | OP_TEXT, b""),
        unmasked(FIN | OP_PING, b"p"),
        unmasked(FIN | OP_PONG, b""),
        unmasked(FIN | OP_CLOSE, &1000u16.to_be_bytes()),
        unmasked(OP_TEXT, b"u::fragment"),
    ] {
        refused(&server, &bytes, &[], 1002);
    }
    // After a message that was answered.
    let bytes = concat(&[text("u::masked"), unmasked(FIN | OP_TEXT, b"u::not")]);
    refused(&server, &bytes, &[Out::text("masked")], 1002);
}

#[test]
fn s1_binary_messages_are_refused_with_1003() {
    let server = server();
    for bytes in [
        frame(FIN | OP_BINARY, b""),
        frame(FIN | OP_BINARY, b"u::binary"),
        frame(FIN | OP_BINARY, &[0xff; 200]),
        concat(&[frame(OP_BINARY, b"u::"), frame(FIN | OP_CONTINUATION, b"x")]),
    ] {
        refused(&server, &bytes, &[], 1003);
    }
    let bytes = concat(&[text("u::text first"), frame(FIN | OP_BINARY, b"\x00")]);
    refused(&server, &bytes, &[Out::text("text first")], 1003);
}

#[test]
fn s1_pipelined_messages_are_answered_in_order() {
    let server = server();
    let bytes: Vec<u8> = (0..100)
        .flat_map(|i| text(&format!("u::message {i}")))
        .collect();
    let expected: Vec<Out> = (0..100)
        .map(|i| Out::Text(format!("message {i}")))
        .collect();
    taken(&server, &bytes, &expected);
    // A thousand in one write, read as they come.
    let mut client = server.open();
    let bytes: Vec<u8> = (0..1000).flat_map(|i| text(&format!("u::{i}"))).collect();
    client.send(&bytes);
    for i in 0..1000 {
        assert_eq!(client.text(), i.to_string());
    }
}

// ----- 2: pings and pongs -----

#[test]
fn s2_pings_are_answered_with_the_same_payload() {
    let server = server();
    let all_bytes: Vec<u8> = (0..=124u8).map(|b| b.wrapping_mul(97)).collect();
    for payload in [
        b"".to_vec(),
        b"Hello, world!".to_vec(),
        "你好".as_bytes().to_vec(),
        vec![0x00, 0xff, 0xfe, 0x80], // a ping's payload need not be UTF-8
        all_bytes,
        vec![b'*'; 125],
    ] {
        taken(&server, &ping(&payload), &[Out::Pong(payload.clone())]);
    }
}

#[test]
fn s2_pings_in_a_row_get_pongs_in_order() {
    let server = server();
    let bytes: Vec<u8> = (0..10)
        .flat_map(|i| ping(format!("ping {i}").as_bytes()))
        .collect();
    let expected: Vec<Out> = (0..10)
        .map(|i| Out::Pong(format!("ping {i}").into_bytes()))
        .collect();
    taken(&server, &bytes, &expected);
}

#[test]
fn s2_a_ping_between_messages_is_answered_in_its_place() {
    let server = server();
    let bytes = concat(&[text("u::one"), ping(b"between"), text("u::two")]);
    taken(
        &server,
        &bytes,
        &[Out::text("one"), Out::pong(b"between"), Out::text("two")],
    );
}

/// Opens the gate when dropped, so that a failing test does not leave a worker waiting at it
/// (and the server's shutdown waiting for the worker).
struct OpenOnDrop(GateRobot);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A server whose robot answers `wait...` only when the test opens the gate.
fn gated_server() -> (WebServer, OpenOnDrop) {
    let gate = GateRobot::default();
    let server = WebServer::start(Server::builder().robot(gate.clone()).workers(2));
    (server, OpenOnDrop(gate))
}

#[test]
fn s2_a_ping_is_answered_while_a_reply_is_awaited() {
    // RFC 6455 5.5.2: a pong "as soon as is practical". A robot may take seconds (a language
    // model, up to --robot-timeout); a client's keep-alive ping must not wait for it, or the
    // client gives up on a connection that is fine.
    let (server, gate) = gated_server();
    let mut client = server.open();
    client.send_text("u::wait for the robot");
    gate.0.wait_for_waiting(1);
    client.send(ping(b"still there?"));
    let ready = common::poll_events(client.stream(), libc::POLLIN, Duration::from_secs(5));
    assert!(
        ready & libc::POLLIN != 0,
        "no pong within 5 s while the robot thinks"
    );
    assert_eq!(client.out(), Some(Out::pong(b"still there?")));
    gate.0.open();
    assert_eq!(client.text(), "echo: wait for the robot");
}

#[test]
fn s2_unsolicited_pongs_are_ignored() {
    let server = server();
    let pong = |data: &[u8]| frame(FIN | OP_PONG, data);
    taken(&server, &pong(b""), &[]);
    taken(&server, &pong(b"unsolicited"), &[]);
    taken(&server, &pong(&[b'p'; 125]), &[]);
    let bytes = concat(&[pong(b"first"), ping(b"second"), text("u::third")]);
    taken(&server, &bytes, &[Out::pong(b"second"), Out::text("third")]);
}

#[test]
fn s2_control_frames_longer_than_125_bytes_are_refused_with_1002() {
    let server = server();
    refused(&server, &ping(&[b'x'; 126]), &[], 1002);
    refused(&server, &frame(FIN | OP_PONG, &[b'x'; 126]), &[], 1002);
    let mut long_close = 1000u16.to_be_bytes().to_vec();
    long_close.extend_from_slice(&[b'r'; 124]);
    refused(&server, &frame(FIN | OP_CLOSE, &long_close), &[], 1002);
    // Refused from the header: a ping announcing 64 KiB gets its close without the payload.
    let mut client = server.open();
    client.send(header(FIN | OP_PING, 65536, Some(MASK), Len::Shortest));
    client.expect_close(1002);
}

// ----- 3: reserved bits -----

#[test]
fn s3_reserved_bits_are_refused_with_1002() {
    let server = server();
    for rsv in [0x40u8, 0x20, 0x10, 0x60, 0x50, 0x30, 0x70] {
        refused(&server, &frame(FIN | rsv | OP_TEXT, b"u::rsv"), &[], 1002);
        refused(&server, &frame(FIN | rsv | OP_PING, b"rsv"), &[], 1002);
        refused(&server, &frame(FIN | rsv | OP_PONG, b""), &[], 1002);
        refused(&server, &frame(FIN | rsv | OP_BINARY, b"\x01"), &[], 1002);
        refused(
            &server,
            &frame(FIN | rsv | OP_CLOSE, &1000u16.to_be_bytes()),
            &[],
            1002,
        );
        // After a message answered; and on a continuation.
        let bytes = concat(&[text("u::fine"), frame(FIN | rsv | OP_TEXT, b"u::not")]);
        refused(&server, &bytes, &[Out::text("fine")], 1002);
        let bytes = concat(&[
            frame(OP_TEXT, b"u::a"),
            frame(FIN | rsv | OP_CONTINUATION, b"b"),
        ]);
        refused(&server, &bytes, &[], 1002);
    }
}

// ----- 4: opcodes -----

#[test]
fn s4_reserved_opcodes_are_refused_with_1002() {
    let server = server();
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        refused(&server, &frame(FIN | opcode, b""), &[], 1002);
        refused(&server, &frame(FIN | opcode, b"reserved opcode"), &[], 1002);
        refused(&server, &frame(opcode, b"not final"), &[], 1002);
        let bytes = concat(&[text("u::fine"), frame(FIN | opcode, b""), ping(b"p")]);
        refused(&server, &bytes, &[Out::text("fine")], 1002);
        // Inside a fragmented message.
        let bytes = concat(&[frame(OP_TEXT, b"u::a"), frame(FIN | opcode, b"")]);
        refused(&server, &bytes, &[], 1002);
    }
}

// ----- 5: fragmentation -----

#[test]
fn s5_fragmented_text_is_one_message() {
    let server = server();
    let two = concat(&[
        frame(OP_TEXT, b"u::frag"),
        frame(FIN | OP_CONTINUATION, b"mented"),
    ]);
    taken(&server, &two, &[Out::text("fragmented")]);
    // Many fragments, some empty, the first one too.
    let many = concat(&[
        frame(OP_TEXT, b""),
        frame(OP_CONTINUATION, b"u"),
        frame(OP_CONTINUATION, b":"),
        frame(OP_CONTINUATION, b""),
        frame(OP_CONTINUATION, b":"),
        frame(OP_CONTINUATION, b"one "),
        frame(OP_CONTINUATION, b"by "),
        frame(FIN | OP_CONTINUATION, b"one"),
    ]);
    taken(&server, &many, &[Out::text("one by one")]);
    // The final fragment empty.
    let empty_end = concat(&[frame(OP_TEXT, b"u::x"), frame(FIN | OP_CONTINUATION, b"")]);
    taken(&server, &empty_end, &[Out::text("x")]);
    // Every byte its own fragment, and messages before and after.
    let message = "u::每个字节一个片段";
    let mut bytes = text("u::before");
    let last = message.len() - 1;
    for (i, byte) in message.bytes().enumerate() {
        let opcode = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
        let fin = if i == last { FIN } else { 0 };
        bytes.extend(frame(fin | opcode, &[byte]));
    }
    bytes.extend(text("u::after"));
    taken(
        &server,
        &bytes,
        &[
            Out::text("before"),
            Out::text("每个字节一个片段"),
            Out::text("after"),
        ],
    );
}

#[test]
fn s5_a_fragmented_message_survives_quiet_moments() {
    // Between fragments the connection has nothing in flight: what the decoder knows of the
    // message (its length, a character cut in two) and the parts so far must stay.
    let server = server();
    let mut client = server.open();
    client.send(frame(OP_TEXT, b"u::a\xe4"));
    for (i, part) in [&b"\xb8"[..], b"\xadb", b"", b"c"].iter().enumerate() {
        // A round trip: everything sent so far has been read and dealt with.
        client.send(ping(&[i as u8]));
        assert_eq!(client.out(), Some(Out::pong(&[i as u8])));
        client.send(frame(OP_CONTINUATION, part));
    }
    client.send(ping(b"last"));
    assert_eq!(client.out(), Some(Out::pong(b"last")));
    client.send(frame(FIN | OP_CONTINUATION, b"d"));
    assert_eq!(client.text(), "a中bcd");
}

#[test]
fn s5_control_frames_between_fragments_are_answered_at_once() {
    let server = server();
    // A ping between two fragments: its pong comes before the message's reply.
    let bytes = concat(&[
        frame(OP_TEXT, b"u::frag"),
        ping(b"in between"),
        frame(FIN | OP_CONTINUATION, b"mented"),
    ]);
    taken(
        &server,
        &bytes,
        &[Out::pong(b"in between"), Out::text("fragmented")],
    );
    // A pong between them is ignored.
    let bytes = concat(&[
        frame(OP_TEXT, b"u::frag"),
        frame(FIN | OP_PONG, b"ignored"),
        frame(FIN | OP_CONTINUATION, b"mented"),
    ]);
    taken(&server, &bytes, &[Out::text("fragmented")]);
    // A ping between every two of ten fragments.
    let mut bytes = frame(OP_TEXT, b"u::0");
    let mut expected = Vec::new();
    for i in 1..10 {
        bytes.extend(ping(format!("p{i}").as_bytes()));
        expected.push(Out::Pong(format!("p{i}").into_bytes()));
        let fin = if i == 9 { FIN } else { 0 };
        bytes.extend(frame(fin | OP_CONTINUATION, i.to_string().as_bytes()));
    }
    expected.push(Out::text("0123456789"));
    taken(&server, &bytes, &expected);
}

#[test]
fn s5_fragmented_control_frames_are_refused_with_1002() {
    let server = server();
    for opcode in [OP_PING, OP_PONG, OP_CLOSE] {
        let bytes = concat(&[frame(opcode, b""), frame(FIN | OP_CONTINUATION, b"")]);
        refused(&server, &bytes, &[], 1002);
        let bytes = concat(&[
            frame(opcode, b"frag"),
            frame(FIN | OP_CONTINUATION, b"ment"),
        ]);
        refused(&server, &bytes, &[], 1002);
    }
    let bytes = concat(&[frame(OP_CLOSE, &1000u16.to_be_bytes())]);
    refused(&server, &bytes, &[], 1002);
}

#[test]
fn s5_continuations_without_a_message_are_refused_with_1002() {
    let server = server();
    for bytes in [
        frame(FIN | OP_CONTINUATION, b"u::orphan"),
        frame(OP_CONTINUATION, b"u::orphan"),
        frame(FIN | OP_CONTINUATION, b""),
        concat(&[
            frame(OP_CONTINUATION, b"u::"),
            frame(FIN | OP_CONTINUATION, b"x"),
        ]),
    ] {
        refused(&server, &bytes, &[], 1002);
    }
    // After a whole message has ended, a continuation has nothing to continue.
    let bytes = concat(&[text("u::done"), frame(FIN | OP_CONTINUATION, b"more")]);
    refused(&server, &bytes, &[Out::text("done")], 1002);
    let bytes = concat(&[
        frame(OP_TEXT, b"u::a"),
        frame(FIN | OP_CONTINUATION, b"b"),
        frame(FIN | OP_CONTINUATION, b"c"),
    ]);
    refused(&server, &bytes, &[Out::text("ab")], 1002);
}

#[test]
fn s5_a_new_message_inside_a_fragmented_one_is_refused_with_1002() {
    let server = server();
    for second in [
        frame(FIN | OP_TEXT, b"u::whole"),
        frame(OP_TEXT, b"u::frag"),
        frame(FIN | OP_TEXT, b""),
        frame(FIN | OP_BINARY, b"b"),
        frame(OP_BINARY, b"b"),
    ] {
        let bytes = concat(&[frame(OP_TEXT, b"u::started"), second]);
        refused(&server, &bytes, &[], 1002);
    }
}

// ----- 6: UTF-8 -----

/// Valid UTF-8 texts of every character length, and the edges of the valid ranges.
const VALID_TEXTS: [&str; 8] = [
    "κόσμε",
    "你好，世界",
    "😀 🦀 𝄞",
    "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
    "\u{d7ff}\u{e000}\u{fffd}\u{feff}",
    "tab\tand\u{0}nul",
    "Ünïcödé mixed with ASCII and 中文 and 😀",
    "ascii only",
];

#[test]
fn s6_valid_utf8_is_echoed_exactly() {
    let server = server();
    for text_ in VALID_TEXTS {
        taken(&server, &text(&format!("u::{text_}")), &[Out::text(text_)]);
    }
}

#[test]
fn s6_valid_utf8_split_between_fragments_at_every_byte() {
    let server = server();
    let message = format!("u::{}", VALID_TEXTS[3]);
    let bytes = message.as_bytes();
    for cut in 1..bytes.len() {
        let two = concat(&[
            frame(OP_TEXT, &bytes[..cut]),
            frame(FIN | OP_CONTINUATION, &bytes[cut..]),
        ]);
        let mut client = server.open();
        client.send(&two);
        assert_eq!(client.text(), VALID_TEXTS[3], "cut at {cut}");
    }
    // Every byte of a text of 2-, 3- and 4-byte characters its own fragment.
    let message = "u::κ中😀";
    let last = message.len() - 1;
    let bytes: Vec<u8> = message
        .bytes()
        .enumerate()
        .flat_map(|(i, byte)| {
            let opcode = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
            frame(if i == last { FIN } else { 0 } | opcode, &[byte])
        })
        .collect();
    taken(&server, &bytes, &[Out::text("κ中😀")]);
}

/// Byte sequences that are not UTF-8 (Markus Kuhn's decoder test, as Autobahn's 6.x uses).
const INVALID: [&[u8]; 16] = [
    b"\x80",                 // a lone continuation byte
    b"\xbf",                 // another
    b"\xc0\xaf",             // an overlong '/'
    b"\xe0\x80\xaf",         // another
    b"\xf0\x80\x80\xaf",     // and another
    b"\xc1\xbf",             // an overlong 2-byte character
    b"\xed\xa0\x80",         // a UTF-16 surrogate
    b"\xed\xbf\xbf",         // another
    b"\xf4\x90\x80\x80",     // past U+10FFFF
    b"\xf8\x88\x80\x80\x80", // a 5-byte form
    b"\xfe",                 // never in UTF-8
    b"\xff",
    b"\xe4\xb8",         // a character cut short at the message's end
    b"\xe4\x41",         // a character broken by ASCII
    b"\xce\xba\xe1\x80", // valid, then cut short
    b"\xf0\x9f\x98",     // a 4-byte character cut short
];

#[test]
fn s6_invalid_utf8_in_a_message_is_refused_with_1007() {
    let server = server();
    for bad in INVALID {
        let mut payload = b"u::".to_vec();
        payload.extend_from_slice(bad);
        refused(&server, &frame(FIN | OP_TEXT, &payload), &[], 1007);
        // Also with valid text after it.
        payload.extend_from_slice("ok 中文".as_bytes());
        if std::str::from_utf8(&payload).is_err() {
            refused(&server, &frame(FIN | OP_TEXT, &payload), &[], 1007);
        }
    }
    // Before the separator, too: the whole message must be text.
    refused(&server, &frame(FIN | OP_TEXT, b"\xff::x"), &[], 1007);
    let bytes = concat(&[text("u::fine"), frame(FIN | OP_TEXT, b"u::\xc0\xaf")]);
    refused(&server, &bytes, &[Out::text("fine")], 1007);
}

#[test]
fn s6_invalid_utf8_split_between_fragments_is_refused_with_1007() {
    let server = server();
    for bad in INVALID {
        let mut payload = b"u::x".to_vec();
        payload.extend_from_slice(bad);
        payload.extend_from_slice(b"y");
        for cut in 1..payload.len() {
            let bytes = concat(&[
                frame(OP_TEXT, &payload[..cut]),
                frame(FIN | OP_CONTINUATION, &payload[cut..]),
            ]);
            let mut client = server.open();
            client.send(&bytes);
            client.expect_close(1007);
        }
    }
}

#[test]
fn s6_invalid_utf8_fails_fast_without_waiting_for_the_message_to_end() {
    // Autobahn 6.4: the fragment with the bad byte closes the connection; the rest of the
    // message never comes.
    let server = server();
    for bad in [&b"\xff"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90"] {
        let mut payload = "u::κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(bad);
        let mut client = server.open();
        client.send(frame(OP_TEXT, &payload));
        client.expect_close(1007);
        // In a later fragment.
        let mut client = server.open();
        client.send(frame(OP_TEXT, b"u::fine so far"));
        client.send(frame(OP_CONTINUATION, bad));
        client.expect_close(1007);
    }
    // A fragment whose last character is cut is fine while the message goes on...
    let mut client = server.open();
    client.send(frame(OP_TEXT, b"u::\xe4"));
    client.send(ping(b"still open"));
    assert_eq!(client.out(), Some(Out::pong(b"still open")));
    // ...and not when the message ends there.
    client.send(frame(FIN | OP_CONTINUATION, b"\xb8"));
    client.expect_close(1007);
}

// ----- 7: closing -----

#[test]
fn s7_a_close_is_echoed_with_its_code_and_the_connection_ends() {
    let server = server();
    let mut client = server.open();
    client.send(close(1000, b"bye"));
    let reason = client.expect_close(1000);
    assert!(reason.len() <= 123, "{reason}");
    // With no payload, the echo says 1000.
    let mut client = server.open();
    client.send(frame(FIN | OP_CLOSE, b""));
    client.expect_close(1000);
    // With a reason of the largest size, valid UTF-8.
    let reason = "再".repeat(41); // 123 bytes
    let mut client = server.open();
    client.send(close(1001, reason.as_bytes()));
    client.expect_close(1001);
}

#[test]
fn s7_valid_close_codes_are_echoed() {
    let server = server();
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let mut client = server.open();
        client.send(close(code, b"a reason"));
        client.expect_close(code);
    }
}

#[test]
fn s7_invalid_close_codes_are_refused_with_1002() {
    let server = server();
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        refused(&server, &close(code, b""), &[], 1002);
    }
}

#[test]
fn s7_a_close_payload_of_one_byte_is_refused_with_1002() {
    let server = server();
    refused(&server, &frame(FIN | OP_CLOSE, &[0x03]), &[], 1002);
    refused(&server, &frame(FIN | OP_CLOSE, &[0xe8]), &[], 1002);
}

#[test]
fn s7_a_close_reason_that_is_not_utf8_is_refused_with_1007() {
    let server = server();
    for bad in INVALID {
        refused(&server, &close(1000, bad), &[], 1007);
    }
}

#[test]
fn s7_nothing_after_a_close_is_answered() {
    let server = server();
    // Messages, pings and even a second close after the client's close.
    let bytes = concat(&[
        text("u::before"),
        close(1000, b""),
        text("u::after"),
        ping(b"after"),
        close(1001, b""),
    ]);
    assert_eq!(
        outs(&server, &bytes, bytes.len()),
        [Out::text("before"), Out::Close(1000)]
    );
    // Garbage after a close is not looked at either.
    let mut bytes = close(3000, b"");
    bytes.extend_from_slice(&[0xff; 100]);
    assert_eq!(outs(&server, &bytes, bytes.len()), [Out::Close(3000)]);
}

/// RFC 6455 5.5.1 lets an endpoint finish its current message before its close; the client's
/// close says it sends nothing more, not that it wants nothing more: like a line client that
/// closes its side, it gets the reply to what it sent (within `--robot-timeout`), then the close.
#[test]
fn s7_a_close_after_a_message_waits_for_its_reply() {
    let (server, gate) = gated_server();
    let mut client = server.open();
    client.send_text("u::wait for it");
    gate.0.wait_for_waiting(1);
    client.send(close(1000, b""));
    gate.0.open();
    assert_eq!(
        client.outs_until_closed(),
        [Out::text("echo: wait for it"), Out::Close(1000)]
    );
}

#[test]
fn s7_a_close_inside_a_fragmented_message_ends_it_unanswered() {
    let server = server();
    let bytes = concat(&[frame(OP_TEXT, b"u::never "), close(1000, b"")]);
    assert_eq!(outs(&server, &bytes, bytes.len()), [Out::Close(1000)]);
}

#[test]
fn s7_a_client_that_closes_without_a_close_frame_is_closed_too() {
    let server = server();
    let mut client = server.open();
    client.send(text("u::last words"));
    client.stream().shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.text(), "last words");
    client.expect_eof();
    // The server is still serving.
    assert_eq!(server.open().ask("u", "next"), "next");
}

// ----- 9: limits -----

#[test]
fn s9_a_message_of_max_line_bytes_is_taken_and_one_more_is_refused_with_1009() {
    let server = server(); // 4096 bytes
    let exact = format!("u::{}", "m".repeat(4093));
    taken(&server, &text(&exact), &[Out::Text("m".repeat(2000))]);
    let over = format!("u::{}", "m".repeat(4094));
    refused(&server, &text(&over), &[], 1009);
    // Fragments count together.
    let parts = concat(&[
        frame(OP_TEXT, b"u::"),
        frame(OP_CONTINUATION, &[b'm'; 2000]),
        frame(FIN | OP_CONTINUATION, &[b'm'; 2093]),
    ]);
    taken(&server, &parts, &[Out::Text("m".repeat(2000))]);
    let parts = concat(&[
        frame(OP_TEXT, b"u::"),
        frame(OP_CONTINUATION, &[b'm'; 2000]),
        frame(FIN | OP_CONTINUATION, &[b'm'; 2094]),
    ]);
    refused(&server, &parts, &[], 1009);
}

#[test]
fn s9_a_message_too_long_is_refused_from_its_header_alone() {
    let server = server();
    for len in [4097u64, 1 << 20, 100 << 20, 1 << 40, (1 << 63) - 1] {
        let mut client = server.open();
        client.send(header(FIN | OP_TEXT, len, Some(MASK), Len::Shortest));
        client.expect_close(1009);
    }
    // The fragment that would take a message past the limit: its header alone.
    let mut client = server.open();
    client.send(frame(OP_TEXT, &[b'x'; 4000]));
    client.send(header(OP_CONTINUATION, 97, Some(MASK), Len::Shortest));
    client.expect_close(1009);
    // And the limit stays what it is after a fragmented message within it.
    let mut client = server.open();
    client.send(frame(OP_TEXT, b"u::"));
    client.send(frame(FIN | OP_CONTINUATION, &[b'x'; 4093]));
    assert_eq!(client.text(), "x".repeat(2000));
    client.send(header(FIN | OP_TEXT, 4097, Some(MASK), Len::Shortest));
    client.expect_close(1009);
}

#[test]
fn s9_a_64_bit_length_with_its_top_bit_set_is_refused_with_1002() {
    let server = server();
    let mut client = server.open();
    let mut bytes = vec![FIN | OP_TEXT, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    client.send(&bytes);
    client.expect_close(1002);
}

#[test]
fn s9_large_messages_in_pieces_of_every_size() {
    let server = big_server();
    let message = format!("u::{}", "大".repeat((BIG - 3) / 3));
    let bytes = text(&message);
    for chunk in [1 << 16, 4096, 1000, 997, 64, 13] {
        let mut client = server.open();
        client.send_chopped(&bytes, chunk);
        assert_eq!(client.text(), message[3..], "pieces of {chunk}");
    }
    // Fragmented into 64 parts, each cut inside a character.
    let payload = message.as_bytes();
    let size = payload.len().div_ceil(64) + 1;
    let parts: Vec<&[u8]> = payload.chunks(size).collect();
    let mut bytes = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
        let fin = if i == parts.len() - 1 { FIN } else { 0 };
        bytes.extend(frame(fin | opcode, part));
    }
    let mut client = server.open();
    client.send(&bytes);
    assert_eq!(client.text(), message[3..]);
}

#[test]
fn s9_many_large_messages_pipelined_are_answered_in_order() {
    let server = big_server();
    let mut client = server.open();
    let messages: Vec<String> = (0..20)
        .map(|i| format!("u::{i} {}", "z".repeat(30_000)))
        .collect();
    let bytes: Vec<u8> = messages.iter().flat_map(|m| text(m)).collect();
    // Written by a thread: the server stops reading while its replies wait, so writing all of
    // it before reading would deadlock.
    let mut writer = client.stream().try_clone().unwrap();
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &bytes));
    for message in &messages {
        assert_eq!(client.text(), message[3..]);
    }
    sender.join().unwrap().unwrap();
}

// ----- the chat over WebSocket -----

#[test]
fn exit_says_goodbye_and_closes_with_1000() {
    let server = server();
    let mut client = server.open();
    assert_eq!(client.ask("bob", "hi"), "hi");
    client.send_text("bob::exit");
    assert_eq!(client.text(), GOODBYE);
    client.expect_close(1000);
    // Whatever follows `exit` in the same write is not answered.
    let bytes = concat(&[text("bob:: exit "), text("bob::after"), ping(b"after")]);
    assert_eq!(
        outs(&server, &bytes, bytes.len()),
        [Out::text(GOODBYE), Out::Close(1000)]
    );
}

#[test]
fn sixteen_bad_messages_in_a_row_get_a_last_error_and_close_1008() {
    let server = server();
    let mut client = server.open();
    let bytes: Vec<u8> = (0..20)
        .flat_map(|i| text(&format!("no separator {i}")))
        .collect();
    client.send(&bytes);
    for i in 1..16 {
        assert_eq!(client.text(), MISSING_SEPARATOR, "bad message {i}");
    }
    let last = client.text();
    assert!(last.starts_with(MISSING_SEPARATOR), "{last}");
    assert!(last.contains("16 bad lines in a row; closing"), "{last}");
    client.expect_close(1008);
}

#[test]
fn bad_messages_get_errors_and_the_chat_goes_on() {
    let server = server();
    let mut client = server.open();
    let too_long_name = format!("{}::x", "n".repeat(65));
    for round in 0..3 {
        for bad in ["no separator", "::no name", &too_long_name] {
            for _ in 0..5 {
                client.send_text(bad);
                assert!(client.text().starts_with("ERR "), "{bad}");
            }
        }
        assert_eq!(
            client.ask("u", &format!("round {round}")),
            format!("round {round}")
        );
    }
}

#[test]
fn shutdown_says_so_and_closes_with_1001() {
    let server = server();
    let mut chatting = server.open();
    let mut mid_message = server.open();
    mid_message.send(frame(OP_TEXT, b"u::unfinished"));
    let mut mid_request = WsClient::connect(server.web);
    mid_request.send("GET /ws HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(chatting.ask("u", "before"), "before");
    server.shutdown();
    assert_eq!(chatting.text(), SHUTDOWN_NOTICE);
    chatting.expect_close(1001);
    assert_eq!(mid_message.text(), SHUTDOWN_NOTICE);
    mid_message.expect_close(1001);
    // A connection still sending its request is told with a 503.
    let response = String::from_utf8_lossy(&mid_request.read_to_end()).into_owned();
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    drop(mid_request); // the server lingers until its client closes too
    server.stop().unwrap();
}

#[test]
fn an_idle_chat_is_told_and_closed_with_1000() {
    let server = WebServer::start(
        Server::builder()
            .robot(EchoRobot)
            .idle_timeout(Duration::from_millis(500)),
    );
    let mut client = server.open();
    assert_eq!(client.ask("u", "hi"), "hi");
    let started = Instant::now();
    let notice = client.text();
    assert!(notice.contains("idle"), "{notice}");
    client.expect_close(1000);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[test]
fn web_and_line_clients_are_served_side_by_side() {
    let server = server();
    let mut web = server.open();
    let mut line = common::Client::connect(server.addr);
    for i in 0..20 {
        assert_eq!(web.ask("w", &format!("web {i}")), format!("web {i}"));
        assert_eq!(line.ask("l", &format!("line {i}")), format!("line {i}"));
    }
}

#[test]
fn web_chats_are_served_on_every_loop() {
    let server = WebServer::start(Server::builder().robot(EchoRobot).loops(2));
    let mut chats: Vec<WsClient> = (0..16).map(|_| server.open()).collect();
    for round in 0..3 {
        for (i, chat) in chats.iter_mut().enumerate() {
            let text = format!("chat {i} round {round}");
            assert_eq!(chat.ask("u", &text), text);
        }
    }
}
