//! `robochat serve`: parse the flags, set up the process, run the server.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use robochat::limits::raise_open_file_limit;
use robochat::server::{HistoryScope, DEFAULT_BACKLOG, DEFAULT_SEND_BUFFER, MAX_TIMEOUT};
use robochat::signals::TerminationSignals;
use robochat::web::Origins;
use robochat::{BuildError, Framing, Server};

use crate::args::{print_text, seconds, value, Bytes, Failure};
use crate::robots::{self, BaseUrl, Delayed, RobotSettings};

pub const HELP: &str = "\
Run the chat-robot server.

Usage: robochat serve [OPTIONS]

Each client gets a greeting line, then sends lines USERNAME::TEXT and gets one reply line per
message, in order. `exit` as the text ends the chat. Errors are lines starting with `ERR `.
With --web, browsers get a chat page, and the same chat over WebSocket.

Options:
  --listen ADDR            Address to listen on [default: 127.0.0.1:9999]
                           (use 0.0.0.0:9999 or [::]:9999 to accept other machines)
  --web ADDR               Also serve browsers on ADDR, such as 127.0.0.1:8080 [default: none]:
                           GET / the chat page, GET /ws the chat over WebSocket (each text
                           message one USERNAME::TEXT message, each reply one text message),
                           GET /healthz `ok` for load balancers; one request per connection.
                           Same loops, robot and limits as the line port; --max-line is the
                           largest message, and --line-timeout the time to send the request
  --allow-origin URL       A web page, such as https://chat.example.com, that may open the
                           chat's WebSocket (repeatable; `*` for any). Without it only the
                           server's own page opened by address or as localhost may (and
                           programs, which send no Origin): any site a visitor has open could
                           otherwise chat in their name. The page opened by a domain name is
                           listed here too, as that name could be any site's (DNS rebinding)
  --robot SPEC             Who answers [default: embedded]. One of
                             embedded  offline rules, Chinese and English (小图)
                             echo      replies with the text unchanged (tests, benchmarks)
                             tuling    the Tuling v1 web API (key: ROBOCHAT_TULING_KEY)
                             tuling2   the Tuling v2 web API (key: ROBOCHAT_TULING_KEY)
                             openai    an OpenAI-compatible chat API: Ollama, llama.cpp,
                                       vLLM or a hosted one (key, if it needs one:
                                       ROBOCHAT_OPENAI_KEY or OPENAI_API_KEY)
                           or a fallback chain, tried in order: `openai,embedded`
  --rules FILE             Rules file for the embedded robot [default: the built-in rules]
  --robot-timeout SECS     The whole time a message has to be answered, counted from when it is
                           queued for the robot: waiting for a worker, then the web call's
                           connect, send, wait, read and one retry [default: 10]. Past it the
                           next robot in the chain answers, or the user gets an ERR line. A
                           message that waited for a worker past it is answered at once, by a
                           robot of the chain that never blocks (embedded) or an ERR line
  --breaker-cooldown SECS  In a chain such as openai,embedded, a robot that failed 3 times in
                           a row is skipped (the next answers at once) for this long, then one
                           message tries it again [default: 10]. A failure with less than half
                           the message's time left (after waiting for a worker) does not count
  --tuling-url URL         Tuling API base [default: http://www.tuling123.com for tuling,
                           http://openapi.tuling123.com for tuling2]
  --openai-url URL         OpenAI-compatible API base, up to /v1
                           [default: http://localhost:11434/v1, Ollama]
  --model NAME             Model for the openai robot [default: llama3.2]
  --system-prompt TEXT     System prompt for the openai robot [default: none]
  --history N              Turns of each conversation the openai robot sends along [default: 8]
  --history-chars N        Characters of each conversation kept and sent along, both sides
                           together, oldest turns dropped first: keep it within the model's
                           context (a 2,048-token model takes about 6,000) [default: 4000]
  --history-memory BYTES   Memory for all conversations together (K, M, G suffixes); the least
                           recently used are forgotten first [default: 64M]
  --history-scope SCOPE    Whose conversation a message is part of, for the openai robot's
                           history, the embedded robot's remembered names and Tuling's user
                           id: `connection` (each connection its own, forgotten when it
                           closes) or `user` (everyone sending the same USERNAME shares one:
                           only where usernames are trusted, since anyone can send any name,
                           and the tutorial's client sends 小明 for everyone)
                           [default: connection]
  --max-tokens N           Longest answer of the openai robot, in tokens [default: 512]
  --temperature T          Sampling temperature of the openai robot, 0 to 2 [default: the
                           server's]
  --max-reply CHARS        Longest reply line; longer answers are cut [default: 2000]
  --workers N|auto         Robot worker threads [default: auto]. A robot that may block (the
                           web robots) runs only on them, one call per worker: auto gives 4.
                           A robot that never blocks (embedded, echo) answers on the event
                           loop for the first 50 µs of robot work in each loop turn, and the
                           workers take the rest, so that under load it uses the other cores:
                           auto gives one per core not taken by --loops (at least 1); 0 answers
                           everything on the loop, which only such a robot allows
  --queue N                Robot jobs that may wait for a worker; past that, messages get
                           `ERR the robot is busy` [default: 1024]
  --robot-delay MS         Delay every robot reply by MS milliseconds on its worker, to stand in
                           for a slow web robot in load tests [default: 0]
  --metrics ADDR           Serve Prometheus metrics at http://ADDR/metrics (connections,
                           messages, replies by outcome, bytes, robot calls and latency, job
                           queue, busy workers) [default: none]
  --loops N                Event loops in this process, one thread each, sharing the port
                           (SO_REUSEPORT) and the worker pool: about one per core [default: 1]
  --reuseport              Share the port with other robochat processes (SO_REUSEPORT): the
                           kernel spreads new connections over them, one process per core
  --backlog N              Connections the kernel may queue before they are accepted, for
                           thousands of clients reconnecting at once; the system caps it at
                           net.core.somaxconn (a warning at start says so) [default: 1024]
  --send-buffer BYTES      Kernel send buffer of each connection (SO_SNDBUF; Linux doubles it):
                           with 16 KiB of the server's own, what a client that never reads
                           can tie up; 0 leaves it to the kernel's autotuning, up to 4 MiB
                           [default: 65536]
  --proxy-protocol         Every connection must start with a PROXY protocol header (v1 or
                           v2, as HAProxy's send-proxy / send-proxy-v2 sends); the client
                           address in it is the one logged. Use only behind such a proxy
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
  --line-timeout SECS      Close a connection that sent part of a line (on --web: of a request
                           head or a WebSocket message) and has not finished it for this long
                           (slowloris); the clock starts again with each line completed; 0 is
                           off [default: 30]
  --send-timeout SECS      Close a connection whose replies have gone unread for this long
                           (a client that never reads); 0 is off [default: 30]
  --idle-timeout SECS      Say goodbye to and close a connection that sent no message for
                           this long; 0 is off, as idle connections are what this server is
                           for [default: 0]
                           Timeouts take fractions (0.5) and fire after their time, never
                           before, and at most about 60 ms late
  -h, --help               Print this help

Environment:
  ROBOCHAT_TULING_KEY      API key of the Tuling robots (never logged or shown)
  ROBOCHAT_OPENAI_KEY      API key of the openai robot (or OPENAI_API_KEY); none for Ollama
  RUST_LOG                 Log level: error, warn, info, debug [default: info]. At info the
                           server logs its start, refused and failed connections, and shutdown;
                           never individual messages.

At start the server raises its open-file limit to the hard limit; --max-connections must stay
below it (each connection is one open file).";

struct Options {
    listen: String,
    robot: String,
    robot_settings: RobotSettings,
    max_reply: usize,
    /// `None`: auto.
    workers: Option<usize>,
    queue: usize,
    robot_delay_ms: u64,
    max_connections: usize,
    max_line: usize,
    framing: Framing,
    greeting: Option<String>,
    shutdown_timeout_secs: f64,
    line_timeout: Duration,
    send_timeout: Duration,
    idle_timeout: Duration,
    reuse_port: bool,
    backlog: u32,
    send_buffer: usize,
    proxy_protocol: bool,
    loops: usize,
    metrics: Option<std::net::SocketAddr>,
    history_scope: HistoryScope,
    web: Option<String>,
    allowed_origins: Vec<String>,
}

fn parse(mut parser: lexopt::Parser) -> Result<Option<Options>, Failure> {
    use lexopt::Arg::{Long, Short};
    let mut o = Options {
        listen: "127.0.0.1:9999".into(),
        robot: "embedded".into(),
        robot_settings: RobotSettings::default(),
        max_reply: 2000,
        workers: None,
        queue: 1024,
        robot_delay_ms: 0,
        max_connections: 10_000,
        max_line: 4096,
        framing: Framing::Auto,
        greeting: None,
        shutdown_timeout_secs: 5.0,
        line_timeout: Duration::from_secs(30),
        send_timeout: Duration::from_secs(30),
        idle_timeout: Duration::ZERO,
        reuse_port: false,
        backlog: DEFAULT_BACKLOG,
        send_buffer: DEFAULT_SEND_BUFFER,
        proxy_protocol: false,
        loops: 1,
        metrics: None,
        history_scope: HistoryScope::Connection,
        web: None,
        allowed_origins: Vec::new(),
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => o.listen = value(&mut parser, "listen")?,
            Long("web") => o.web = Some(value(&mut parser, "web")?),
            Long("allow-origin") => {
                let origin: String = value(&mut parser, "allow-origin")?;
                check_origin(&origin)?;
                o.allowed_origins.push(origin);
            }
            Long("robot") => o.robot = value(&mut parser, "robot")?,
            Long("rules") => o.robot_settings.rules = Some(PathBuf::from(parser.value()?)),
            Long("robot-timeout") => {
                let secs: f64 = value(&mut parser, "robot-timeout")?;
                if !(secs > 0.0 && secs <= 3600.0) {
                    return Err(Failure::Usage(
                        "--robot-timeout must be more than 0 and at most 3600 seconds".into(),
                    ));
                }
                o.robot_settings.timeout = Duration::from_secs_f64(secs);
            }
            Long("tuling-url") => {
                o.robot_settings.tuling_url = Some(value::<BaseUrl>(&mut parser, "tuling-url")?.0)
            }
            Long("openai-url") => {
                o.robot_settings.openai_url = Some(value::<BaseUrl>(&mut parser, "openai-url")?.0)
            }
            Long("model") => o.robot_settings.model = Some(value(&mut parser, "model")?),
            Long("system-prompt") => {
                o.robot_settings.system_prompt = Some(value(&mut parser, "system-prompt")?)
            }
            Long("history") => o.robot_settings.history = value(&mut parser, "history")?,
            Long("history-chars") => {
                o.robot_settings.history_chars = value(&mut parser, "history-chars")?
            }
            Long("history-memory") => {
                o.robot_settings.history_memory = value::<Bytes>(&mut parser, "history-memory")?.0
            }
            Long("history-scope") => {
                o.history_scope = match value::<String>(&mut parser, "history-scope")?.as_str() {
                    "connection" => HistoryScope::Connection,
                    "user" => HistoryScope::User,
                    other => {
                        return Err(Failure::Usage(format!(
                            "invalid value '{other}' for --history-scope: expected connection \
                             or user"
                        )))
                    }
                }
            }
            Long("max-tokens") => {
                o.robot_settings.max_tokens = value(&mut parser, "max-tokens")?;
                if o.robot_settings.max_tokens == 0 {
                    return Err(Failure::Usage("--max-tokens must be at least 1".into()));
                }
            }
            Long("temperature") => {
                let t: f32 = value(&mut parser, "temperature")?;
                if !(0.0..=2.0).contains(&t) {
                    return Err(Failure::Usage(
                        "--temperature must be between 0 and 2".into(),
                    ));
                }
                o.robot_settings.temperature = Some(t);
            }
            Long("breaker-cooldown") => {
                o.robot_settings.breaker_cool_down =
                    seconds(&mut parser, "breaker-cooldown", MAX_TIMEOUT)?
            }
            Long("max-reply") => o.max_reply = value(&mut parser, "max-reply")?,
            Long("line-timeout") => {
                o.line_timeout = seconds(&mut parser, "line-timeout", MAX_TIMEOUT)?
            }
            Long("send-timeout") => {
                o.send_timeout = seconds(&mut parser, "send-timeout", MAX_TIMEOUT)?
            }
            Long("idle-timeout") => {
                o.idle_timeout = seconds(&mut parser, "idle-timeout", MAX_TIMEOUT)?
            }
            Long("reuseport") => o.reuse_port = true,
            Long("backlog") => o.backlog = value(&mut parser, "backlog")?,
            Long("send-buffer") => o.send_buffer = value(&mut parser, "send-buffer")?,
            Long("proxy-protocol") => o.proxy_protocol = true,
            Long("loops") => o.loops = value(&mut parser, "loops")?,
            Long("metrics") => o.metrics = Some(value(&mut parser, "metrics")?),
            Long("workers") => o.workers = value::<Workers>(&mut parser, "workers")?.0,
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

pub fn main(parser: lexopt::Parser) -> Result<(), Failure> {
    let Some(o) = parse(parser)? else {
        return Ok(());
    };
    crate::logging::init();
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
    let listen = addresses("listen", &o.listen)?;
    let web = o.web.as_deref().map(|a| addresses("web", a)).transpose()?;
    if web.is_none() && !o.allowed_origins.is_empty() {
        return Err(Failure::Usage(
            "--allow-origin is for the web listener: add --web ADDR".into(),
        ));
    }
    let mut robot = robots::build(&o.robot, &o.robot_settings)?;
    if o.robot_delay_ms > 0 {
        if o.workers == Some(0) {
            return Err(Failure::Usage(
                "--robot-delay needs at least one worker (--workers): a delayed robot blocks"
                    .into(),
            ));
        }
        robot = Arc::new(Delayed::new(robot, Duration::from_millis(o.robot_delay_ms)));
    }
    let mut builder = Server::builder()
        .listen(&listen[..])
        .shared_robot(robot)
        .queue(o.queue)
        .max_connections(o.max_connections)
        .max_line(o.max_line)
        .max_reply(o.max_reply)
        .framing(o.framing)
        .shutdown_timeout(Duration::from_secs_f64(o.shutdown_timeout_secs))
        .line_timeout(o.line_timeout)
        .send_timeout(o.send_timeout)
        .idle_timeout(o.idle_timeout)
        .reuse_port(o.reuse_port)
        .backlog(o.backlog)
        .send_buffer(o.send_buffer)
        .proxy_protocol(o.proxy_protocol)
        .loops(o.loops)
        .history_scope(o.history_scope)
        .robot_timeout(o.robot_settings.timeout);
    if let Some(workers) = o.workers {
        builder = builder.workers(workers);
    }
    if let Some(addr) = o.metrics {
        builder = builder.metrics(addr);
    }
    if let Some(greeting) = o.greeting {
        builder = builder.greeting(greeting);
    }
    if let Some(web) = web {
        builder = builder
            .web(&web[..])
            .allow_origins(origins(o.allowed_origins));
    }
    let server = builder.build().map_err(build_failure)?;
    signals
        .shut_down_on_signal(server.handle())
        .map_err(|e| Failure::Runtime(format!("cannot start the signal thread: {e}")))?;
    // Listening already (the listener is bound and listening once built): tell systemd.
    if let Err(e) = robochat::systemd::notify("READY=1") {
        log::warn!("cannot tell systemd the server is ready: {e}");
    }
    server
        .run()
        .map_err(|e| Failure::Runtime(format!("the event loop failed: {e}")))?;
    log::info!("stopped");
    Ok(())
}

/// A build error in the words of the command line: a setting out of range is a usage error that
/// names its flag; a port in use says which flag chose it.
fn build_failure(error: BuildError) -> Failure {
    let flag = error
        .setting()
        .map(|s| format!("--{}", s.replace('_', "-")));
    match (&error, flag) {
        (BuildError::Config { problem, .. }, Some(flag)) => {
            Failure::Usage(format!("{flag} {problem}"))
        }
        (BuildError::Bind { error: e, .. }, Some(flag))
            if e.kind() == std::io::ErrorKind::AddrInUse =>
        {
            Failure::Runtime(format!("{error}; choose another with {flag}"))
        }
        _ => Failure::Runtime(error.to_string()),
    }
}

/// The addresses of `--FLAG ADDR`, resolved once, or a usage error that shows what is expected.
fn addresses(flag: &str, addr: &str) -> Result<Vec<std::net::SocketAddr>, Failure> {
    let example = if flag == "web" { 8080 } else { 9999 };
    Ok(addr
        .to_socket_addrs()
        .map_err(|e| {
            Failure::Usage(format!(
                "invalid value '{addr}' for --{flag}: {e} (expected an address and port such \
                 as 127.0.0.1:{example}, [::]:{example} or localhost:{example})"
            ))
        })?
        .collect())
}

/// Checks an `--allow-origin` value: `*`, or what a browser sends as `Origin`, a scheme and a
/// host (and port), nothing after.
fn check_origin(origin: &str) -> Result<(), Failure> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let valid = origin == "*"
        || rest.is_some_and(|host| {
            !host.is_empty() && !host.trim_end_matches('/').contains(['/', '?', '#', ' '])
        });
    if valid {
        Ok(())
    } else {
        Err(Failure::Usage(format!(
            "invalid value '{origin}' for --allow-origin: expected a page's origin such as \
             https://chat.example.com or http://localhost:3000 (no path), or *"
        )))
    }
}

/// The origins `--allow-origin` allows besides the server's own.
fn origins(allowed: Vec<String>) -> Origins {
    if allowed.is_empty() {
        Origins::SameHost
    } else if allowed.iter().any(|o| o == "*") {
        Origins::Any
    } else {
        Origins::Listed(allowed)
    }
}

/// `--workers`: a number, or `auto` (`None`).
struct Workers(Option<usize>);

impl std::str::FromStr for Workers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Workers(None));
        }
        s.parse()
            .map(|n| Workers(Some(n)))
            .map_err(|_| "expected a number of threads, or auto".to_owned())
    }
}
