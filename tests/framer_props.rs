//! Properties of the framer, over generated input: however the bytes are cut into reads, the
//! same messages come out in the same order; and no input at all can panic it or make it keep
//! more than a line's worth of bytes.

use proptest::prelude::*;
use robochat::protocol::{Frame, Framer, Framing};

const MAX_LINE: usize = 256;

/// What one connection's framer makes of `reads`, the way the server drives it: the bytes not
/// yet consumed stay pending, and each read is appended to them. `burst_ends[i]` says whether
/// the socket had nothing more after read `i`. Returns the frames (owned) and the most bytes
/// left pending after a read was framed.
fn frame_reads(framing: Framing, reads: &[Vec<u8>], burst_ends: &[bool]) -> (Vec<String>, usize) {
    let mut framer = Framer::new(framing, MAX_LINE);
    let mut pending: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut most_kept = 0;
    for (i, read) in reads.iter().enumerate() {
        pending.extend_from_slice(read);
        let burst_ended = burst_ends.get(i).copied().unwrap_or(false);
        let mut used = 0;
        let mut burst = burst_ended;
        loop {
            let decoded = framer.next(&pending[used..], &mut burst, false);
            if decoded.needs_more() {
                break;
            }
            assert!(decoded.consumed <= pending.len() - used);
            used += decoded.consumed;
            if let Some(frame) = decoded.frame {
                frames.push(describe(frame));
            }
        }
        pending.drain(..used);
        most_kept = most_kept.max(pending.len());
    }
    (frames, most_kept)
}

fn describe(frame: Frame<'_>) -> String {
    match frame {
        Frame::Message { user, text } => format!("{user}::{text}"),
        Frame::Exit => "exit".into(),
        Frame::Blank => "blank".into(),
        Frame::Invalid(e) => format!("error: {e}"),
    }
}

/// Cuts `bytes` at the given points (taken modulo its length).
fn cut(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

fn username() -> impl Strategy<Value = String> {
    // Letters, digits and CJK; never `::` or a line break.
    proptest::string::string_regex("[a-zA-Z0-9_小明用户]{1,16}").unwrap()
}

fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 ,.?!:你好世界]{1,60}")
        .unwrap()
        .prop_filter("not the exit command", |t| t.trim() != "exit")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn valid_messages_survive_any_cutting(
        messages in proptest::collection::vec((username(), text(), any::<bool>()), 1..30),
        points in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut stream = Vec::new();
        for (user, text, crlf) in &messages {
            stream.extend_from_slice(format!("{user}::{text}").as_bytes());
            stream.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
        let expected: Vec<String> =
            messages.iter().map(|(u, t, _)| format!("{u}::{t}")).collect();
        let reads = cut(&stream, &points);
        let (frames, _) = frame_reads(Framing::Line, &reads, &[]);
        prop_assert_eq!(frames, expected);
    }

    #[test]
    fn any_bytes_never_panic_and_never_pile_up(
        bytes in proptest::collection::vec(any::<u8>(), 0..4000),
        points in proptest::collection::vec(any::<usize>(), 0..60),
        bursts in proptest::collection::vec(any::<bool>(), 0..60),
        framing in prop_oneof![Just(Framing::Auto), Just(Framing::Line), Just(Framing::Legacy)],
    ) {
        let reads = cut(&bytes, &points);
        let (_, most_kept) = frame_reads(framing, &reads, &bursts);
        // Between reads the caller never has to keep more than one unfinished line.
        prop_assert!(most_kept <= MAX_LINE + 1, "kept {} bytes", most_kept);
    }

    #[test]
    fn newlines_and_colons_in_any_mix_never_panic(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b'x'), Just(0xE4u8), any::<u8>()],
            0..3000,
        ),
        points in proptest::collection::vec(any::<usize>(), 0..60),
        bursts in proptest::collection::vec(any::<bool>(), 0..60),
    ) {
        let reads = cut(&bytes, &points);
        for framing in [Framing::Auto, Framing::Line, Framing::Legacy] {
            let (_, most_kept) = frame_reads(framing, &reads, &bursts);
            prop_assert!(most_kept <= MAX_LINE + 1, "kept {} bytes", most_kept);
        }
    }
}
