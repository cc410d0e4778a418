//! A small scripted HTTP/1.1 server for the web robot tests: it plays an API on 127.0.0.1,
//! records every request it gets, and answers from a queue of scripted responses.
//!
//! It keeps connections alive (as `ureq` expects) unless a response says `Connection: close`,
//! runs one thread per connection (at most [`MAX_CONNECTIONS`] at once), and stops by itself:
//! dropping the [`FakeHttp`] ends the accept thread and every connection thread within about
//! [`POLL`], even one that is in the middle of a scripted delay.
#![allow(dead_code)] // each test uses its own subset

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Connections served at once; more are closed at once (the tests open one or two).
const MAX_CONNECTIONS: usize = 16;
/// The longest an idle kept-alive connection is held open.
const IDLE: Duration = Duration::from_secs(30);
/// The largest request accepted (headers plus body).
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// One scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waits this long after reading the request before answering.
    pub delay: Duration,
}

impl Reply {
    /// A `200 OK` with a JSON body.
    pub fn json(body: serde_json::Value) -> Reply {
        Reply::status(200, body.to_string())
    }

    /// `status` with `body` as `application/json`.
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query exactly as sent (still percent-encoded), if any.
    pub raw_query: Option<String>,
    /// The query parameters, percent-decoded (`+` kept as `+`: it is not a space in a URL query
    /// unless a form encoder put it there, and robots here must send spaces as `%20`).
    pub params: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics if it is not: the robot sent a bad request).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Request>>,
    /// The answer to `GET …/models` (the openai robot's start-up check), kept out of the
    /// scripted replies and the requests so that the check does not shift them.
    models: Mutex<Reply>,
    model_requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
    connections: AtomicUsize,
}

/// A running fake API. Dropping it stops it.
pub struct FakeHttp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeHttp {
    /// Starts a server on 127.0.0.1 that answers with `replies`, in order; a request beyond them
    /// gets a 500 saying so.
    pub fn start(replies: Vec<Reply>) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            replies: Mutex::new(replies.into()),
            requests: Mutex::new(Vec::new()),
            models: Mutex::new(Reply::json(
                serde_json::json!({"object": "list", "data": [{"id": "test-model"}]}),
            )),
            model_requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || accept_loop(listener, shared))
        };
        FakeHttp {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The only request received (panics unless there was exactly one).
    pub fn request(&self) -> Request {
        let requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "expected exactly one request: {requests:#?}"
        );
        requests.into_iter().next().unwrap()
    }

    /// What `GET …/models` answers from now on (by default, a list of `test-model`).
    pub fn set_models(&self, reply: Reply) {
        *self.shared.models.lock().unwrap() = reply;
    }

    /// The `GET …/models` requests received so far.
    pub fn model_requests(&self) -> Vec<Request> {
        self.shared.model_requests.lock().unwrap().clone()
    }

    /// Appends more scripted replies.
    pub fn push(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees the stop flag and returns.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        threads.retain(|t| !t.is_finished());
        if shared.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue; // dropped: closed at once
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(&shared);
        threads.push(thread::spawn(move || {
            let _ = serve(stream, &shared);
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Serves one connection until the client closes it, a reply closes it, it idles too long, or
/// the server stops.
fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(POLL))?;
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer, shared)? else {
            return Ok(());
        };
        let client_closes = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply = if request.method == "GET" && request.path.ends_with("/models") {
            shared.model_requests.lock().unwrap().push(request);
            shared.models.lock().unwrap().clone()
        } else {
            shared.requests.lock().unwrap().push(request);
            shared
                .replies
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| {
                    Reply::status(500, r#"{"error":"fake_http: no scripted response left"}"#)
                })
        };
        if !wait(reply.delay, shared) {
            return Ok(());
        }
        let closes = client_closes
            || reply.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
            });
        let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(&reply.body)?;
        stream.flush()?;
        if closes {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Sleeps `delay` in short steps; false if the server stopped meanwhile.
fn wait(delay: Duration, shared: &Shared) -> bool {
    let end = Instant::now() + delay;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(POLL));
    }
}

/// Reads more bytes into `buffer`; false at end of stream, stop, or idle timeout.
fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, shared: &Shared, since: Instant) -> bool {
    let mut chunk = [0u8; 8192];
    loop {
        if shared.stop.load(Ordering::SeqCst)
            || since.elapsed() > IDLE
            || buffer.len() > MAX_REQUEST
        {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
}

/// Reads one request (headers, then a `Content-Length` or chunked body); `None` when the
/// connection ends first.
fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    shared: &Shared,
) -> std::io::Result<Option<Request>> {
    let since = Instant::now();
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at;
        }
        if !fill(stream, buffer, shared, since) {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };

    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = find(buffer, b"\r\n") {
                    break at;
                }
                if !fill(stream, buffer, shared, since) {
                    return Ok(None);
                }
            };
            let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad chunk size"))?;
            buffer.drain(..line_end + 2);
            while buffer.len() < size + 2 {
                if !fill(stream, buffer, shared, since) {
                    return Ok(None);
                }
            }
            body.extend_from_slice(&buffer[..size]);
            buffer.drain(..size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            if !fill(stream, buffer, shared, since) {
                return Ok(None);
            }
        }
        buffer.drain(..length).collect()
    };

    let (path, raw_query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.clone(), None),
    };
    let params = raw_query
        .as_deref()
        .map(|query| {
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Request {
        method,
        path,
        raw_query,
        params,
        headers,
        body,
    }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes `%XX` escapes (as UTF-8, lossily); anything else is kept as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}
