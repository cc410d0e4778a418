//! Helpers for the integration tests: in-process servers on port 0, line clients, a robot the
//! test controls, and the built `robochat` binary.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use robochat::{Robot, RobotError, ServerBuilder, ServerHandle, DEFAULT_GREETING};

/// How long any single read waits before the test fails (instead of hanging).
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A server running on its own thread.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Builds `builder` on 127.0.0.1 with a free port and runs it.
    pub fn start(builder: ServerBuilder) -> TestServer {
        let server = builder
            .listen("127.0.0.1:0")
            .build()
            .expect("server builds");
        let addr = server.local_addr();
        let handle = server.handle();
        let thread = thread::spawn(move || server.run());
        TestServer {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    /// Shuts the server down and waits for `run` to return.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        self.thread.take().unwrap().join().expect("server thread")
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// A line client over a real socket. Every read waits at most [`READ_TIMEOUT`].
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects and checks the greeting.
    pub fn connect(addr: SocketAddr) -> Client {
        let mut client = Client::connect_raw(addr);
        assert_eq!(client.line(), DEFAULT_GREETING);
        client
    }

    /// Connects without reading anything.
    pub fn connect_raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        // Each write leaves at once, as the tests mean it to (no Nagle delay behind an ACK).
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.reader
            .get_mut()
            .write_all(bytes.as_ref())
            .expect("send");
    }

    /// Reads one line, without its `\n`. Panics on end of stream or timeout.
    pub fn line(&mut self) -> String {
        self.try_line().expect("a line, got end of stream")
    }

    /// Reads one line, or `None` at end of stream.
    pub fn try_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .unwrap_or_else(|e| panic!("reading a line: {e}"));
        if n == 0 {
            return None;
        }
        assert_eq!(
            buf.pop(),
            Some(b'\n'),
            "line not ended by a newline: {buf:?}"
        );
        Some(String::from_utf8(buf).expect("UTF-8 line"))
    }

    /// Sends one message line and returns the reply line.
    pub fn ask(&mut self, user: &str, text: &str) -> String {
        self.send(format!("{user}::{text}\n"));
        self.line()
    }

    /// Waits for the server to close the connection, failing if it sends anything else or
    /// resets the connection. Then closes this side too, as a client does on end of stream.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
        let _ = self.stream().shutdown(Shutdown::Both);
    }

    /// Whether a line (or anything) is ready to read right now, without waiting.
    pub fn has_pending_input(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let ready = match stream.peek(&mut byte) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("peek: {e}"),
        };
        stream.set_nonblocking(false).unwrap();
        ready
    }

    pub fn half_close(&self) {
        self.stream().shutdown(Shutdown::Write).unwrap();
    }

    /// Closes with a reset (SO_LINGER 0), so the server sees an error rather than a clean end.
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a plain setsockopt on a socket we own, with a correctly sized value.
        let rc = unsafe {
            libc::setsockopt(
                self.stream().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt SO_LINGER");
    }
}

/// A robot the test controls: it echoes, except that a text starting with `wait` blocks until
/// the test opens the gate. It counts the `wait` calls that have started.
#[derive(Clone, Default)]
pub struct GateRobot {
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    open: bool,
    waiting: usize,
}

impl GateRobot {
    pub fn open(&self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap().open = true;
        cvar.notify_all();
    }

    /// Blocks until `n` calls are waiting at the gate.
    pub fn wait_for_waiting(&self, n: usize) {
        let (lock, cvar) = &*self.state;
        let guard = lock.lock().unwrap();
        let (_guard, timeout) = cvar
            .wait_timeout_while(guard, READ_TIMEOUT, |s| s.waiting < n)
            .unwrap();
        assert!(!timeout.timed_out(), "robot calls never reached the gate");
    }
}

impl Robot for GateRobot {
    fn name(&self) -> &str {
        "gate"
    }

    fn reply(&self, _user: &str, text: &str) -> Result<String, RobotError> {
        if text.starts_with("wait") {
            let (lock, cvar) = &*self.state;
            let mut state = lock.lock().unwrap();
            state.waiting += 1;
            cvar.notify_all();
            while !state.open {
                state = cvar.wait(state).unwrap();
            }
        }
        if text == "fail" {
            return Err(RobotError::Failed("it was told to fail".into()));
        }
        if text == "panic" {
            panic!("the test robot was told to panic");
        }
        Ok(format!("echo: {text}"))
    }
}

/// A [`GateRobot`] that claims never to block, so that it runs on the event loop itself
/// (`workers(0)`): a `wait` message then holds the whole loop until the gate opens.
pub struct LoopGate(pub GateRobot);

impl Robot for LoopGate {
    fn name(&self) -> &str {
        "loop-gate"
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        self.0.reply(user, text)
    }

    fn never_blocks(&self) -> bool {
        true
    }
}

/// The `robochat` binary built for these tests.
pub fn robochat_bin() -> &'static str {
    env!("CARGO_BIN_EXE_robochat")
}

/// A `robochat serve` process on a free port.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The log lines, collected as they arrive.
    pub log: Arc<Mutex<Vec<String>>>,
    log_thread: Option<JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `robochat serve --listen 127.0.0.1:0 ARGS` and waits for its start-up line.
    pub fn start(args: &[&str]) -> ServeProcess {
        Self::start_with(Command::new(robochat_bin()), "127.0.0.1:0", args)
    }

    /// Like [`start`](Self::start), logging at `debug` (each connection, and the client a
    /// PROXY header names).
    pub fn start_at_debug(args: &[&str]) -> ServeProcess {
        let mut command = Command::new(robochat_bin());
        command.env("RUST_LOG", "debug");
        Self::start_with(command, "127.0.0.1:0", args)
    }

    /// Like [`start`](Self::start), from a prepared command (for limits or environment).
    pub fn start_with(mut command: Command, listen: &str, args: &[&str]) -> ServeProcess {
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        command
            .args(["serve", "--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start robochat serve");
        let stderr = child.stderr.take().unwrap();
        let (addr, log, log_thread) = read_startup(stderr);
        ServeProcess {
            child,
            addr,
            log,
            log_thread: Some(log_thread),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a pid we started.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill");
    }

    /// Waits for the process to exit (at most [`READ_TIMEOUT`]) and returns its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        for _ in 0..(READ_TIMEOUT.as_millis() / 20) {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(t) = self.log_thread.take() {
                    t.join().unwrap();
                }
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("robochat serve did not exit");
    }

    /// Waits until a log line containing `needle` has appeared.
    pub fn wait_for_log(&self, needle: &str) {
        for _ in 0..(READ_TIMEOUT.as_millis() / 20) {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no log line with {needle:?}; log: {:#?}",
            self.log.lock().unwrap()
        );
    }

    /// Resident memory (VmRSS) in bytes, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        proc_status_field(self.pid(), "VmRSS:") * 1024
    }

    /// User plus system CPU time used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// How many file descriptors the process has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap()
}

/// Reads stderr until the "listening on ADDR" line, then keeps collecting it on a thread.
fn read_startup(stderr: ChildStderr) -> (SocketAddr, Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let mut lines = BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let addr = loop {
        // When the server exits before listening, its own words say why (a port in use, a
        // bad flag): show them, not only that it exited.
        let Some(Ok(line)) = lines.next() else {
            panic!(
                "robochat serve exited before listening; it said:\n{}",
                before.join("\n")
            );
        };
        before.push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            break addr.parse().expect("address in the start-up line");
        }
    };
    let log = Arc::new(Mutex::new(before));
    let sink = Arc::clone(&log);
    let thread = thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (addr, log, thread)
}

/// The address a `robochat serve` process announced in a log line as `announce` followed by
/// the address (and a path): waits for the line.
pub fn logged_addr(server: &ServeProcess, announce: &str) -> SocketAddr {
    server.wait_for_log(announce);
    let log = server.log.lock().unwrap();
    let line = log.iter().find(|l| l.contains(announce)).unwrap();
    let rest = line.split(announce).nth(1).unwrap();
    let addr = rest.split('/').next().unwrap();
    addr.parse()
        .unwrap_or_else(|e| panic!("{addr:?} in {line:?}: {e}"))
}

/// The web listener's address of a `robochat serve --web ADDR`, from its start-up log line
/// `web chat on http://ADDR/ ...`.
pub fn web_addr(server: &ServeProcess) -> SocketAddr {
    logged_addr(server, "web chat on http://")
}

/// The address of `--metrics ADDR`, from its start-up log line `metrics on http://ADDR/metrics`.
pub fn metrics_addr(server: &ServeProcess) -> SocketAddr {
    logged_addr(server, "metrics on http://")
}

/// The body of `GET /metrics` from `addr`.
pub fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: robochat\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    response.split("\r\n\r\n").nth(1).unwrap().to_owned()
}

/// The value of the sample `name` (with its labels) in `body`.
pub fn sample(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
        .parse()
        .unwrap()
}

/// Scrapes until `ready` holds for the body (connections close a moment after their client
/// sees them close), and returns it.
pub fn scrape_until(addr: SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let body = scrape(addr);
        if ready(&body) {
            return body;
        }
        assert!(
            started.elapsed() < READ_TIMEOUT,
            "metrics never settled:\n{body}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the metrics at `addr` (`--metrics`) have the sample `name` (with its labels)
/// at `value` or more.
pub fn wait_for_metric(addr: SocketAddr, name: &str, value: u64) {
    scrape_until(addr, |body| sample(body, name) >= value);
}

/// The python of a virtual environment a test needs: the one `env` names, or `venv` (such as
/// `target/web-venv`) in this repository. The test fails, saying `missing` (how to install it),
/// unless that python can run `check` (a Python statement that fails without the packages).
pub fn venv_python(env: &str, venv: &str, check: &str, missing: &str) -> std::path::PathBuf {
    let python = std::env::var_os(env)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(venv)
                .join("bin/python")
        });
    let installed = Command::new(&python)
        .args(["-c", check])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(installed, "{}: {missing}", python.display());
    python
}

/// A loopback port that refuses connections and that no other test can take while the returned
/// socket lives: bound, but not listening.
pub fn refusing_port() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a socket this function creates and hands over as OwnedFd.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind");
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut bound_len = len;
        let rc = libc::getsockname(
            fd,
            &mut bound as *mut _ as *mut libc::sockaddr,
            &mut bound_len,
        );
        assert_eq!(rc, 0, "getsockname");
        (owned, u16::from_be(bound.sin_port))
    }
}

/// Poll events that mean the peer closed or reset the connection.
pub const HANGUP: i16 = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;

/// Writes `batch` over and over without reading until the server stops taking it (no progress
/// for a second) or closes; returns the bytes sent and whether it closed. Leaves `stream`
/// non-blocking.
pub fn flood_until_pushed_back(stream: &TcpStream, batch: &[u8]) -> (usize, bool) {
    stream.set_nonblocking(true).unwrap();
    let (mut sent, mut closed) = (0usize, false);
    while !closed {
        match (&*stream).write(&batch[sent % batch.len()..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let events = poll_events(
                    stream,
                    libc::POLLOUT | libc::POLLRDHUP,
                    Duration::from_secs(1),
                );
                if events == 0 {
                    break; // pushed back: the server stopped reading
                }
                closed = events & HANGUP != 0;
            }
            Err(_) => closed = true,
        }
        assert!(sent < 1 << 30, "the server never pushed back");
    }
    (sent, closed)
}

/// Waits at most `timeout` for `events` on `stream` without reading or writing it; returns the
/// events that came (errors and hang-ups always count), or 0 on timeout.
pub fn poll_events(stream: &TcpStream, events: i16, timeout: Duration) -> i16 {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own.
    let rc = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
    if rc > 0 {
        fd.revents
    } else {
        0
    }
}
