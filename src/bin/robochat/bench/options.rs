//! `robochat bench` flags: parsing, checking, and the `--help` text.

use robochat::protocol;

use crate::args::{print_text, value, Failure};

pub const HELP: &str = "\
Load-test a robochat server (or the tutorial's server) and report throughput and latency.

Usage: robochat bench [OPTIONS]

It opens --idle connections and holds them, then --connections active ones, each of which sends
USER::MESSAGE over and over for --warmup + --duration seconds, and prints messages per second,
latency percentiles, errors and connect times. It only ever connects to --connect.

Options:
  --connect ADDR             Server address: its line port, or its web listener with --web
                             [default: 127.0.0.1:9999]
  --web                      Every connection (active and idle) is a WebSocket: an HTTP upgrade
                             at /ws on --connect (the server's --web address), then the greeting
                             and each reply are one text message, each message one masked text
                             frame USER::MESSAGE. Every other flag works the same
  --churn                    Measure handshakes instead of messages: each active connection
                             connects, waits for its greeting (with --web: upgrade, 101 and
                             greeting), has the server close it, and connects again, for
                             --warmup + --duration seconds; reports handshakes per second and
                             their latency (connect to greeting). Not with --rate
  --connections N            Active connections, sending messages [default: 50]
  --idle N                   Extra connections opened first and held idle for the whole run
                             [default: 0]
  --idle-message             After the idle connections are open, each sends one message and
                             waits for its reply, then goes idle again (a connection that has
                             chatted may cost the server more than a fresh one)
  --duration SECS            Measured time, fractions allowed [default: 10]
  --warmup SECS              Time before measuring; messages sent in it are not counted
                             [default: 1]
  --rate R                   Open loop: R messages per second in total, spread evenly over the
                             connections and threads [default: closed loop]
  --message TEXT             Text of each message [default: hello]
  --user NAME                Username sent before each message [default: bench]
  --framing MODE             `line`: messages and replies are lines (robochat); `legacy`: the
                             tutorial's framing (see below); not with --web [default: line]
  --threads N                Client threads, each with its own event loop; connections are
                             spread over them [default: 2, or 1 for a single connection]
  --connect-concurrency N    Connections being opened at once (from connect until greeting),
                             and idle-round messages in flight at once, so the server's listen
                             backlog is not overrun [default: 256]. One address takes about
                             28000 connections from one client address (the ephemeral ports).
  --source-ip ADDR[,ADDR]    Connect from these local addresses, in turn (such as
                             127.0.0.2,127.0.0.3): each has its own ephemeral ports, so several
                             allow more connections to one server address than one does
                             [default: the system chooses]
  --server-pid PID           Read the server's resident memory (VmRSS, Linux) before, after the
                             idle connections open, after the idle-message round, and at the end
  --json                     Print one JSON object instead of the table, and no progress
  -h, --help                 Print this help

Closed loop (the default): each active connection sends its next message as soon as the reply to
the previous one arrives; latency is reply arrival minus send. This measures the most the server
can do, but a server that stalls also stops the senders, so the stall shows as fewer messages,
not as latency.

Open loop (--rate R): messages are sent on a fixed schedule whether or not replies have come
back (several may be outstanding on a connection; the server answers them in order). Latency is
measured from the time each message was due, not when it was actually written, so a stall shows
up in the percentiles (no coordinated omission, as in wrk2). R should be below what the closed
loop reached: the report counts the messages due, sent and answered in the measured time, and
says RATE NOT KEPT when under 99% of them were sent or answered. Then the figures describe a
server (or a load generator) falling behind, not its capacity.

WebSocket (--web): the upgrade sends no Origin (as a program, not a page, does), and the 101's
Sec-WebSocket-Accept is checked. A server that is full answers the upgrade 503: a connect
failure, as an ERR greeting is on the line port. Pings are answered; a close frame from the
server ends the connection (closed by server), as does a frame a client must refuse (masked,
binary, over 64 KiB: bad replies). At the end the connections are closed without a close frame,
as a closed browser tab's are.

Churn (--churn): --connections connections are each, over and over, opened and closed, so that
many handshakes are under way at once (--connect-concurrency does not apply). After its
greeting a connection asks the server to close it (USER::exit, or with --web a close frame, as
a browser's ws.close() does) and waits until it has: the server closes first, as it does when
it decides, so the TIME_WAIT states are the server's and this side's connects do not slow down
finding free ports. (With --framing legacy the bench closes instead, right after the greeting.)
A handshake counts in `handshakes` and the latency percentiles when its connect started after
the warmup and before the end of --duration, and its greeting came; handshakes/s divides those
by --duration. Failed ones count in connect failures (and so does a server that has not closed
10 s after the connect), and their connection starts again. Compare `--churn` at the line port
with `--churn --web` at the web listener of the same server for the cost of the HTTP upgrade.

Legacy framing (--framing legacy) speaks to the tutorial's server, which reads one recv() as one
message and sends its greeting and replies without a newline: each message is sent as USER::TEXT
with no newline, and whatever one read returns is taken as the whole reply. So each connection
keeps exactly one message outstanding, and --rate cannot be used with it. It works against
`robochat serve --framing legacy` (or auto) too.

Counting: a message counts in `messages` and the latency percentiles when it was sent (open loop:
due) after the warmup and answered with a reply that does not start with `ERR `. An `ERR ` reply
still lets the next message go (closed loop) but counts in errors. After --duration no message
is sent, and replies still outstanding get 2 more seconds; those that never come are timeouts.
Errors are ERR replies, timeouts, messages lost on connections the server closed, those closed
connections themselves, and unexpected or over-long (64 KiB) replies; connect failures
(refused, reset, no greeting within 10 s, an ERR greeting such as `server is full`) are counted
apart. None of them stops the run. `sent` counts every message sent, warmup and the idle round
included.

Memory per idle connection: start the server, then
  robochat bench --idle 10000 --connections 10 --server-pid $(pgrep -n -f 'robochat serve')
and read `server memory` (or server_rss_bytes_per_idle in --json): the growth of the server's
resident memory from before any connection to after the idle ones are open, divided by --idle.
Add --idle-message to also see it after each idle connection has sent one message. With --web
and --connect at the server's web listener, the same for idle WebSocket connections.

Exit status: 0 when the run completed (whatever the errors), 1 when no connection at all could be
opened (the report is still printed) or the bench itself failed, 2 for a bad command line.
At start the bench raises its open-file limit to the hard limit; --connections + --idle must fit
under it.";

/// How replies are delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    /// Every greeting, message and reply is a line ended by `\n`.
    Line,
    /// The tutorial's: no newline sent, one read is one reply.
    Legacy,
    /// `--web`: an upgrade to WebSocket, then every greeting, message and reply is one text
    /// message.
    Web,
}

impl Framing {
    pub fn name(self) -> &'static str {
        match self {
            Framing::Line => "line",
            Framing::Legacy => "legacy",
            Framing::Web => "websocket",
        }
    }
}

impl std::str::FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "line" => Ok(Framing::Line),
            "legacy" => Ok(Framing::Legacy),
            _ => Err("expected line or legacy".into()),
        }
    }
}

pub struct Options {
    pub connect: String,
    pub connections: usize,
    pub idle: usize,
    pub idle_message: bool,
    pub duration: f64,
    pub warmup: f64,
    pub rate: Option<f64>,
    pub message: String,
    pub user: String,
    pub framing: Framing,
    pub web: bool,
    pub churn: bool,
    pub threads: usize,
    pub connect_concurrency: usize,
    pub source_ips: Vec<std::net::IpAddr>,
    pub server_pid: Option<u32>,
    pub json: bool,
}

impl Options {
    /// The bytes of one message on the wire (WebSocket: the text of one message, framed
    /// with a new mask each time).
    pub fn wire_message(&self) -> Vec<u8> {
        protocol::encode_message(&self.user, &self.message, self.framing == Framing::Line)
    }

    /// The line that asks the server to close (`--churn`, line framing).
    pub fn wire_exit(&self) -> Vec<u8> {
        protocol::encode_message(&self.user, "exit", true)
    }
}

/// Longest run a flag may ask for, so a typo cannot start a run of years.
const MAX_SECONDS: f64 = 86_400.0;

/// Parses the flags; `None` when `--help` was printed.
pub fn parse(mut parser: lexopt::Parser) -> Result<Option<Options>, Failure> {
    use lexopt::Arg::{Long, Short};
    let mut o = Options {
        connect: "127.0.0.1:9999".into(),
        connections: 50,
        idle: 0,
        idle_message: false,
        duration: 10.0,
        warmup: 1.0,
        rate: None,
        message: "hello".into(),
        user: "bench".into(),
        framing: Framing::Line,
        web: false,
        churn: false,
        threads: 0, // 0: chosen from --connections below
        connect_concurrency: 256,
        source_ips: Vec::new(),
        server_pid: None,
        json: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("connect") => o.connect = value(&mut parser, "connect")?,
            Long("connections") => o.connections = value(&mut parser, "connections")?,
            Long("idle") => o.idle = value(&mut parser, "idle")?,
            Long("idle-message") => o.idle_message = true,
            Long("duration") => o.duration = value(&mut parser, "duration")?,
            Long("warmup") => o.warmup = value(&mut parser, "warmup")?,
            Long("rate") => o.rate = Some(value(&mut parser, "rate")?),
            Long("message") => o.message = value(&mut parser, "message")?,
            Long("user") => o.user = value(&mut parser, "user")?,
            Long("framing") => o.framing = value(&mut parser, "framing")?,
            Long("web") => o.web = true,
            Long("churn") => o.churn = true,
            Long("threads") => o.threads = value(&mut parser, "threads")?,
            Long("connect-concurrency") => {
                o.connect_concurrency = value(&mut parser, "connect-concurrency")?
            }
            Long("server-pid") => o.server_pid = Some(value(&mut parser, "server-pid")?),
            Long("json") => o.json = true,
            Long("source-ip") => {
                let list: String = value(&mut parser, "source-ip")?;
                for ip in list.split(',') {
                    o.source_ips.push(ip.trim().parse().map_err(|e| {
                        Failure::Usage(format!("invalid address '{ip}' for --source-ip: {e}"))
                    })?);
                }
            }
            Short('h') | Long("help") => {
                print_text(HELP);
                return Ok(None);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    check(&mut o).map_err(Failure::Usage)?;
    Ok(Some(o))
}

fn check(o: &mut Options) -> Result<(), String> {
    if !(o.duration > 0.0 && o.duration <= MAX_SECONDS) {
        return Err(format!(
            "--duration must be above 0 and at most {MAX_SECONDS} seconds"
        ));
    }
    if !(o.warmup >= 0.0 && o.warmup <= MAX_SECONDS) {
        return Err(format!(
            "--warmup must be between 0 and {MAX_SECONDS} seconds"
        ));
    }
    if let Some(rate) = o.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be a positive number of messages per second".into());
        }
        if o.framing == Framing::Legacy {
            return Err(
                "--rate cannot be used with --framing legacy: the tutorial's framing \
                        allows one message in flight per connection, so only the closed loop \
                        works"
                    .into(),
            );
        }
    }
    if o.web {
        if o.framing == Framing::Legacy {
            return Err(
                "--web cannot be used with --framing legacy: WebSocket is its own \
                        framing"
                    .into(),
            );
        }
        o.framing = Framing::Web;
    }
    if o.churn && o.rate.is_some() {
        return Err(
            "--churn cannot be used with --rate: each connection opens again as soon \
                    as it has closed (closed loop)"
                .into(),
        );
    }
    if o.connect_concurrency == 0 {
        return Err("--connect-concurrency must be at least 1".into());
    }
    if o.idle_message && o.idle == 0 {
        return Err("--idle-message needs --idle N".into());
    }
    protocol::check_username(&o.user).map_err(|e| format!("--user {e}"))?;
    check_message(&o.message)?;
    // At most one thread per connection; none when there is nothing to send.
    if o.threads == 0 {
        o.threads = 2;
    }
    o.threads = o.threads.min(o.connections);
    Ok(())
}

fn check_message(message: &str) -> Result<(), String> {
    // The server answers neither of these with one reply: an empty text gets none, `exit` gets
    // a goodbye and a closed connection.
    if message.trim().is_empty() {
        return Err("--message must not be empty (the server does not answer empty texts)".into());
    }
    if message.trim() == "exit" {
        return Err("--message must not be `exit` (the server closes the connection)".into());
    }
    if message.contains(['\n', '\r']) {
        return Err("--message must not contain line breaks".into());
    }
    Ok(())
}
