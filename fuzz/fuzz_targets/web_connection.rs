//! Fuzzes a whole connection to the web listener: the input is sent, in pieces it chooses, to a
//! real server running in this process (over loopback), after a valid WebSocket upgrade when
//! the first byte is odd (so that most runs reach the frame decoder and the chat) or as it is
//! (the request head itself). The server must answer HTTP, then only well-formed server frames,
//! and close when the client is done. A panic in the server's loop thread aborts the fuzzer.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use robochat::websocket::client::{Decoded, Decoder, Handshake};
use robochat::{EchoRobot, Server};

const MAX_LINE: usize = 200;

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let server = Server::builder()
            .listen("127.0.0.1:0")
            .web("127.0.0.1:0")
            .robot(EchoRobot)
            .workers(2)
            .max_line(MAX_LINE)
            .max_connections(64)
            .build()
            .expect("server builds");
        let addr = server.web_addr().expect("a web listener");
        std::thread::spawn(move || server.run().expect("the event loop never fails"));
        addr
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let addr = server();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).ok();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let handshake = Handshake::new([mode; 16]);
    let upgrade = mode % 2 == 1;
    let mut bytes = if upgrade {
        handshake.request(&addr.to_string(), "/ws")
    } else {
        Vec::new()
    };
    bytes.extend_from_slice(input);
    let piece = usize::from(mode / 2) + 1;
    for chunk in bytes.chunks(piece) {
        if stream.write_all(chunk).is_err() {
            break; // the server closed it: fine
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut output = Vec::new();
    match stream.read_to_end(&mut output) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(e) => panic!("the server neither answered nor closed: {e}"),
    }
    if output.is_empty() {
        return; // closed before a whole request came
    }
    assert!(output.starts_with(b"HTTP/1.1 "), "not HTTP: {output:?}");
    if !upgrade {
        return;
    }
    // After the 101, only frames a server may send, whole.
    let head = handshake
        .response(&output)
        .expect("a valid 101")
        .expect("the whole head");
    let mut frames = &output[head..];
    let mut decoder = Decoder::new();
    while !frames.is_empty() {
        match decoder.next(frames, usize::MAX) {
            Ok(Decoded::Frame { consumed, .. }) => frames = &frames[consumed..],
            Ok(Decoded::NeedMore) => panic!("a cut frame at the end: {frames:?}"),
            Err(code) => panic!("a frame a client must refuse ({code}): {frames:?}"),
        }
    }
});
