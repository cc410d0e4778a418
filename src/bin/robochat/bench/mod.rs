//! `robochat bench`: the load generator. It opens idle connections and holds them, measures
//! what they cost the server, then drives the active connections from a few client threads and
//! reports throughput, latency percentiles, errors and connect times (or, with `--churn`,
//! opens and closes them over and over and reports handshakes). Over the line protocol, or
//! over WebSocket with `--web`.
//!
//! - `options`: the flags and `--help`;
//! - `conn`: one connection's socket, framing (lines or WebSocket) and outstanding messages;
//! - `worker`: a client thread's event loop and its phases;
//! - `stats`: counters and histograms, merged over the threads;
//! - `progress`: the once-a-second line on stderr;
//! - `memory`: the server's resident memory from /proc;
//! - `timer`: a sub-millisecond wake-up for the open-loop schedule;
//! - `report`: the table or the JSON object.

mod conn;
mod memory;
mod options;
mod progress;
mod report;
mod stats;
mod timer;
mod worker;

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use robochat::limits::raise_open_file_limit;

use crate::args::Failure;
use conn::Target;
use memory::Readings;
use options::Options;
pub use options::HELP;
use progress::{Phase, Progress, Reporter};
use report::Summary;
use stats::Stats;
use worker::{Load, Worker};

/// Descriptors the bench needs besides its connections: stdio, the polls, the progress thread.
const SPARE_FILES: u64 = 32;

pub fn main(parser: lexopt::Parser) -> Result<(), Failure> {
    let Some(o) = options::parse(parser)? else {
        return Ok(());
    };
    let addr = resolve(&o.connect)?;
    if let Some(ip) = o
        .source_ips
        .iter()
        .find(|ip| ip.is_ipv4() != addr.is_ipv4())
    {
        return Err(Failure::Usage(format!(
            "--source-ip {ip} is not of the same family as --connect {addr}"
        )));
    }
    let target = Target {
        addr,
        sources: o.source_ips.clone().into(),
    };
    check_open_files(&o)?;
    let mut memory = match o.server_pid {
        Some(pid) => Some(Readings {
            before: memory::rss_bytes(pid).map_err(|e| {
                Failure::Runtime(format!(
                    "--server-pid {pid}: cannot read /proc/{pid}/status: {e}"
                ))
            })?,
            ..Readings::default()
        }),
        None => None,
    };
    let measure = |o: &Options| o.server_pid.and_then(|pid| memory::rss_bytes(pid).ok());

    let progress = Arc::new(Progress::default());
    let reporter =
        (!o.json).then(|| Reporter::start(progress.clone(), o.idle + o.connections, o.churn));
    let message: Arc<[u8]> = o.wire_message().into();
    let exit: Arc<[u8]> = o.wire_exit().into();
    let new_worker = || {
        let (message, exit) = (message.clone(), exit.clone());
        Worker::new(target.clone(), o.framing, message, exit, progress.clone())
            .map_err(|e| Failure::Runtime(format!("cannot create an event loop: {e}")))
    };

    // Idle connections: opened first and held by this thread, which polls them only until
    // they are greeted (and, with --idle-message, answered once).
    let mut idle = new_worker()?;
    if o.idle > 0 {
        progress.set_phase(Phase::OpeningIdle);
        idle.open(o.idle, o.connect_concurrency)
            .map_err(loop_failed)?;
        if let Some(m) = memory.as_mut() {
            m.after_idle = measure(&o);
        }
        if o.idle_message {
            progress.set_phase(Phase::IdleMessage);
            idle.idle_round(o.connect_concurrency)
                .map_err(loop_failed)?;
            if let Some(m) = memory.as_mut() {
                m.after_idle_message = measure(&o);
            }
        }
    }
    let idle_open = idle.stats.opened;

    let mut workers = (0..o.threads)
        .map(|_| new_worker())
        .collect::<Result<Vec<_>, _>>()?;
    run_active(&o, &mut workers, &progress)?;
    if let Some(m) = memory.as_mut() {
        m.end = measure(&o);
    }
    drop(reporter); // clears an in-place progress line before the report

    let mut stats = Stats::default();
    for worker in workers.iter_mut().chain([&mut idle]) {
        worker.close_all();
        stats.merge(std::mem::take(&mut worker.stats));
    }
    let summary = Summary::new(&o, &stats, idle_open, memory);
    let report = if o.json {
        summary.json()
    } else {
        summary.human()
    };
    // Not print!, which panics when stdout is closed; a closed stdout is the reader's choice.
    let _ = std::io::stdout().write_all(report.as_bytes());
    if stats.opened == 0 && o.idle + o.connections > 0 {
        let why = stats
            .first_connect_error
            .as_deref()
            .unwrap_or("unknown error");
        return Err(Failure::Runtime(format!(
            "no connection to {addr} could be opened (first failure: {why})"
        )));
    }
    Ok(())
}

/// Opens each worker's share of the active connections on its own thread, starts them all at
/// once (so warmup and duration mean the same for every thread), and waits for them to finish.
fn run_active(o: &Options, workers: &mut Vec<Worker>, progress: &Progress) -> Result<(), Failure> {
    if workers.is_empty() {
        return Ok(());
    }
    progress.set_phase(Phase::Connecting);
    let threads = workers.len();
    let concurrency = o.connect_concurrency.div_ceil(threads);
    let start_line = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::with_capacity(threads);
    for (t, mut worker) in workers.drain(..).enumerate() {
        let share = o.connections / threads + usize::from(t < o.connections % threads);
        let load = Load {
            warmup: Duration::from_secs_f64(o.warmup),
            duration: Duration::from_secs_f64(o.duration),
            // Each thread gets the rate of its share of connections, its schedule shifted by
            // t/threads of an interval so the threads interleave rather than send together.
            rate: o.rate.map(|rate| {
                (
                    rate * share as f64 / o.connections as f64,
                    t as f64 / threads as f64,
                )
            }),
        };
        let start_line = Arc::clone(&start_line);
        let churn = o.churn;
        handles.push(thread::spawn(move || {
            if churn {
                start_line.wait();
                let ran = worker.churn(share, load);
                return (worker, ran);
            }
            let opened = worker.open(share, concurrency);
            start_line.wait();
            let ran = opened.and_then(|()| worker.run(load));
            (worker, ran)
        }));
    }
    start_line.wait();
    let start = Instant::now();
    let warmup = Duration::from_secs_f64(o.warmup);
    let sending = warmup + Duration::from_secs_f64(o.duration);
    // The phase by the clock, for the progress line only.
    while !handles.iter().all(|h| h.is_finished()) {
        let elapsed = start.elapsed();
        progress.set_phase(if elapsed < warmup {
            Phase::Warmup
        } else if elapsed < sending {
            Phase::Measuring
        } else {
            Phase::Collecting
        });
        thread::sleep(Duration::from_millis(20));
    }
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok((worker, ran)) => {
                workers.push(worker);
                if let Err(e) = ran {
                    failure.get_or_insert(loop_failed(e));
                }
            }
            Err(_) => {
                failure.get_or_insert(Failure::Runtime("a client thread panicked".into()));
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

fn resolve(addr: &str) -> Result<SocketAddr, Failure> {
    let mut addrs = addr
        .to_socket_addrs()
        .map_err(|e| Failure::Usage(format!("cannot resolve --connect {addr}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| Failure::Usage(format!("--connect {addr} resolves to no address")))
}

/// Raises the open-file limit and checks that every connection fits under it, so the run does
/// not end in a pile of "too many open files" connect failures.
fn check_open_files(o: &Options) -> Result<(), Failure> {
    let limit = match raise_open_file_limit() {
        Ok(limit) => limit,
        Err(e) => {
            if !o.json {
                eprintln!("robochat bench: cannot raise the open-file limit: {e}");
            }
            return Ok(()); // the connects will tell
        }
    };
    let needed = (o.connections as u64)
        .saturating_add(o.idle as u64)
        .saturating_add(SPARE_FILES);
    if needed > limit {
        return Err(Failure::Runtime(format!(
            "--connections {} + --idle {} need about {needed} open files, but this process may \
             open only {limit} (the hard limit; see `ulimit -Hn`). Use fewer connections, or \
             raise the hard limit (as root: `ulimit -Hn N` in the shell that starts the bench, \
             or LimitNOFILE= for a systemd service).",
            o.connections, o.idle
        )));
    }
    Ok(())
}

fn loop_failed(e: std::io::Error) -> Failure {
    Failure::Runtime(format!("the client event loop failed: {e}"))
}
