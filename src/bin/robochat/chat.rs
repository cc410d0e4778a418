//! `robochat chat`: a terminal client, the successor of the tutorial's ChatClient.
//!
//! It prints the greeting, sends each line typed (or piped) as `USER::LINE`, and prints each
//! reply under a header like the tutorial's. When standard input ends it half-closes the
//! connection, so the server answers everything sent and then closes: nothing is lost when the
//! input is a script.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use robochat::clock::LocalTime;
use robochat::protocol;

use crate::args::{print_text, value, Failure};

pub const HELP: &str = "\
Chat with a robochat server.

Usage: robochat chat [OPTIONS]

Type a message and press Enter; the robot's reply is printed under a header with the time.
`exit` ends the chat. Input may be piped: `printf 'hello\\nexit\\n' | robochat chat`.

Options:
  --connect ADDR   Server address [default: 127.0.0.1:9999]
  --user NAME      Your name, sent before each message [default: your login name]
  -h, --help       Print this help";

/// The longest line accepted from the server, so a misbehaving server cannot exhaust memory.
const MAX_REPLY_LINE: u64 = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn main(mut parser: lexopt::Parser) -> Result<(), Failure> {
    use lexopt::Arg::{Long, Short};
    let mut connect = "127.0.0.1:9999".to_owned();
    let mut user = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("connect") => connect = value(&mut parser, "connect")?,
            Long("user") => user = Some(value::<String>(&mut parser, "user")?),
            Short('h') | Long("help") => {
                print_text(HELP);
                return Ok(());
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let user = match user {
        Some(user) => user,
        None => login_name()?,
    };
    protocol::check_username(&user).map_err(|e| Failure::Usage(format!("--user {e}")))?;
    let stream = connect_to(&connect).map_err(Failure::Runtime)?;
    chat(stream, user)
}

/// The name to chat under when `--user` is not given: the login name from the environment, or
/// else the system's account name for this user.
fn login_name() -> Result<String, Failure> {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .or_else(account_name)
        .ok_or_else(|| {
            Failure::Usage(
                "cannot tell your name (USER and LOGNAME are not set, and this user has no \
                 account name): give one with --user NAME"
                    .into(),
            )
        })
}

/// The account name of the process's user, from the system's user database.
fn account_name() -> Option<String> {
    let mut record: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getpwuid_r writes into `record` and `buf`, both live and of the sizes given, and
    // sets `found` to `&record` or null; the name it points to lives in `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut record,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || record.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points to a NUL-terminated string inside `buf`, which is still alive.
    let name = unsafe { std::ffi::CStr::from_ptr(record.pw_name) };
    name.to_str()
        .ok()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

fn connect_to(addr: &str) -> Result<TcpStream, String> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    let why = last.map_or_else(|| "no address".to_owned(), |e| e.to_string());
    Err(format!(
        "cannot connect to {addr}: {why}\nIs the server running? Start one with `robochat serve`."
    ))
}

fn chat(stream: TcpStream, user: String) -> Result<(), Failure> {
    let sender = stream
        .try_clone()
        .map_err(|e| Failure::Runtime(format!("cannot use the connection: {e}")))?;
    // Set once this side has said it is done (`exit`, or the end of the input): only then is
    // the server's close the end of a chat rather than a lost connection.
    let done_sending = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&done_sending);
    // Standard input is read on its own thread, so replies print as soon as they arrive.
    thread::spawn(move || forward_input(sender, &user, &done));
    print_replies(stream, &done_sending)
}

/// Sends each input line as a message; half-closes the connection when the input ends.
fn forward_input(mut stream: TcpStream, user: &str, done: &AtomicBool) {
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim_end_matches('\r');
        let exit = line.trim() == "exit";
        // Said before the message leaves: the goodbye may come back before this thread runs on.
        done.store(exit, Ordering::SeqCst);
        if stream
            .write_all(&protocol::encode_message(user, line, true))
            .is_err()
        {
            done.store(false, Ordering::SeqCst);
            return; // the server is gone; the reply side reports it
        }
        if exit {
            break;
        }
    }
    // "No more messages": the server answers what it has, then closes.
    done.store(true, Ordering::SeqCst);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Prints the greeting, then each reply under a header, until the server closes. The close is
/// an error unless this side was done (`exit`, or the end of the input): a server that goes
/// away, refuses the connection or never greets must not look like a finished chat.
fn print_replies(stream: TcpStream, done_sending: &AtomicBool) -> Result<(), Failure> {
    let mut reader = BufReader::new(stream);
    let stdout = io::stdout();
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| {
                Failure::Runtime(if first {
                    format!("the connection was closed by the server before its greeting: {e}")
                } else {
                    format!("the connection was lost: {e}")
                })
            })?;
        if n == 0 {
            return if first {
                Err(Failure::Runtime(
                    "the connection was closed by the server before its greeting".into(),
                ))
            } else if done_sending.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(Failure::Runtime("connection closed by the server".into()))
            };
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if first && text.starts_with(protocol::ERROR_PREFIX) {
            // Instead of a greeting: the server is full, say, and closes.
            return Err(Failure::Runtime(format!(
                "the server refused the connection: {text}"
            )));
        }
        let mut out = stdout.lock();
        let printed = if first {
            writeln!(out, "{text}")
        } else {
            writeln!(out, "\n【机器人小图】 {}\n{text}", LocalTime::now())
        };
        first = false;
        printed
            .and_then(|()| out.flush())
            .map_err(|e| Failure::Runtime(format!("cannot write to standard output: {e}")))?;
    }
}
