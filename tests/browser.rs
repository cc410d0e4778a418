//! The chat page in a real browser: Debian's headless Chromium, driven by Selenium from
//! `tests/fixtures/browser_chat.py`, against the built `robochat serve --web`.
//!
//! The first server's robot is down (`--robot openai` in front of a port that refuses), so the
//! page shows an `ERR` as an error. When the script asks, the test stops that server (SIGTERM:
//! the page gets the shutdown notice and a close 1001, and says it is reconnecting) and starts
//! one with the embedded robot on the same web port, to which the page reconnects by itself;
//! the script goes on chatting, then leaves with `exit` and reconnects with the page's button.
//!
//! It needs Chromium, its driver and a Python virtual environment with the pinned packages of
//! `tests/fixtures/web-requirements.txt`, which `.ci/run` provides, so it is not part of a
//! plain `cargo test`: run it with `cargo test --test browser -- --ignored --nocapture`
//! (`--nocapture` shows each step and its time). With
//! `ROBOCHAT_PAGE_SCREENSHOT=docs/chat-page.png` it also saves the README's screenshot. A plain
//! `cargo test` checks only what can be read from the page's source.
#![cfg(feature = "web")]
#![cfg(feature = "http")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{refusing_port, web_addr, ServeProcess};

const WEB_MISSING: &str = "the browser test needs chromium and chromium-driver (Debian packages) \
     and Selenium: `python3 -m venv target/web-venv && target/web-venv/bin/pip install --no-deps \
     -r tests/fixtures/web-requirements.txt` (or run .ci/run), or point ROBOCHAT_WEB_PYTHON at \
     the python of a virtual environment that has them";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the script may take for one step (between two requests to the test), and in all.
const STEP_WAIT: Duration = Duration::from_secs(60);
const TOTAL_WAIT: Duration = Duration::from_secs(120);

/// The python of the virtual environment holding Selenium: `ROBOCHAT_WEB_PYTHON`, or
/// `target/web-venv/bin/python` in this repository; and the browser it drives.
fn web_python() -> PathBuf {
    let python = common::venv_python(
        "ROBOCHAT_WEB_PYTHON",
        "target/web-venv",
        "import selenium.webdriver",
        WEB_MISSING,
    );
    for program in [CHROMIUM, CHROMEDRIVER] {
        assert!(Path::new(program).exists(), "no {program}: {WEB_MISSING}");
    }
    python
}

/// The Selenium script, in a process group of its own (with its driver and browser), killed as
/// a whole when dropped.
struct Script {
    child: Child,
    stdin: ChildStdin,
    /// Its stdout, line by line: its requests to the test.
    requests: mpsc::Receiver<String>,
    /// What it wrote on stderr: its progress, and why it failed.
    said: Arc<Mutex<String>>,
}

impl Script {
    fn start(python: &Path, url: &str, screenshot: Option<PathBuf>) -> Script {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/browser_chat.py");
        let mut command = Command::new(python);
        command.arg(&script).arg(url);
        if let Some(path) = screenshot {
            command.arg("--screenshot").arg(path);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}; {WEB_MISSING}", python.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, requests) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let said = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&said);
        let mut stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..n]);
                eprint!("{text}");
                sink.lock().unwrap().push_str(&text);
            }
        });
        Script {
            child,
            stdin,
            requests,
            said,
        }
    }

    /// Its next request, or a panic with what it said if none comes in time.
    fn request(&mut self, deadline: Instant) -> String {
        let wait = STEP_WAIT.min(deadline.saturating_duration_since(Instant::now()));
        match self.requests.recv_timeout(wait) {
            Ok(line) => line,
            Err(e) => {
                // Its last words may still be on their way.
                let status = self.child.try_wait().ok().flatten();
                thread::sleep(Duration::from_millis(300));
                panic!(
                    "no request from the browser script ({e:?}; exited: {status:?}); it said:\n{}",
                    self.said.lock().unwrap()
                );
            }
        }
    }

    fn answer(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("answer the browser script");
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // SAFETY: kill the process group this test made (its leader is our child).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs Chromium and Selenium: run by .ci/run, or with --ignored"]
fn the_chat_page_chats_shows_errors_and_reconnects_in_a_real_browser() {
    let started = Instant::now();
    let python = web_python();
    // A robot that is down: the openai robot in front of a port that refuses connections.
    let (_refusing, dead_port) = refusing_port();
    let dead_api = format!("http://127.0.0.1:{dead_port}/v1");
    let down = [
        "--web",
        "127.0.0.1:0",
        "--robot",
        "openai",
        "--openai-url",
        &dead_api,
        "--robot-timeout",
        "2",
    ];
    let mut server = ServeProcess::start(&down);
    let web = web_addr(&server);
    let screenshot = std::env::var_os("ROBOCHAT_PAGE_SCREENSHOT")
        .map(|path| Path::new(env!("CARGO_MANIFEST_DIR")).join(path));
    let mut script = Script::start(&python, &format!("http://{web}/"), screenshot);
    let deadline = started + TOTAL_WAIT;
    loop {
        match script.request(deadline).as_str() {
            "STOP" => {
                server.signal(libc::SIGTERM);
                assert_eq!(server.wait(), Some(0), "robochat serve's exit code");
                script.answer("STOPPED");
            }
            "START" => {
                let web_arg = web.to_string();
                server = ServeProcess::start(&["--web", &web_arg]);
                assert_eq!(web_addr(&server), web, "the same web port again");
                script.answer("STARTED");
            }
            "PASS" => break,
            other => panic!("the browser script asked {other:?}"),
        }
    }
    let status = script.child.wait().expect("wait for the browser script");
    assert!(status.success(), "the browser script: {status}");
    eprintln!("browser test: {:.1} s", started.elapsed().as_secs_f64());
}

/// What the browser test cannot see at a glance, checked on every `cargo test`: the page is one
/// small file that fetches nothing else, puts text into the document only as text, and has the
/// ids the browser test and the README name.
#[test]
fn the_page_is_one_small_file_that_loads_nothing_else() {
    let page = robochat::web::PAGE;
    assert!(page.len() < 15 * 1024, "the page is {} bytes", page.len());
    for outside in "src= href= @import url( @font-face fetch(".split(' ') {
        assert!(!page.contains(outside), "it loads something: {outside}");
    }
    for markup in "innerHTML outerHTML insertAdjacentHTML document.write".split(' ') {
        assert!(!page.contains(markup), "it writes markup: {markup}");
    }
    for id in "name message send status reconnect log live notice".split(' ') {
        assert!(page.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    assert!(page.contains(r#"aria-live="polite""#));
    assert!(page.contains("prefers-color-scheme:dark"));
}
