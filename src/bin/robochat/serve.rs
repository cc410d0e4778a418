//! `robochat serve`: parse the flags, set up the process, run the server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use robochat::limits::raise_open_file_limit;
use robochat::signals::TerminationSignals;
use robochat::{EchoRobot, EmbeddedRobot, Framing, Robot, Server};

use crate::args::{print_text, value, Failure};

const HELP: &str = "\
Run the chat-robot server.

Usage: robochat serve [OPTIONS]

Each client gets a greeting line, then sends lines USERNAME::TEXT and gets one reply line per
message, in order. `exit` as the text ends the chat. Errors are lines starting with `ERR `.

Options:
  --listen ADDR            Address to listen on [default: 127.0.0.1:9999]
                           (use 0.0.0.0:9999 or [::]:9999 to accept other machines)
  --robot NAME             Who answers: `embedded` (offline rules, Chinese and English) or
                           `echo` (replies with the text unchanged) [default: embedded]
  --rules FILE             Rules file for the embedded robot [default: the built-in rules]
  --workers N              Robot worker threads; 0 answers on the event loop thread, allowed
                           only for robots that never block (embedded, echo) [default: 4]
  --queue N                Robot jobs that may wait for a worker; past that, messages get
                           `ERR the robot is busy` [default: 1024]
  --robot-delay MS         Delay every robot reply by MS milliseconds on its worker, to stand in
                           for a slow web robot in load tests [default: 0]
  --max-connections N      Connections served at once; one more gets an ERR line and is closed
                           [default: 10000]
  --max-line BYTES         Longest message line; longer lines get an ERR line and are discarded
                           without being buffered [default: 4096]
  --framing MODE           `auto`: lines, but a client whose first message has no newline (the
                           tutorial's client) gets one message per burst; `line`: lines only;
                           `legacy`: one message per burst for everyone [default: auto]
  --greeting TEXT          Line sent to each new connection [default: 你好，欢迎来到机器人聊天器！]
  --shutdown-timeout SECS  On SIGINT/SIGTERM, how long to wait for robot answers in flight
                           before saying goodbye and closing [default: 5]
  -h, --help               Print this help

Environment:
  RUST_LOG                 Log level: error, warn, info, debug [default: info]. At info the
                           server logs its start, refused and failed connections, and shutdown;
                           never individual messages.

At start the server raises its open-file limit to the hard limit; --max-connections must stay
below it (each connection is one open file).";

struct Options {
    listen: String,
    robot: String,
    rules: Option<PathBuf>,
    workers: usize,
    queue: usize,
    robot_delay_ms: u64,
    max_connections: usize,
    max_line: usize,
    framing: Framing,
    greeting: Option<String>,
    shutdown_timeout_secs: f64,
}

fn parse(mut parser: lexopt::Parser) -> Result<Option<Options>, Failure> {
    use lexopt::Arg::{Long, Short};
    let mut o = Options {
        listen: "127.0.0.1:9999".into(),
        robot: "embedded".into(),
        rules: None,
        workers: 4,
        queue: 1024,
        robot_delay_ms: 0,
        max_connections: 10_000,
        max_line: 4096,
        framing: Framing::Auto,
        greeting: None,
        shutdown_timeout_secs: 5.0,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => o.listen = value(&mut parser, "listen")?,
            Long("robot") => o.robot = value(&mut parser, "robot")?,
            Long("rules") => o.rules = Some(parser.value()?.into()),
            Long("workers") => o.workers = value(&mut parser, "workers")?,
            Long("queue") => o.queue = value(&mut parser, "queue")?,
            Long("robot-delay") => o.robot_delay_ms = value(&mut parser, "robot-delay")?,
            Long("max-connections") => o.max_connections = value(&mut parser, "max-connections")?,
            Long("max-line") => o.max_line = value(&mut parser, "max-line")?,
            Long("framing") => o.framing = value(&mut parser, "framing")?,
            Long("greeting") => o.greeting = Some(value(&mut parser, "greeting")?),
            Long("shutdown-timeout") => {
                o.shutdown_timeout_secs = value(&mut parser, "shutdown-timeout")?;
                if !(o.shutdown_timeout_secs >= 0.0 && o.shutdown_timeout_secs <= 86_400.0) {
                    return Err(Failure::Usage(
                        "--shutdown-timeout must be between 0 and 86400 seconds".into(),
                    ));
                }
            }
            Short('h') | Long("help") => {
                print_text(HELP);
                return Ok(None);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Some(o))
}

fn make_robot(o: &Options) -> Result<Arc<dyn Robot>, Failure> {
    if o.rules.is_some() && o.robot != "embedded" {
        return Err(Failure::Usage(
            "--rules applies to the embedded robot only".into(),
        ));
    }
    match o.robot.as_str() {
        "embedded" => match &o.rules {
            None => Ok(Arc::new(EmbeddedRobot::new())),
            Some(path) => EmbeddedRobot::from_file(path)
                .map(|r| Arc::new(r) as Arc<dyn Robot>)
                .map_err(|e| Failure::Runtime(e.to_string())),
        },
        "echo" => Ok(Arc::new(EchoRobot)),
        other => Err(Failure::Usage(format!(
            "unknown robot '{other}': expected embedded or echo"
        ))),
    }
}

pub fn main(parser: lexopt::Parser) -> Result<(), Failure> {
    let Some(o) = parse(parser)? else {
        return Ok(());
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Before any thread exists, so that every thread inherits the blocked signals.
    let signals = TerminationSignals::block()
        .map_err(|e| Failure::Runtime(format!("cannot set up signal handling: {e}")))?;
    match raise_open_file_limit() {
        Ok(limit) => {
            log::debug!("open-file limit: {limit}");
            // A few descriptors go to the listener, the poll, the waker and the log.
            if (o.max_connections as u64).saturating_add(16) > limit {
                log::warn!(
                    "--max-connections {} is above what the open-file limit ({limit}) allows; \
                     connections past about {} will be refused by the system",
                    o.max_connections,
                    limit.saturating_sub(16)
                );
            }
        }
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    let robot = make_robot(&o)?;
    let mut builder = Server::builder()
        .listen(o.listen.as_str())
        .shared_robot(robot)
        .workers(o.workers)
        .queue(o.queue)
        .robot_delay(Duration::from_millis(o.robot_delay_ms))
        .max_connections(o.max_connections)
        .max_line(o.max_line)
        .framing(o.framing)
        .shutdown_timeout(Duration::from_secs_f64(o.shutdown_timeout_secs));
    if let Some(greeting) = o.greeting {
        builder = builder.greeting(greeting);
    }
    let server = builder
        .build()
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    signals
        .shut_down_on_signal(server.handle())
        .map_err(|e| Failure::Runtime(format!("cannot start the signal thread: {e}")))?;
    server
        .run()
        .map_err(|e| Failure::Runtime(format!("the event loop failed: {e}")))?;
    log::info!("stopped");
    Ok(())
}
