//! Embedded robot replies per second over a mix of its rules.
//!
//! Run with `cargo bench --bench embedded_robot`.

use divan::counter::ItemsCount;
use divan::Bencher;
use robochat::{EmbeddedRobot, Robot};

fn main() {
    divan::main();
}

const MIX: [&str; 12] = [
    "你好",
    "hello",
    "你是谁",
    "what time is it",
    "今天星期几",
    "1+2等于几",
    "what is (12.5*4)/3 - 7",
    "my name is Bob",
    "what is my name",
    "help",
    "I like my cat because she is soft",
    "我今天很开心，因为我的朋友来看我了",
];

#[divan::bench]
fn reply_mix(bencher: Bencher) {
    let robot = EmbeddedRobot::new();
    bencher.counter(ItemsCount::new(MIX.len())).bench(|| {
        for (i, text) in MIX.iter().enumerate() {
            let user = if i % 2 == 0 { "alice" } else { "小明" };
            divan::black_box(robot.reply(user, divan::black_box(text)).ok());
        }
    });
}
