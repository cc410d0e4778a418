//! Fuzzes a whole connection: the input is sent, in pieces it chooses, to a real server running
//! in this process (over loopback), which must answer with well-formed lines and close cleanly
//! when the client is done. A panic in the server's loop thread aborts the fuzzer.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use robochat::{EchoRobot, Server};

const MAX_LINE: usize = 200;

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let server = Server::builder()
            .listen("127.0.0.1:0")
            .robot(EchoRobot)
            .workers(2)
            .max_line(MAX_LINE)
            .max_connections(64)
            .build()
            .expect("server builds");
        let addr = server.local_addr();
        std::thread::spawn(move || server.run().expect("the event loop never fails"));
        addr
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, input)) = data.split_first() else {
        return;
    };
    let mut stream = TcpStream::connect(server()).expect("connect");
    stream.set_nodelay(true).ok();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let piece = usize::from(size) + 1;
    for chunk in input.chunks(piece) {
        if stream.write_all(chunk).is_err() {
            break; // the server closed it (after `exit`): fine
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut output = Vec::new();
    match stream.read_to_end(&mut output) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(e) => panic!("the server neither answered nor closed: {e}"),
    }
    // Everything it sent is whole lines of bounded length.
    assert!(output.is_empty() || output.ends_with(b"\n"));
    for line in output.split(|&b| b == b'\n') {
        assert!(line.len() <= 2000 * 4, "a {} byte line", line.len());
    }
});
