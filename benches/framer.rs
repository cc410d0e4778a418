//! Framer throughput (MB/s) over a realistic mix of messages, fed whole and cut into small reads.
//!
//! Run with `cargo bench --bench framer`.

use divan::counter::BytesCount;
use divan::Bencher;
use robochat::protocol::{Framer, Framing};

fn main() {
    divan::main();
}

/// About 1 MB of chat: short and long messages, Chinese and English, a few blank lines and
/// malformed ones, CRLF and LF endings.
fn chat_mix() -> Vec<u8> {
    let lines: [&[u8]; 8] = [
        b"alice::hello\n",
        "小明::你好，今天天气怎么样？\r\n".as_bytes(),
        b"bob::what is (1+2)*3\n",
        b"carol::I like my cat, she sleeps all day and wakes up at night to play\n",
        b"\n",
        b"no separator in this line\n",
        "用户名::我想知道现在几点了，还有今天是星期几，谢谢你的帮助！\n".as_bytes(),
        b"dave::bye\r\n",
    ];
    let mut out = Vec::with_capacity(1 << 20);
    let mut i = 0;
    while out.len() < 1 << 20 {
        out.extend_from_slice(lines[i % lines.len()]);
        i += 1;
    }
    out
}

/// Frames `input` as a connection would: reads of `read_size` bytes appended to a pending buffer
/// that the framer drains. Returns the number of frames, so the work cannot be optimised away.
fn frame_all(input: &[u8], read_size: usize) -> usize {
    let mut framer = Framer::new(Framing::Line, 4096);
    let mut pending: Vec<u8> = Vec::with_capacity(8192);
    let mut frames = 0;
    for read in input.chunks(read_size) {
        pending.extend_from_slice(read);
        let mut used = 0;
        loop {
            let decoded = framer.decode(&pending[used..]);
            if decoded.needs_more() {
                break;
            }
            used += decoded.consumed;
            frames += usize::from(decoded.frame.is_some());
        }
        pending.drain(..used);
    }
    frames
}

#[divan::bench(args = [16 * 1024, 1500, 64, 7])]
fn line_framing(bencher: Bencher, read_size: usize) {
    let input = chat_mix();
    bencher
        .counter(BytesCount::new(input.len()))
        .bench(|| frame_all(divan::black_box(&input), read_size));
}
