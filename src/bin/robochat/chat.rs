//! `robochat chat`: a terminal client, the successor of the tutorial's ChatClient.
//!
//! It prints the greeting, sends each line typed (or piped) as `USER::LINE`, and prints each
//! reply under a header like the tutorial's. When standard input ends it half-closes the
//! connection, so the server answers everything sent and then closes: nothing is lost when the
//! input is a script.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use robochat::clock::LocalTime;
use robochat::protocol::MAX_USERNAME;

use crate::args::{print_text, value, Failure};

const HELP: &str = "\
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
    let user = user.unwrap_or_else(login_name);
    check_username(&user).map_err(Failure::Usage)?;
    let stream = connect_to(&connect).map_err(Failure::Runtime)?;
    chat(stream, user).map_err(|e| Failure::Runtime(format!("connection to {connect} failed: {e}")))
}

fn login_name() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "me".to_owned())
}

fn check_username(user: &str) -> Result<(), String> {
    if user.is_empty() || user.len() > MAX_USERNAME {
        return Err(format!("--user must be 1 to {MAX_USERNAME} bytes long"));
    }
    if user.contains("::") || user.contains(['\n', '\r']) {
        return Err("--user must not contain '::' or line breaks".into());
    }
    Ok(())
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

fn chat(stream: TcpStream, user: String) -> io::Result<()> {
    let sender = stream.try_clone()?;
    // Standard input is read on its own thread, so replies print as soon as they arrive.
    thread::spawn(move || forward_input(sender, &user));
    print_replies(stream)
}

/// Sends each input line as a message; half-closes the connection when the input ends.
fn forward_input(mut stream: TcpStream, user: &str) {
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim_end_matches('\r');
        if stream
            .write_all(format!("{user}::{line}\n").as_bytes())
            .is_err()
        {
            return; // the server is gone; the reply side reports it
        }
        if line.trim() == "exit" {
            break;
        }
    }
    // "No more messages": the server answers what it has, then closes.
    let _ = stream.shutdown(Shutdown::Write);
}

/// Prints the greeting, then each reply under a header, until the server closes.
fn print_replies(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let stdout = io::stdout();
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let mut out = stdout.lock();
        if first {
            writeln!(out, "{text}")?;
            first = false;
        } else {
            writeln!(out, "\n【机器人小图】 {}\n{text}", LocalTime::now())?;
        }
        out.flush()?;
    }
}
