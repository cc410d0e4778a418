//! robochat behind a real HAProxy, configured from `deploy/haproxy.cfg` and
//! `deploy/haproxy-tls.cfg`: `--proxy-protocol` backends on loopback, chats through the proxy
//! (plain and over TLS), the real client address in the backends' logs and in HAProxy's own log,
//! `haproxy -c` without a warning, and a backend killed while every new connection is still
//! served, before and after the health check notices; and the web frontend, with its HTTP
//! health check, in front of robochat's web listener: the page and a WebSocket chat through it.
//!
//! It needs the `haproxy` and `openssl` programs, which `.ci/run` installs from Debian's
//! packages, and python3 (the TLS client), so it is not part of a plain `cargo test`: run it with
//! `cargo test --test haproxy -- --ignored`.

mod common;
#[cfg(feature = "web")]
mod ws;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{poll_events, Client, ServeProcess, READ_TIMEOUT};

const HAPROXY_MISSING: &str =
    "haproxy is not installed: `apt-get install haproxy` (or run .ci/run)";

/// Where the shipped TLS configuration expects its certificate.
const SHIPPED_CERT: &str = "/etc/haproxy/certs/robochat.pem";
/// The shipped health checks' timing.
const SHIPPED_CHECKS: &str = "inter 2s fall 2 rise 2";
/// Health checks that notice a dead backend within a second.
const FAST_CHECKS: &str = "inter 300ms fall 1 rise 1";
/// Health checks that do not notice a dead backend while a test runs.
const SLOW_CHECKS: &str = "inter 10m fall 2 rise 2";

fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory of its own for one test's files, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("robochat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (HAProxy needs a fixed one in its configuration).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a test's HAProxy fronts: its ports, and the robochat servers behind them.
struct Fleet<'a> {
    /// The chat's frontend (plain or TLS) and the servers' line ports.
    frontend: u16,
    backends: &'a [SocketAddr],
    /// The web frontend (`bind :8080` as shipped) and the servers' web listeners.
    web_frontend: u16,
    web_backends: &'a [SocketAddr],
}

impl<'a> Fleet<'a> {
    /// Line-protocol servers only (the web backend has none).
    fn line(frontend: u16, backends: &'a [SocketAddr]) -> Fleet<'a> {
        Fleet {
            frontend,
            backends,
            web_frontend: free_port(),
            web_backends: &[],
        }
    }
}

/// A shipped configuration pointed at our loopback backends instead of its example addresses:
/// the frontends on the fleet's ports, `checks` as the health checks' timing, the certificate
/// (if it uses one) in `dir`, and a stats socket in `dir` through which the test asks HAProxy
/// what it thinks of the servers.
fn configuration(shipped: &str, fleet: &Fleet, checks: &str, dir: &TempDir) -> String {
    let cert = dir.join("robochat.pem");
    let mut config = String::new();
    let (mut binds, mut timings) = (0, 0);
    let (mut chat_servers, mut web_servers) = (false, false);
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        // The example servers of each backend give way to the fleet's, listed where they were.
        if trimmed.starts_with("server chat") {
            if !std::mem::replace(&mut chat_servers, true) {
                for (i, backend) in fleet.backends.iter().enumerate() {
                    config.push_str(&format!("    server chat{} {backend}\n", i + 1));
                }
            }
            continue;
        }
        if trimmed.starts_with("server web") {
            if !std::mem::replace(&mut web_servers, true) {
                for (i, backend) in fleet.web_backends.iter().enumerate() {
                    config.push_str(&format!("    server web{} {backend}\n", i + 1));
                }
            }
            continue;
        }
        let line = if let Some(rest) = trimmed.strip_prefix("bind :") {
            binds += 1;
            let port = if rest.starts_with("8080") {
                fleet.web_frontend
            } else {
                fleet.frontend
            };
            let options = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let options = options.replace(SHIPPED_CERT, cert.to_str().unwrap());
            format!("    bind 127.0.0.1:{port}{options}")
        } else if trimmed == "maxconn 200000" {
            // The test process may hold far fewer open files than the example allows for.
            "    maxconn 1000".to_owned()
        } else if trimmed.starts_with("default-server check") && line.contains(SHIPPED_CHECKS) {
            timings += 1;
            line.replace(SHIPPED_CHECKS, checks)
        } else {
            line.to_owned()
        };
        config.push_str(&line);
        config.push('\n');
        if trimmed == "global" {
            let stats = dir.join("stats.sock");
            config.push_str(&format!("    stats socket {} mode 600\n", stats.display()));
        }
    }
    assert!(
        chat_servers && binds >= 1 && timings == binds,
        "the shipped configuration no longer has a `bind :PORT` line, `server chatN` lines and \
         one `default-server check {SHIPPED_CHECKS}` line per frontend: update this test"
    );
    config
}

/// Runs `haproxy -c` on a configuration file in zero-warning mode (`-dW`) and fails the test
/// unless it is valid and HAProxy says nothing about it but its version notices.
fn assert_check_is_clean(path: &Path) {
    let output = Command::new("haproxy")
        .args(["-dW", "-c", "-f"])
        .arg(path)
        .output()
        .expect(HAPROXY_MISSING);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success()
            && text.contains("Configuration file is valid")
            && !text.contains("WARNING")
            && !text.contains("ALERT"),
        "haproxy -c -f {}: {}\n{text}",
        path.display(),
        output.status
    );
}

/// A HAProxy process; its standard output (where the configurations send the log) and its
/// standard error are collected as they come.
struct HaProxy {
    child: Child,
    stats: PathBuf,
    log: Arc<Mutex<String>>,
    errors: Arc<Mutex<String>>,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

impl HaProxy {
    /// Writes `config` into `dir`, checks it with `haproxy -c` (no warning allowed), starts
    /// HAProxy with it and waits until it has bound its sockets (its stats socket answers).
    fn start(config: &str, dir: &TempDir) -> HaProxy {
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        assert_check_is_clean(&path);
        let mut child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(HAPROXY_MISSING);
        let log = collect(child.stdout.take().unwrap());
        let errors = collect(child.stderr.take().unwrap());
        let haproxy = HaProxy {
            child,
            stats: dir.join("stats.sock"),
            log,
            errors,
        };
        // HAProxy binds every socket before it serves any, so once the stats socket accepts,
        // the frontend's is bound too.
        let deadline = Instant::now() + READ_TIMEOUT;
        while UnixStream::connect(&haproxy.stats).is_err() {
            assert!(Instant::now() < deadline, "HAProxy never started");
            thread::sleep(Duration::from_millis(20));
        }
        haproxy
    }

    /// HAProxy's view of one server (`chat1`, `web1`…) from `show stat`: its status (`UP`,
    /// `UP 1/2`, `DOWN`…), connection errors (`econ`), redispatches away from it (`wredis`)
    /// and so on, by column name.
    fn server(&mut self, name: &str) -> HashMap<String, String> {
        let backend = if name.starts_with("web") {
            "robochat_web"
        } else {
            "robochat"
        };
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "HAProxy exited ({status}):\n{}",
                self.errors.lock().unwrap()
            );
        }
        let mut socket = UnixStream::connect(&self.stats).expect("HAProxy's stats socket");
        socket.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        socket.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        socket.read_to_string(&mut csv).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .unwrap_or_else(|| panic!("not a stats table: {csv}"))
            .split(',')
            .collect();
        lines
            .map(|line| {
                let row: HashMap<String, String> = header
                    .iter()
                    .zip(line.split(','))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                row
            })
            .find(|row| row["pxname"] == backend && row["svname"] == name)
            .unwrap_or_else(|| panic!("no server {name} in {csv}"))
    }

    /// Waits until HAProxy has logged a line containing `needle`.
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + READ_TIMEOUT;
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "HAProxy logged no line with {needle:?}; its log:\n{}",
                self.log.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn counter(row: &HashMap<String, String>, column: &str) -> u64 {
    row[column].parse().unwrap_or(0)
}

/// Connects through the proxy and chats once; `None` if that connection was not served.
fn chat_through(frontend: u16, text: &str) -> Option<(u16, String)> {
    let stream = TcpStream::connect(("127.0.0.1", frontend)).ok()?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let local_port = stream.local_addr().ok()?.port();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if line.trim_end() != robochat::DEFAULT_GREETING {
        return None;
    }
    reader
        .get_mut()
        .write_all(format!("bob::{text}\n").as_bytes())
        .ok()?;
    line.clear();
    reader.read_line(&mut line).ok()?;
    Some((local_port, line.trim_end().to_owned()))
}

/// Chats through the proxy until a connection is served (HAProxy may still be starting up).
fn first_chat_through(frontend: u16, text: &str) -> u16 {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "never served through HAProxy");
        if let Some((port, reply)) = chat_through(frontend, text) {
            assert_eq!(reply, text);
            return port;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn backend() -> ServeProcess {
    ServeProcess::start_at_debug(&["--robot", "echo", "--proxy-protocol"])
}

/// Whether a backend logged a connection from the real client at `port` (passed on by HAProxy
/// with the PROXY protocol).
fn logged_client(backend: &ServeProcess, port: u16) -> bool {
    let client = format!("is for client 127.0.0.1:{port}");
    backend
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(&client))
}

/// The lines of one section (`defaults`, `backend robochat`…) of a configuration.
fn section<'a>(config: &'a str, header: &str) -> Vec<&'a str> {
    let mut lines = config.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "no section {header:?}");
    let mut body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .collect();
    // What follows the last indented line (blank lines, the comment of the next section) is not
    // this section's.
    while body
        .last()
        .is_some_and(|l| l.is_empty() || l.starts_with('#'))
    {
        body.pop();
    }
    body
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made by `openssl req` in `dir`.
/// Returns the certificate alone (what a client trusts) and the certificate with its key in
/// one file (what HAProxy's `crt` loads).
fn make_certificate(dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key, both) = (
        dir.join(&format!("{name}.crt")),
        dir.join(&format!("{name}.key")),
        dir.join(&format!("{name}.pem")),
    );
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is not installed: `apt-get install openssl` (or run .ci/run)");
    assert!(
        output.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap();
    std::fs::write(&both, pem).unwrap();
    (cert, both)
}

/// Runs `tests/fixtures/tls_client.py`: a TLS connection to `port` that trusts `ca` alone,
/// sends `line` after the greeting. Returns its output lines (its port, the TLS version, the
/// greeting, the reply) or, if it failed, its standard error.
fn tls_chat(port: u16, ca: &Path, line: &str) -> Result<Vec<String>, String> {
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tls_client.py"
        ))
        .args(["127.0.0.1", &port.to_string()])
        .arg(ca)
        .args(["localhost", line])
        .output()
        .expect("python3 runs the TLS client");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    Ok(stdout.lines().map(str::to_owned).collect())
}

#[test]
#[ignore = "needs haproxy and openssl; .ci/run installs them and runs this"]
fn the_shipped_configurations_pass_haproxy_check_without_a_warning() {
    let shipped_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg");
    assert_check_is_clean(&shipped_path);

    // The TLS one as shipped, but for its certificate's path.
    let dir = TempDir::new("haproxy-check");
    make_certificate(&dir, "robochat");
    let tls = shipped("haproxy-tls.cfg");
    let tls_path = dir.join("haproxy-tls.cfg");
    std::fs::write(
        &tls_path,
        tls.replace(SHIPPED_CERT, dir.join("robochat.pem").to_str().unwrap()),
    )
    .unwrap();
    assert_check_is_clean(&tls_path);

    // The TLS file repeats haproxy.cfg's defaults and backend: a fix to one is a fix to both.
    let plain = shipped("haproxy.cfg");
    for header in ["defaults", "backend robochat"] {
        assert_eq!(
            section(&plain, header),
            section(&tls, header),
            "`{header}` differs between deploy/haproxy.cfg and deploy/haproxy-tls.cfg"
        );
    }
}

#[test]
#[ignore = "needs haproxy; .ci/run installs it and runs this"]
fn a_fleet_behind_haproxy_sees_real_clients_and_routes_around_a_dead_backend() {
    let dir = TempDir::new("haproxy-fleet");
    let first = backend();
    let second = backend();
    let frontend = free_port();
    let config = configuration(
        &shipped("haproxy.cfg"),
        &Fleet::line(frontend, &[first.addr, second.addr]),
        FAST_CHECKS,
        &dir,
    );
    let mut haproxy = HaProxy::start(&config, &dir);

    let client_port = first_chat_through(frontend, "hello through the proxy");
    // The backend that served it logged the real client (this test's socket), not HAProxy.
    let deadline = Instant::now() + READ_TIMEOUT;
    while !logged_client(&first, client_port) && !logged_client(&second, client_port) {
        assert!(
            Instant::now() < deadline,
            "no backend logged client port {client_port}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // HAProxy's own log (standard output) has the connection too.
    haproxy.wait_for_log(&format!("127.0.0.1:{client_port} "));

    // One backend dies; the health check notices, and every new connection is served.
    drop(first);
    let deadline = Instant::now() + READ_TIMEOUT;
    while haproxy.server("chat1")["status"] != "DOWN" {
        assert!(
            Instant::now() < deadline,
            "the health check never noticed the dead backend"
        );
        thread::sleep(Duration::from_millis(50));
    }
    for i in 1..=20 {
        let text = format!("after {i}");
        let served = chat_through(frontend, &text);
        assert_eq!(
            served.map(|(_, reply)| reply),
            Some(text),
            "connection {i} after the health check noticed was not served"
        );
    }
    let mut direct = Client::connect(second.addr);
    direct.send("PROXY TCP4 192.0.2.9 192.0.2.1 1234 9999\r\n");
    assert_eq!(
        direct.ask("bob", "still the second backend"),
        "still the second backend"
    );
}

#[test]
#[ignore = "needs haproxy; .ci/run installs it and runs this"]
fn no_new_connection_fails_after_a_backend_dies_before_the_health_check_notices() {
    const N: usize = 50;
    let dir = TempDir::new("haproxy-window");
    let first = backend();
    let second = backend();
    let frontend = free_port();
    // Health checks ten minutes apart: HAProxy learns of the death only by connecting to it.
    let config = configuration(
        &shipped("haproxy.cfg"),
        &Fleet::line(frontend, &[first.addr, second.addr]),
        SLOW_CHECKS,
        &dir,
    );
    let mut haproxy = HaProxy::start(&config, &dir);
    first_chat_through(frontend, "hello through the proxy");
    assert!(haproxy.server("chat1")["status"].starts_with("UP"));

    // Kill a backend, and at once open N connections in a row: each must be greeted and
    // answered, including those that HAProxy first sends to the dead backend.
    drop(first);
    for i in 1..=N {
        let text = format!("after the kill {i}");
        let served = chat_through(frontend, &text);
        assert_eq!(
            served.map(|(_, reply)| reply),
            Some(text),
            "connection {i} of {N} after the kill was not served"
        );
    }

    // All of that happened before the health check noticed: HAProxy still counts the dead
    // backend as up, and it did send connections to it, which failed and went to the other.
    let dead = haproxy.server("chat1");
    let redispatched = counter(&dead, "wredis");
    eprintln!(
        "{N} connections after the kill, all served; {redispatched} of them were first sent \
         to the dead backend and redispatched; its status: {}",
        dead["status"]
    );
    assert!(
        dead["status"].starts_with("UP"),
        "the health check noticed the dead backend during the test: {dead:?}"
    );
    assert!(
        redispatched > 0,
        "no connection was sent to the dead backend, so the test proved nothing: {dead:?}"
    );
}

#[test]
#[ignore = "needs haproxy, openssl and python3; .ci/run installs them and runs this"]
fn haproxy_terminates_tls_in_front_of_robochat() {
    let dir = TempDir::new("haproxy-tls");
    let (cert, _) = make_certificate(&dir, "robochat");
    let chat = backend();
    let frontend = free_port();
    let config = configuration(
        &shipped("haproxy-tls.cfg"),
        &Fleet::line(frontend, &[chat.addr]),
        SHIPPED_CHECKS,
        &dir,
    );
    let _haproxy = HaProxy::start(&config, &dir);

    // A TLS client that trusts the certificate is greeted and answered.
    let lines = tls_chat(frontend, &cert, "alice::hello").unwrap_or_else(|e| panic!("{e}"));
    let [port, version, greeting, reply] = &lines[..] else {
        panic!("unexpected output from the TLS client: {lines:?}");
    };
    assert!(
        version == "TLSv1.3" || version == "TLSv1.2",
        "TLS version {version}"
    );
    assert_eq!(greeting, robochat::DEFAULT_GREETING);
    assert_eq!(reply, "hello");
    // The backend, still behind the PROXY protocol, logged the real client.
    let port: u16 = port.parse().unwrap();
    chat.wait_for_log(&format!("is for client 127.0.0.1:{port}"));

    // The client really checks the certificate: it refuses one it was not given.
    let (other, _) = make_certificate(&dir, "other");
    let refused = tls_chat(frontend, &other, "alice::hello").expect_err("an untrusted server");
    assert!(refused.contains("CERTIFICATE_VERIFY_FAILED"), "{refused}");

    // A plain-TCP client on the TLS port gets nothing: no greeting while it waits, and when
    // it speaks plain text, the connection ends without a word from robochat.
    let mut plain = TcpStream::connect(("127.0.0.1", frontend)).unwrap();
    plain.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    assert_eq!(
        poll_events(&plain, libc::POLLIN, Duration::from_millis(500)),
        0,
        "a plain connection to the TLS port was sent something"
    );
    plain.write_all(b"alice::hello\n").unwrap();
    let mut received = Vec::new();
    match plain.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("waiting for HAProxy to close the plain connection: {e}"),
    }
    let received = String::from_utf8_lossy(&received);
    assert!(
        !received.contains(robochat::DEFAULT_GREETING) && !received.contains("hello"),
        "a plain client got {received:?}"
    );
}

#[cfg(feature = "web")]
#[test]
#[ignore = "needs haproxy; .ci/run installs it and runs this"]
fn the_page_and_a_websocket_chat_pass_through_the_web_frontend() {
    let dir = TempDir::new("haproxy-web");
    let chat = ServeProcess::start_at_debug(&[
        "--robot",
        "echo",
        "--proxy-protocol",
        "--web",
        "127.0.0.1:0",
    ]);
    let web = common::web_addr(&chat);
    let fleet = Fleet {
        frontend: free_port(),
        backends: &[chat.addr],
        web_frontend: free_port(),
        web_backends: &[web],
    };
    let config = configuration(&shipped("haproxy.cfg"), &fleet, FAST_CHECKS, &dir);
    let mut haproxy = HaProxy::start(&config, &dir);

    // HAProxy's HTTP health check (a PROXY header, then GET /healthz) passes: layer 7 OK.
    let deadline = Instant::now() + READ_TIMEOUT;
    while haproxy.server("web1")["check_status"] != "L7OK" {
        assert!(
            Instant::now() < deadline,
            "the web listener never passed HAProxy's health check: {:?}",
            haproxy.server("web1")
        );
        thread::sleep(Duration::from_millis(50));
    }

    let frontend = SocketAddr::from(([127, 0, 0, 1], fleet.web_frontend));
    let page = ws::http(
        frontend,
        &format!("GET / HTTP/1.1\r\nHost: {frontend}\r\n\r\n"),
    );
    assert_eq!(page.status, 200);
    assert!(page.body_text().contains("<html"), "{}", page.body_text());

    // A WebSocket chat through the proxy, with the real client in the server's log.
    let mut client = ws::WsClient::open(frontend);
    assert_eq!(client.ask("bob", "through the proxy"), "through the proxy");
    let port = client.stream().local_addr().unwrap().port();
    chat.wait_for_log(&format!("is for client 127.0.0.1:{port}"));
    client.send_text("bob::exit");
    assert_eq!(client.text(), "再见！Goodbye!");
    client.expect_close(1000);
}
