//! `robochat serve --proxy-protocol`: connections from a load balancer that start with a PROXY
//! header, v1 or v2, however the header is cut into packets.

mod common;

use common::{Client, ServeProcess};

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for a TCP/IPv4 client 203.0.113.7:5555 to 192.0.2.1:9999.
fn v2_tcp4() -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
    header.extend_from_slice(&[203, 0, 113, 7, 192, 0, 2, 1]);
    header.extend_from_slice(&5555u16.to_be_bytes());
    header.extend_from_slice(&9999u16.to_be_bytes());
    header
}

fn serve_behind_proxy(extra: &[&str]) -> ServeProcess {
    let mut args = vec!["--robot", "echo", "--proxy-protocol"];
    args.extend_from_slice(extra);
    ServeProcess::start_at_debug(&args)
}

#[test]
fn a_v1_header_names_the_client_that_is_logged() {
    let server = serve_behind_proxy(&["--line-timeout", "1", "--framing", "line"]);
    let mut client = Client::connect(server.addr);
    client.send("PROXY TCP4 198.51.100.22 192.0.2.1 40000 9999\r\nbob::hello\n");
    assert_eq!(client.line(), "hello");
    server.wait_for_log("is for client 198.51.100.22:40000");
    // A failure is logged with the client's address, not the proxy's.
    client.send("bob::never finished");
    client.expect_closed();
    server.wait_for_log("closed 198.51.100.22:40000: an unfinished line");
}

#[test]
fn a_v2_header_cut_at_every_byte_works() {
    let server = serve_behind_proxy(&[]);
    let header = v2_tcp4();
    for cut in 1..header.len() {
        let mut client = Client::connect(server.addr);
        client.send(&header[..cut]);
        client.send(&header[cut..]);
        assert_eq!(
            client.ask("bob", &format!("cut {cut}")),
            format!("cut {cut}")
        );
    }
    let mut client = Client::connect(server.addr);
    for byte in &header {
        client.send([*byte]);
    }
    client.send("bob::byte by byte\n");
    assert_eq!(client.line(), "byte by byte");
    server.wait_for_log("is for client 203.0.113.7:5555");
}

#[test]
fn a_local_header_from_a_health_check_is_accepted() {
    let server = serve_behind_proxy(&[]);
    let mut client = Client::connect(server.addr);
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]); // v2 LOCAL, no addresses
    client.send(&local);
    assert_eq!(client.ask("check", "ping"), "ping");
}

#[test]
fn a_missing_or_malformed_header_closes_the_connection_with_a_log_line() {
    let server = serve_behind_proxy(&[]);
    let mut plain = Client::connect(server.addr);
    plain.send("bob::no header\n");
    plain.expect_closed();
    let mut malformed = Client::connect(server.addr);
    malformed.send("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n");
    malformed.expect_closed();
    server.wait_for_log("PROXY");
}

#[test]
fn no_header_within_the_line_timeout_closes_the_connection() {
    let server = serve_behind_proxy(&["--line-timeout", "1"]);
    let mut silent = Client::connect(server.addr);
    silent.expect_closed();
    let mut half = Client::connect(server.addr);
    half.send("PROXY TCP4 198.51.100.9");
    half.expect_closed();
}

#[test]
fn without_the_flag_a_header_is_an_ordinary_bad_line() {
    let server = ServeProcess::start(&["--robot", "echo"]);
    let mut client = Client::connect(server.addr);
    client.send("PROXY TCP4 198.51.100.22 192.0.2.1 40000 9999\r\n");
    assert!(client.line().starts_with("ERR "));
    assert_eq!(client.ask("bob", "still fine"), "still fine");
}
