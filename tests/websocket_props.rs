//! Properties of the WebSocket frame decoder, over generated input: however a client cuts its
//! messages into fragments (even inside a character), mixes in pings, and however TCP cuts the
//! frames into reads, the same messages come out; and no input can panic it.

use proptest::prelude::*;
use robochat::websocket::{CloseCode, Decoded, Decoder, Event};

const MAX_MESSAGE: usize = 512;

/// A client's frame, masked with `mask`.
fn frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The frames of `text` cut at `cuts` (byte offsets, in any order), with a ping after each part.
fn fragmented(text: &str, cuts: &[usize], mask: [u8; 4]) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    let parts: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
    let parts: Vec<&[u8]> = if parts.is_empty() { vec![&[]] } else { parts };
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        let fin = if i + 1 == parts.len() { 0x80 } else { 0 };
        out.extend(frame(fin | opcode, part, mask));
        out.extend(frame(0x89, b"p", mask));
    }
    out
}

/// The messages a decoder makes of `bytes` read `read_size` at a time, and its close code.
fn decode(bytes: &[u8], read_size: usize) -> (Vec<String>, Option<CloseCode>) {
    let mut decoder = Decoder::new();
    let mut pending = Vec::new();
    let mut message = Vec::new();
    let mut messages = Vec::new();
    for read in bytes.chunks(read_size.max(1)) {
        pending.extend_from_slice(read);
        loop {
            match decoder.next(&mut pending, MAX_MESSAGE) {
                Err(code) => return (messages, Some(code)),
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Frame { consumed, event }) => {
                    if let Event::Text { data, fin } = event {
                        message.extend_from_slice(data);
                        if fin {
                            messages.push(String::from_utf8(std::mem::take(&mut message)).unwrap());
                        }
                    }
                    pending.drain(..consumed);
                }
            }
        }
    }
    (messages, None)
}

proptest! {
    #[test]
    fn messages_survive_any_fragmentation_and_any_reads(
        texts in proptest::collection::vec("[a-z小明::😀 ]{0,60}", 1..6),
        cuts in proptest::collection::vec(0usize..400, 0..5),
        mask in any::<[u8; 4]>(),
        read_size in 1usize..40,
    ) {
        let bytes: Vec<u8> = texts.iter().flat_map(|t| fragmented(t, &cuts, mask)).collect();
        prop_assert_eq!(decode(&bytes, read_size), (texts, None));
    }

    #[test]
    fn no_input_panics_it(bytes in proptest::collection::vec(any::<u8>(), 0..600), read_size in 1usize..64) {
        let _ = decode(&bytes, read_size);
    }
}
