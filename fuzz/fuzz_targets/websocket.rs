//! Fuzzes the WebSocket frame decoder as a connection drives it: arbitrary bytes, cut into reads
//! at arbitrary points. It must never panic, never consume more than it was given, hand out only
//! messages that are valid UTF-8 once whole and no larger than the limit, and never need more
//! than one frame (the limit and a header) pending.
#![no_main]

use libfuzzer_sys::fuzz_target;
use robochat::websocket::{Decoded, Decoder, Event, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let max_message = 16 + usize::from(control >> 3) * 8;
    let read_size = usize::from(control & 0x07) * 7 + 1;
    let mut decoder = Decoder::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut message: Vec<u8> = Vec::new();
    for read in input.chunks(read_size) {
        pending.extend_from_slice(read);
        loop {
            let before = pending.len();
            match decoder.next(&mut pending, max_message) {
                Err(_) => return, // the connection is closed
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Frame { consumed, event }) => {
                    assert!(consumed > 0 && consumed <= before);
                    if let Event::Text { data, fin } = event {
                        message.extend_from_slice(data);
                        assert!(message.len() <= max_message);
                        if fin {
                            assert!(std::str::from_utf8(&message).is_ok());
                            message.clear();
                        }
                    }
                    pending.drain(..consumed);
                }
            }
        }
        assert!(pending.len() <= max_message.max(125) + MAX_HEADER + read_size);
    }
});
