//! Fuzzes the framer as a connection drives it: arbitrary bytes, cut into reads at arbitrary
//! points, with bursts ending anywhere. It must never panic, never consume more than it was
//! given, and never leave more than one unfinished line (max_line + 1 bytes) pending.
#![no_main]

use libfuzzer_sys::fuzz_target;
use robochat::protocol::{Framer, Framing};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let framing = match control % 3 {
        0 => Framing::Auto,
        1 => Framing::Line,
        _ => Framing::Legacy,
    };
    let max_line = 16 + usize::from(control >> 2) * 8;
    // The second byte sets the read size; a set high bit on a byte of input ends a burst
    // after the read that holds it, so burst boundaries move with the input.
    let Some((&size, input)) = rest.split_first() else {
        return;
    };
    let read_size = usize::from(size % 64) + 1;
    let mut framer = Framer::new(framing, max_line);
    let mut pending: Vec<u8> = Vec::new();
    for read in input.chunks(read_size) {
        pending.extend_from_slice(read);
        let burst_ends = read.last().is_some_and(|b| b & 0x80 != 0);
        let mut used = 0;
        let mut burst = burst_ends;
        loop {
            let decoded = framer.next(&pending[used..], &mut burst, false);
            if decoded.needs_more() {
                break;
            }
            assert!(decoded.consumed <= pending.len() - used);
            used += decoded.consumed;
        }
        pending.drain(..used);
        assert!(pending.len() <= max_line + 1, "{} bytes pending", pending.len());
    }
    let decoded = framer.next(&pending, &mut false, true);
    assert!(decoded.consumed <= pending.len());
});
