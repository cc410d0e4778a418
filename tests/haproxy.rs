//! robochat behind a real HAProxy, configured from `deploy/haproxy.cfg`: two `--proxy-protocol`
//! backends on loopback, chats through the proxy, the real client address in the backends'
//! logs, and a backend killed while new connections keep being served by the other.
//!
//! It needs the `haproxy` program, which `.ci/run` installs from Debian's packages, so it is
//! not part of a plain `cargo test`: run it with `cargo test --test haproxy -- --ignored`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{robochat_bin, Client, ServeProcess, READ_TIMEOUT};

/// A port that was free a moment ago (HAProxy needs a fixed one in its configuration).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `deploy/haproxy.cfg`, pointed at our loopback backends instead of its example addresses.
fn configuration(frontend: u16, backends: &[SocketAddr]) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
            .unwrap();
    let mut config = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server chat") {
            continue; // replaced below
        }
        let line = match trimmed {
            "bind :9999" => format!("    bind 127.0.0.1:{frontend}"),
            // The test process may hold far fewer open files than the example allows for.
            "maxconn 200000" => "    maxconn 1000".to_owned(),
            // Notice a dead backend quickly.
            _ if trimmed.starts_with("default-server check inter") => {
                line.replace("inter 2s fall 2 rise 2", "inter 300ms fall 1 rise 1")
            }
            _ => line.to_owned(),
        };
        config.push_str(&line);
        config.push('\n');
    }
    for (i, backend) in backends.iter().enumerate() {
        config.push_str(&format!("    server chat{} {backend}\n", i + 1));
    }
    config
}

struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_haproxy(config: &str) -> HaProxy {
    let path = std::env::temp_dir().join(format!("robochat-haproxy-{}.cfg", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("haproxy is not installed: `apt-get install haproxy` (or run .ci/run)");
    HaProxy(child)
}

/// Connects through the proxy and chats once; `None` if that connection was not served.
fn chat_through(frontend: u16, text: &str) -> Option<(u16, String)> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", frontend)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let local_port = stream.local_addr().ok()?.port();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if line.trim_end() != robochat::DEFAULT_GREETING {
        return None;
    }
    std::io::Write::write_all(reader.get_mut(), format!("bob::{text}\n").as_bytes()).ok()?;
    line.clear();
    reader.read_line(&mut line).ok()?;
    Some((local_port, line.trim_end().to_owned()))
}

fn backend() -> ServeProcess {
    let mut command = Command::new(robochat_bin());
    command.env("RUST_LOG", "debug");
    ServeProcess::start_with(
        command,
        "127.0.0.1:0",
        &["--robot", "echo", "--proxy-protocol"],
    )
}

#[test]
#[ignore = "needs haproxy; .ci/run installs it and runs this"]
fn a_fleet_behind_haproxy_sees_real_clients_and_survives_a_dead_backend() {
    let first = backend();
    let second = backend();
    let frontend = free_port();
    let _haproxy = start_haproxy(&configuration(frontend, &[first.addr, second.addr]));

    // Wait for HAProxy to listen and for its health checks to find the backends up.
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut served = None;
    while served.is_none() {
        assert!(Instant::now() < deadline, "never served through HAProxy");
        served = chat_through(frontend, "hello through the proxy");
        if served.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (client_port, reply) = served.unwrap();
    assert_eq!(reply, "hello through the proxy");
    // The backend that served it logged the real client (this test's socket), not HAProxy.
    let client = format!("is for client 127.0.0.1:{client_port}");
    let deadline = Instant::now() + READ_TIMEOUT;
    let logged = |s: &ServeProcess| s.log.lock().unwrap().iter().any(|l| l.contains(&client));
    while !logged(&first) && !logged(&second) {
        assert!(Instant::now() < deadline, "no backend logged {client}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // One backend dies; once the health check notices, every new connection is served.
    drop(first);
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut in_a_row = 0;
    let mut i = 0;
    while in_a_row < 20 {
        assert!(
            Instant::now() < deadline,
            "new connections were not all served again"
        );
        i += 1;
        match chat_through(frontend, &format!("after {i}")) {
            Some((_, reply)) if reply == format!("after {i}") => in_a_row += 1,
            _ => in_a_row = 0,
        }
    }
    let mut direct = Client::connect(second.addr);
    direct.send("PROXY TCP4 192.0.2.9 192.0.2.1 1234 9999\r\n");
    assert_eq!(
        direct.ask("bob", "still the second backend"),
        "still the second backend"
    );
}
