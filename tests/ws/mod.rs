//! A WebSocket client for the tests, written from RFC 6455 alone: masked frames out, the
//! server's frames in, checked strictly, over a blocking socket whose every read waits at most
//! [`READ_TIMEOUT`]. Also in-process servers with a web listener, and plain HTTP exchanges.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};

use robochat::{EchoRobot, Server, ServerBuilder, ServerHandle, DEFAULT_GREETING};

use crate::common::{web_addr, ServeProcess, READ_TIMEOUT};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;
/// The FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;

/// The key of RFC 6455's example handshake (section 1.3), and its accept key.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The masking key of RFC 6455's examples (section 5.7).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// What the server says to `exit`, and at shutdown.
pub const GOODBYE: &str = "再见！Goodbye!";
pub const SHUTDOWN_NOTICE: &str = "服务器正在关闭，再见！The server is shutting down. Goodbye!";

/// How a frame's payload length is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// The fewest bytes, as RFC 6455 asks of a sender: 7 bits, 16 or 64.
    Shortest,
    /// Always the 16-bit form (126).
    Bits16,
    /// Always the 64-bit form (127).
    Bits64,
}

/// A frame header: the first byte (FIN, RSV1-3, opcode), the length `len` in the form `form`,
/// and the masking key if any.
pub fn header(first: u8, len: u64, mask: Option<[u8; 4]>, form: Len) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match (form, len) {
        (Len::Shortest, 0..=125) => out.push(mask_bit | len as u8),
        (Len::Shortest, 126..=0xFFFF) | (Len::Bits16, _) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    out
}

/// A frame with `payload`, masked with `mask` if given, its length written as `form`.
pub fn frame_with(first: u8, payload: &[u8], mask: Option<[u8; 4]>, form: Len) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, mask, form);
    match mask {
        Some(mask) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4])),
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client's frame: masked with [`MASK`], the shortest length.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(first, payload, Some(MASK), Len::Shortest)
}

/// A whole text message in one frame.
pub fn text(message: &str) -> Vec<u8> {
    frame(FIN | OP_TEXT, message.as_bytes())
}

/// A close frame with a status code and a reason (any bytes).
pub fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(FIN | OP_CLOSE, &payload)
}

/// A ping with `data`.
pub fn ping(data: &[u8]) -> Vec<u8> {
    frame(FIN | OP_PING, data)
}

/// The request head of a WebSocket upgrade to `/ws` for `host`, with `extra` header lines (each
/// ended by `\r\n`).
pub fn upgrade_request(host: &str, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A frame the server sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.opcode {
            OP_TEXT => "text",
            OP_CLOSE => "close",
            OP_PING => "ping",
            OP_PONG => "pong",
            OP_CONTINUATION => "continuation",
            OP_BINARY => "binary",
            _ => "reserved",
        };
        let shown: String = String::from_utf8_lossy(&self.payload)
            .chars()
            .take(200)
            .collect();
        write!(
            f,
            "{what}{} ({} bytes) {shown:?}",
            if self.fin { "" } else { " (not final)" },
            self.payload.len()
        )
    }
}

/// What the server sent, as the tests compare it: text messages, pongs, and the close frame's
/// status code (its reason is checked to be UTF-8 as it is read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Text(String),
    Pong(Vec<u8>),
    Close(u16),
}

impl Out {
    pub fn text(text: &str) -> Out {
        Out::Text(text.to_owned())
    }

    pub fn pong(data: &[u8]) -> Out {
        Out::Pong(data.to_vec())
    }
}

/// A client over a real loopback socket. Nothing is sent until asked.
pub struct WsClient {
    stream: TcpStream,
    /// Bytes received and not yet taken as a frame.
    pending: Vec<u8>,
}

impl WsClient {
    /// Connects, without sending anything.
    pub fn connect(addr: SocketAddr) -> WsClient {
        let stream = TcpStream::connect(addr).expect("connect to the web listener");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        // Each write leaves at once, so that bytes sent one by one travel one by one.
        stream.set_nodelay(true).unwrap();
        WsClient {
            stream,
            pending: Vec::new(),
        }
    }

    /// Connects and upgrades to WebSocket (no `Origin`, as a program), checking the `101`;
    /// the greeting is not read.
    pub fn handshake(addr: SocketAddr) -> WsClient {
        let mut client = WsClient::connect(addr);
        client.send(upgrade_request(&addr.to_string(), ""));
        client.expect_upgrade();
        client
    }

    /// Connects, upgrades and reads the greeting: ready to chat.
    pub fn open(addr: SocketAddr) -> WsClient {
        let mut client = WsClient::handshake(addr);
        assert_eq!(client.text(), DEFAULT_GREETING);
        client
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .unwrap_or_else(|e| panic!("sending: {e}"));
    }

    /// Sends `bytes` in writes of `chunk` bytes each.
    pub fn send_chopped(&mut self, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk) {
            self.send(piece);
        }
    }

    /// Sends one text message.
    pub fn send_text(&mut self, message: &str) {
        self.send(text(message));
    }

    /// Sends `USER::TEXT` and returns the reply text.
    pub fn ask(&mut self, user: &str, message: &str) -> String {
        self.send_text(&format!("{user}::{message}"));
        self.text()
    }

    /// Reads more bytes into `pending`; false at end of stream.
    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "the server sent nothing for {:?} (with {} bytes pending: {:02x?})",
                        self.stream.read_timeout().unwrap().unwrap_or_default(),
                        self.pending.len(),
                        &self.pending[..self.pending.len().min(32)]
                    )
                }
                Err(e) => panic!(
                    "reading from the server: {e} (with {} bytes pending: {:02x?})",
                    self.pending.len(),
                    &self.pending[..self.pending.len().min(32)]
                ),
            }
        }
    }

    /// Reads an HTTP response head (up to its blank line), leaving what follows pending.
    pub fn response_head(&mut self) -> String {
        loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.pending.drain(..end + 4).collect();
                return String::from_utf8(head).expect("an ASCII response head");
            }
            assert!(
                self.pending.len() < 64 * 1024,
                "no end to the response head"
            );
            assert!(
                self.fill(),
                "the server closed before its response head ended; it sent {:?}",
                String::from_utf8_lossy(&self.pending)
            );
        }
    }

    /// Reads the `101` and checks it as a strict client does (RFC 6455 4.1).
    pub fn expect_upgrade(&mut self) {
        let head = self.response_head();
        let response = Response::parse(&head, Vec::new());
        assert_eq!(response.status, 101, "{head}");
        assert_eq!(
            response.header("upgrade").map(str::to_ascii_lowercase),
            Some("websocket".into()),
            "{head}"
        );
        assert!(
            response.header("connection").is_some_and(|v| v
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))),
            "{head}"
        );
        assert_eq!(
            response.header("sec-websocket-accept"),
            Some(ACCEPT),
            "{head}"
        );
        // Nothing was negotiated: no extension, no subprotocol.
        assert_eq!(response.header("sec-websocket-extensions"), None, "{head}");
        assert_eq!(response.header("sec-websocket-protocol"), None, "{head}");
    }

    /// The next frame, or `None` if the server closed the connection cleanly between frames.
    /// Server frames are checked as RFC 6455 asks: unmasked, no reserved bits or opcodes,
    /// lengths in the fewest bytes, control frames final and short, close payloads well formed.
    pub fn try_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.pending) {
                self.pending.drain(..used);
                return Some(frame);
            }
            if !self.fill() {
                assert!(
                    self.pending.is_empty(),
                    "the server closed inside a frame: {:02x?}",
                    &self.pending[..self.pending.len().min(32)]
                );
                return None;
            }
        }
    }

    /// The next frame; the server must not have closed.
    pub fn frame(&mut self) -> Frame {
        self.try_frame()
            .expect("a frame, but the server closed the connection")
    }

    /// The next frame, which must be a whole text message.
    pub fn text(&mut self) -> String {
        let frame = self.frame();
        assert!(
            frame.opcode == OP_TEXT && frame.fin,
            "expected a text message, got {frame:?}"
        );
        String::from_utf8(frame.payload).expect("a text message in UTF-8")
    }

    /// The next frame as [`Out`].
    pub fn out(&mut self) -> Option<Out> {
        self.try_frame().map(|frame| match frame.opcode {
            OP_TEXT if frame.fin => Out::Text(String::from_utf8(frame.payload).unwrap()),
            OP_PONG => Out::Pong(frame.payload),
            OP_CLOSE => Out::Close(close_code(&frame)),
            _ => panic!("the server sent {frame:?}"),
        })
    }

    /// Everything the server sends until it closes the connection, which must come after a
    /// close frame and nothing else.
    pub fn outs_until_closed(&mut self) -> Vec<Out> {
        let mut outs = Vec::new();
        while let Some(out) = self.out() {
            if let Some(Out::Close(_)) = outs.last() {
                panic!("the server sent {out:?} after its close frame");
            }
            outs.push(out);
        }
        assert!(
            matches!(outs.last(), Some(Out::Close(_))),
            "the server closed the connection without a close frame after {outs:?}"
        );
        self.stream.shutdown(Shutdown::Both).ok();
        outs
    }

    /// The next frame must be a close with `code`, and then the connection must end (the
    /// server's FIN; this side then closes too). Returns the close frame's reason.
    pub fn expect_close(&mut self, code: u16) -> String {
        let frame = self.frame();
        assert_eq!(
            frame.opcode, OP_CLOSE,
            "expected close {code}, got {frame:?}"
        );
        assert_eq!(close_code(&frame), code, "{frame:?}");
        self.expect_eof();
        String::from_utf8(frame.payload[2..].to_vec()).unwrap()
    }

    /// The server must close the connection with nothing more sent; this side then closes.
    pub fn expect_eof(&mut self) {
        if let Some(frame) = self.try_frame() {
            panic!("expected the connection to end, got {frame:?}");
        }
        self.stream.shutdown(Shutdown::Both).ok();
    }

    /// The server must close the connection (cleanly, or with a reset when it had not read all
    /// that was sent) without sending anything.
    pub fn expect_nothing_then_closed(&mut self) {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => panic!(
                    "expected the connection to close, got {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("waiting for the server to close: {e}"),
            }
        }
        assert!(self.pending.is_empty(), "{:?}", self.pending);
        self.stream.shutdown(Shutdown::Both).ok();
    }

    /// Reads to the end of the stream, for a response after which the server closes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.pending);
        while self.fill() {
            rest.append(&mut self.pending);
        }
        rest
    }
}

/// A close frame's status code (a server's close frame always has one).
pub fn close_code(frame: &Frame) -> u16 {
    assert!(
        frame.payload.len() >= 2,
        "a close frame without a code: {frame:?}"
    );
    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
}

/// The server's frame at the start of `bytes` and its length, or `None` if not all there.
fn parse_server_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let [first, second, ..] = *bytes else {
        return None;
    };
    assert_eq!(
        first & 0x70,
        0,
        "reserved bits set by the server: {first:#04x}"
    );
    let opcode = first & 0x0F;
    assert!(
        matches!(opcode, OP_TEXT | OP_CLOSE | OP_PING | OP_PONG),
        "the server sent opcode {opcode:#x}"
    );
    assert_eq!(second & 0x80, 0, "the server masked a frame");
    let (size, len) = match second & 0x7F {
        126 => {
            let len = u16::from_be_bytes(bytes.get(2..4)?.try_into().unwrap()) as u64;
            assert!(len > 125, "a 16-bit length for {len} bytes");
            (4, len)
        }
        127 => {
            let len = u64::from_be_bytes(bytes.get(2..10)?.try_into().unwrap());
            assert!(len > 0xFFFF, "a 64-bit length for {len} bytes");
            (10, len)
        }
        n => (2, u64::from(n)),
    };
    let fin = first & 0x80 != 0;
    if opcode >= OP_CLOSE {
        assert!(fin && len <= 125, "a fragmented or long control frame");
    }
    let end = size + usize::try_from(len).unwrap();
    let payload = bytes.get(size..end)?.to_vec();
    if opcode == OP_CLOSE {
        assert!(payload.len() != 1, "a close payload of 1 byte");
        if payload.len() >= 2 {
            std::str::from_utf8(&payload[2..]).expect("a close reason in UTF-8");
        }
    }
    Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        end,
    ))
}

/// An HTTP response: status, head and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    fn parse(head: &str, body: Vec<u8>) -> Response {
        let status_line = head.lines().next().unwrap_or("");
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {status_line:?}"));
        Response {
            status,
            head: head.to_owned(),
            body,
        }
    }

    /// The value of header `name` (any case), if present once; panics if present twice.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.head.split("\r\n").skip(1).filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        });
        let value = values.next();
        assert!(
            values.next().is_none(),
            "header {name} twice: {}",
            self.head
        );
        value
    }

    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// Sends `request` on a new connection to `addr` and reads the response to the end: the server
/// answers one request per connection and closes. Checks `Connection: close` and that the body
/// is as long as `Content-Length` says (none for `HEAD`).
pub fn http(addr: SocketAddr, request: &str) -> Response {
    let mut client = WsClient::connect(addr);
    client.send(request);
    http_response(&mut client, request.starts_with("HEAD "))
}

/// Reads a whole response from `client` and the end of the connection.
pub fn http_response(client: &mut WsClient, head_only: bool) -> Response {
    let head = client.response_head();
    let body = client.read_to_end();
    let response = Response::parse(&head, body);
    assert_eq!(
        response.header("connection").map(str::to_ascii_lowercase),
        Some("close".into()),
        "{head}"
    );
    let length: usize = response
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .unwrap();
    let expected = if head_only { 0 } else { length };
    assert_eq!(response.body.len(), expected, "{head}");
    response
}

/// A server on its own thread with a line port and a web listener, both on free loopback ports.
pub struct WebServer {
    pub addr: SocketAddr,
    pub web: SocketAddr,
    pub handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl WebServer {
    /// Builds `builder` listening on 127.0.0.1 with free ports, and runs it.
    pub fn start(builder: ServerBuilder) -> WebServer {
        let server = builder
            .listen("127.0.0.1:0")
            .web("127.0.0.1:0")
            .build()
            .expect("server builds");
        let addr = server.local_addr();
        let web = server.web_addr().expect("a web listener");
        let handle = server.handle();
        let thread = thread::spawn(move || server.run());
        WebServer {
            addr,
            web,
            handle,
            thread: Some(thread),
        }
    }

    /// A server with the echo robot and otherwise default settings.
    pub fn echo() -> WebServer {
        WebServer::start(Server::builder().robot(EchoRobot))
    }

    /// A WebSocket chat, greeted.
    pub fn open(&self) -> WsClient {
        WsClient::open(self.web)
    }

    /// Asks the server to shut down (it says goodbye to every client); does not wait.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    /// Shuts the server down and waits for `run` to return.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        self.thread.take().unwrap().join().expect("server thread")
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// Starts `robochat serve --web 127.0.0.1:0 ARGS` and returns it with its web address.
pub fn serve_web(args: &[&str]) -> (ServeProcess, SocketAddr) {
    let mut all = vec!["--web", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = ServeProcess::start(&all);
    let web = web_addr(&server);
    (server, web)
}
