//! The soak test: a minute of well-behaved and hostile clients at once against one server, then
//! a check that nothing was lost and nothing leaked. Not run by `cargo test` (it takes a
//! while); run it with
//!
//!     cargo test --release --test soak -- --ignored --nocapture
//!
//! and `ROBOCHAT_SOAK_SECS` to change its length (default 60).

mod common;

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, ServeProcess, READ_TIMEOUT};

#[derive(Default)]
struct Tally {
    connections: AtomicU64,
    messages: AtomicU64,
    bad_inputs: AtomicU64,
    slowloris_closed: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line[6..]
        .trim()
        .trim_end_matches(" kB")
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Runs `work` on `n` threads until `stop`, each with its index.
fn spawn_each(
    n: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
    work: fn(usize, &AtomicBool, &Tally),
) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
            thread::spawn(move || work(i, &stop, &tally))
        })
        .collect()
}

/// Chats without pause and checks every reply, in order, also when several go in one write.
fn chatter(i: usize, stop: &AtomicBool, tally: &Tally) {
    let mut client = Client::connect(addr());
    Tally::add(&tally.connections, 1);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Several messages per write, to check order under pipelining too.
        let batch: String = (0..5).map(|k| format!("c{i}::{n}-{k}\n")).collect();
        client.send(&batch);
        for k in 0..5 {
            assert_eq!(
                client.line(),
                format!("{n}-{k}"),
                "chatter {i} lost or reordered"
            );
        }
        Tally::add(&tally.messages, 5);
        n += 1;
    }
}

#[test]
#[ignore = "a minute long; run with --ignored"]
fn soak() {
    let secs: u64 = std::env::var("ROBOCHAT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let server = ServeProcess::start(&[
        "--robot",
        "echo",
        "--max-connections",
        "5000",
        "--line-timeout",
        "2",
        "--send-timeout",
        "2",
        "--max-line",
        "1024",
    ]);
    let addr = server.addr;
    // Warm up, so that start-up allocations are not counted as growth.
    {
        let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(addr)).collect();
        for c in &mut clients {
            assert_eq!(c.ask("w", "warm"), "warm");
        }
    }
    thread::sleep(Duration::from_millis(300));
    let (fds_start, rss_start) = (server.open_fds(), server.rss_bytes());

    ADDR.set(addr).ok();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Idle connections, held for the whole run.
    let idle: Vec<Client> = (0..1000).map(|_| Client::connect(addr)).collect();
    Tally::add(&tally.connections, 1000);
    let mut workers = spawn_each(16, &stop, &tally, chatter);
    workers.extend(spawn_each(2, &stop, &tally, churn));
    workers.extend(spawn_each(2, &stop, &tally, oversized));
    workers.extend(spawn_each(2, &stop, &tally, invalid_utf8));
    workers.extend(spawn_each(2, &stop, &tally, slow_reader));
    workers.extend(spawn_each(2, &stop, &tally, slowloris));

    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(1));
        eprint!(
            "\rsoak {:>3}/{secs} s: {} messages, {} connections, {} bad inputs",
            started.elapsed().as_secs(),
            tally.messages.load(Ordering::Relaxed),
            tally.connections.load(Ordering::Relaxed),
            tally.bad_inputs.load(Ordering::Relaxed)
        );
    }
    eprintln!();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join()
            .expect("a client thread failed: see its message above");
    }
    drop(idle);

    // Everything the clients opened is closed again.
    let deadline = Instant::now() + READ_TIMEOUT;
    while server.open_fds() > fds_start && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let (fds_end, rss_end, rss_peak) =
        (server.open_fds(), server.rss_bytes(), vm_hwm(server.pid()));
    println!(
        "soak: {secs} s, {} connections served, {} messages answered in order, {} bad inputs \
         sent, {} slowloris connections closed; server memory {:.1} MiB at start, peak {:.1} MiB, \
         end {:.1} MiB; open files {fds_start} at start, {fds_end} at end",
        tally.connections.load(Ordering::Relaxed),
        tally.messages.load(Ordering::Relaxed),
        tally.bad_inputs.load(Ordering::Relaxed),
        tally.slowloris_closed.load(Ordering::Relaxed),
        rss_start as f64 / 1048576.0,
        rss_peak as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
    );
    assert_eq!(fds_end, fds_start, "file descriptors leaked");
    assert!(
        rss_end <= rss_start + (4 << 20),
        "memory did not come back: {rss_start} at start, {rss_end} at end"
    );
    assert!(tally.slowloris_closed.load(Ordering::Relaxed) > 0);
    // The server is still well: a new client is served.
    let mut last = Client::connect(addr);
    assert_eq!(last.ask("z", "still here"), "still here");
}

static ADDR: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();

fn addr() -> std::net::SocketAddr {
    *ADDR.get().unwrap()
}

/// Connects, asks once, and leaves: half of the time with a reset.
fn churn(_: usize, stop: &AtomicBool, tally: &Tally) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut client = Client::connect(addr());
        assert_eq!(client.ask("churn", &n.to_string()), n.to_string());
        if n % 2 == 0 {
            client.reset();
        }
        Tally::add(&tally.connections, 1);
        Tally::add(&tally.messages, 1);
        n += 1;
    }
}

/// Lines far over --max-line: one error each, then a normal message is answered.
fn oversized(_: usize, stop: &AtomicBool, tally: &Tally) {
    let mut client = Client::connect(addr());
    Tally::add(&tally.connections, 1);
    assert_eq!(client.ask("big", "first"), "first");
    let line = format!("big::{}\n", "x".repeat(100_000));
    while !stop.load(Ordering::Relaxed) {
        client.send(&line);
        assert!(client.line().starts_with("ERR "));
        assert_eq!(client.ask("big", "after"), "after");
        Tally::add(&tally.bad_inputs, 1);
        Tally::add(&tally.messages, 1);
    }
}

/// Lines that are not UTF-8, or have no `::`: an error each, the connection stays.
fn invalid_utf8(_: usize, stop: &AtomicBool, tally: &Tally) {
    let mut client = Client::connect(addr());
    Tally::add(&tally.connections, 1);
    while !stop.load(Ordering::Relaxed) {
        client.send(b"bad::\xff\xfe\xfd\nno separator at all\n");
        assert!(client.line().starts_with("ERR "));
        assert!(client.line().starts_with("ERR "));
        assert_eq!(client.ask("ok", "fine"), "fine");
        Tally::add(&tally.bad_inputs, 2);
        Tally::add(&tally.messages, 1);
    }
}

/// Sends a lot at once and reads it back slowly; must get every reply, in order.
fn slow_reader(_: usize, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::Relaxed) {
        let mut client = Client::connect(addr());
        Tally::add(&tally.connections, 1);
        let batch: String = (0..3000).map(|k| format!("slow::{k}\n")).collect();
        let mut writer = client.stream().try_clone().unwrap();
        let sender = thread::spawn(move || writer.write_all(batch.as_bytes()));
        for k in 0..3000 {
            assert_eq!(client.line(), k.to_string(), "slow reader lost a reply");
            if k % 100 == 0 {
                thread::sleep(Duration::from_millis(10));
            }
        }
        sender.join().unwrap().unwrap();
        Tally::add(&tally.messages, 3000);
    }
}

/// Half a line, then silence: the server must close it after --line-timeout.
fn slowloris(_: usize, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::Relaxed) {
        let mut client = Client::connect(addr());
        Tally::add(&tally.connections, 1);
        assert_eq!(client.ask("loris", "hello"), "hello"); // a line client, not the tutorial's
        client.send("loris::never finish");
        Tally::add(&tally.bad_inputs, 1);
        let mut rest = Vec::new();
        match std::io::Read::read_to_end(&mut client.reader, &mut rest) {
            Ok(_) => assert!(rest.is_empty()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("slowloris was not closed: {e}"),
        }
        Tally::add(&tally.slowloris_closed, 1);
    }
}
