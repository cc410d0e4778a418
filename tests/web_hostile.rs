//! The web listener's HTTP routes, its Origin rule, and hostile web clients: slowloris heads
//! and frames, a 100 MB message, clients that never read, the connection limit, the PROXY
//! protocol in front of HTTP, and the metrics by transport. Over real loopback sockets, against
//! in-process servers and the built binary (whose memory and log are read).
#![cfg(feature = "web")]

mod common;
mod ws;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    flood_until_pushed_back, poll_events, sample, scrape, scrape_until, Client, ServeProcess,
    HANGUP, READ_TIMEOUT,
};
use robochat::web::Origins;
use robochat::{EchoRobot, Server, DEFAULT_GREETING};
use ws::{
    frame, header, http, http_response, ping, serve_web, text, upgrade_request, Len, Response,
    WebServer, WsClient, FIN, KEY, MASK, OP_TEXT,
};

fn get(addr: SocketAddr, path: &str) -> Response {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n"),
    )
}

// ----- routes -----

#[test]
fn get_slash_is_the_chat_page() {
    let server = WebServer::echo();
    let page = get(server.web, "/");
    assert_eq!(page.status, 200, "{}", page.head);
    assert!(
        page.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        page.head
    );
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let body = page.body_text();
    assert!(body.contains("<html"), "{body}");
    // With a query, the same page.
    assert_eq!(get(server.web, "/?room=1").body, page.body);
    // HEAD: the same head, no body.
    let head = http(
        server.web,
        &format!("HEAD / HTTP/1.1\r\nHost: {}\r\n\r\n", server.web),
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), page.header("content-type"));
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    assert!(head.body.is_empty());
}

#[test]
fn healthz_says_ok() {
    let server = WebServer::echo();
    let health = get(server.web, "/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(health.body, b"ok\n");
    let head = http(server.web, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some("3"));
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let server = WebServer::echo();
    for path in [
        "/nope",
        "/ws/",
        "/index.html",
        "/healthz/x",
        "/metrics",
        "*",
    ] {
        assert_eq!(get(server.web, path).status, 404, "{path}");
    }
    for (method, path) in [
        ("POST", "/"),
        ("PUT", "/healthz"),
        ("DELETE", "/ws"),
        ("OPTIONS", "/"),
        ("PATCH", "/ws"),
    ] {
        let response = http(
            server.web,
            &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        );
        assert_eq!(response.status, 405, "{method} {path}: {}", response.head);
    }
    // An unknown path is not found whatever the method.
    let response = http(server.web, "POST /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 404);
    // A body that is never read does not cost the client its response (no reset).
    let response = http(
        server.web,
        "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello=world",
    );
    assert_eq!(response.status, 405);
}

#[test]
fn one_request_per_connection() {
    let server = WebServer::echo();
    // Two requests in one write: the first is answered, and the connection closed.
    let response = http(
        server.web,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"ok\n"[..])
    );
    // Keep-alive asked for is not given.
    let response = http(
        server.web,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    // HTTP/1.0, with no Host, is served too.
    let response = http(server.web, "GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"ok\n"[..])
    );
}

#[test]
fn the_websocket_path_without_an_upgrade_is_426() {
    let server = WebServer::echo();
    assert_eq!(get(server.web, "/ws").status, 426);
    // Half an upgrade is no upgrade.
    let only_upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(http(server.web, &only_upgrade).status, 426);
    let only_connection = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(http(server.web, &only_connection).status, 426);
    let other_protocol =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(http(server.web, other_protocol).status, 426);
}

/// An upgrade request with this key and version lines (whole lines, or empty for none).
fn upgrade_with(key: &str, version: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         {key}{version}\r\n"
    )
}

#[test]
fn a_broken_upgrade_is_400() {
    let server = WebServer::echo();
    let good_key = format!("Sec-WebSocket-Key: {KEY}\r\n");
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    for key in [
        "",                                                // none
        "Sec-WebSocket-Key: \r\n",                         // empty
        "Sec-WebSocket-Key: not base64 at all!\r\n",       // not base64
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n",     // 15 bytes
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSEh\r\n", // 17 bytes
    ] {
        let response = http(server.web, &upgrade_with(key, v13));
        assert_eq!(response.status, 400, "{key:?}: {}", response.head);
    }
    for version in [
        "",
        "Sec-WebSocket-Version: 8\r\n",
        "Sec-WebSocket-Version: 14\r\n",
        "Sec-WebSocket-Version: thirteen\r\n",
    ] {
        let response = http(server.web, &upgrade_with(&good_key, version));
        assert_eq!(response.status, 400, "{version:?}: {}", response.head);
    }
    // Only GET upgrades.
    let head = upgrade_with(&good_key, v13).replacen("GET", "HEAD", 1);
    assert_eq!(http(server.web, &head).status, 400);
    // Not HTTP at all.
    for garbage in [
        "HELLO\r\n\r\n",
        "GET\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\r\n\r\n",
    ] {
        let response = http(server.web, garbage);
        assert_eq!(response.status, 400, "{garbage:?}: {}", response.head);
    }
    // The same upgrade, right, is taken; tokens in Connection and Upgrade in any case.
    let mut client = WsClient::connect(server.web);
    client.send(format!(
        "GET /ws?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
         Connection: keep-alive, UPGRADE\r\n{good_key}{v13}\r\n"
    ));
    client.expect_upgrade();
    assert_eq!(client.text(), DEFAULT_GREETING);
}

#[test]
fn a_head_over_8_kib_is_431() {
    let server = WebServer::echo();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "f".repeat(9000)
    );
    assert_eq!(http(server.web, &big).status, 431);
    // Refused at 8 KiB, without waiting for the head to end.
    let mut client = WsClient::connect(server.web);
    client.send(format!("GET / HTTP/1.1\r\nX-Filler: {}", "f".repeat(8300)));
    assert_eq!(http_response(&mut client, false).status, 431);
    // Too many header lines.
    let many: String = (0..40).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let response = http(server.web, &format!("GET / HTTP/1.1\r\n{many}\r\n"));
    assert_eq!(response.status, 431);
    // A head just under 8 KiB is served.
    let near = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "f".repeat(8000)
    );
    assert_eq!(http(server.web, &near).status, 200);
}

// ----- the Origin rule -----

/// The status an upgrade with these extra header lines gets from `web` (101 then closed).
fn upgrade_status(web: SocketAddr, host: &str, extra: &str) -> u16 {
    let mut client = WsClient::connect(web);
    client.send(upgrade_request(host, extra));
    let head = client.response_head();
    let status = head[9..12].parse().unwrap();
    if status == 101 {
        assert_eq!(client.text(), DEFAULT_GREETING);
    }
    status
}

#[test]
fn only_the_servers_own_pages_and_programs_may_open_the_chat() {
    let server = WebServer::echo();
    let host = server.web.to_string();
    let origin = |o: &str| format!("Origin: {o}\r\n");
    assert_eq!(upgrade_status(server.web, &host, ""), 101);
    for same in [
        format!("http://{host}"),
        format!("https://{host}"),
        format!("http://{host}/"),
        format!("HTTP://{host}"),
    ] {
        assert_eq!(
            upgrade_status(server.web, &host, &origin(&same)),
            101,
            "{same}"
        );
    }
    let other_port = format!("http://127.0.0.1:{}", server.web.port() ^ 1);
    for other in [
        "http://evil.example",
        "https://evil.example",
        "null",
        &other_port,
        "http://localhost",
    ] {
        assert_eq!(
            upgrade_status(server.web, &host, &origin(other)),
            403,
            "{other}"
        );
    }
    // The Host the browser sent is what the page's origin is compared with: as localhost too.
    let port = server.web.port();
    let localhost = format!("localhost:{port}");
    assert_eq!(
        upgrade_status(
            server.web,
            &localhost,
            &origin(&format!("http://{localhost}"))
        ),
        101
    );
    // But not by another name: any site whose name an attacker points at this address (DNS
    // rebinding) would send its own name as both; such a name must be listed.
    assert_eq!(
        upgrade_status(server.web, "chat.example", &origin("https://chat.example")),
        403
    );
}

#[test]
fn listed_origins_and_any_origin() {
    let listed = WebServer::start(Server::builder().robot(EchoRobot).allow_origins(
        Origins::Listed(vec![
            "https://chat.example.com".into(),
            "http://localhost:3000/".into(),
        ]),
    ));
    let host = listed.web.to_string();
    let origin = |o: &str| format!("Origin: {o}\r\n");
    for allowed in [
        "https://chat.example.com",
        "https://CHAT.example.com/",
        "http://localhost:3000",
    ] {
        assert_eq!(
            upgrade_status(listed.web, &host, &origin(allowed)),
            101,
            "{allowed}"
        );
    }
    for refused in [
        "http://chat.example.com",
        "https://chat.example.com:8443",
        "http://localhost:3001",
        "https://evil.example",
    ] {
        assert_eq!(
            upgrade_status(listed.web, &host, &origin(refused)),
            403,
            "{refused}"
        );
    }
    let any = WebServer::start(
        Server::builder()
            .robot(EchoRobot)
            .allow_origins(Origins::Any),
    );
    let host = any.web.to_string();
    assert_eq!(
        upgrade_status(any.web, &host, &origin("https://anywhere.example")),
        101
    );
    assert_eq!(upgrade_status(any.web, &host, &origin("null")), 101);
}

#[test]
fn a_refused_origin_is_logged_and_allow_origin_lets_it_in() {
    let (server, web) = serve_web(&["--robot", "echo"]);
    let host = web.to_string();
    let evil = "Origin: https://evil.example\r\n";
    assert_eq!(upgrade_status(web, &host, evil), 403);
    server.wait_for_log("for a page of \"https://evil.example\" (allow it with --allow-origin)");
    let refused = get(web, "/healthz"); // the server goes on
    assert_eq!(refused.status, 200);

    let (_listed, web) = serve_web(&[
        "--robot",
        "echo",
        "--allow-origin",
        "https://evil.example",
        "--allow-origin",
        "https://other.example",
    ]);
    assert_eq!(upgrade_status(web, &web.to_string(), evil), 101);
    let other = "Origin: https://other.example\r\n";
    assert_eq!(upgrade_status(web, &web.to_string(), other), 101);
    let third = "Origin: https://third.example\r\n";
    assert_eq!(upgrade_status(web, &web.to_string(), third), 403);

    let (_any, web) = serve_web(&["--robot", "echo", "--allow-origin", "*"]);
    assert_eq!(upgrade_status(web, &web.to_string(), third), 101);
}

// ----- slow clients -----

/// Sends `pieces` one at a time, waiting `interval` for a hang-up after each; returns how many
/// were sent and when the server hung up, if it did.
fn dribble<'a>(
    stream: &TcpStream,
    pieces: impl IntoIterator<Item = &'a [u8]>,
    interval: Duration,
    mut between: impl FnMut(usize),
) -> (usize, Option<Instant>) {
    let mut sent = 0;
    for piece in pieces {
        if (&*stream).write_all(piece).is_err() {
            return (sent, Some(Instant::now()));
        }
        sent += 1;
        if poll_events(stream, libc::POLLRDHUP, interval) & HANGUP != 0 {
            return (sent, Some(Instant::now()));
        }
        between(sent);
    }
    (sent, None)
}

#[test]
fn a_slowloris_head_is_closed_by_the_line_timeout_while_others_are_served() {
    let (server, web) = serve_web(&["--robot", "echo", "--line-timeout", "1"]);
    let mut other = WsClient::open(web);
    let slow = WsClient::connect(web);
    let started = Instant::now();
    let head = upgrade_request(&web.to_string(), "");
    let (sent, closed) = dribble(
        slow.stream(),
        head.as_bytes().chunks(1),
        Duration::from_millis(100),
        |n| {
            if n % 3 == 0 {
                assert_eq!(other.ask("u", &format!("{n}")), format!("{n}"));
                assert_eq!(get(web, "/healthz").status, 200);
            }
        },
    );
    let closed = closed.expect("the slow head was never closed");
    assert!(sent < head.len(), "the whole head went through");
    let after = closed - started;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
    server.wait_for_log("an unfinished line for 1 s");
    assert_eq!(other.ask("u", "still here"), "still here");
}

#[test]
fn a_connection_that_never_sends_its_request_is_closed_by_the_line_timeout() {
    let (server, web) = serve_web(&["--robot", "echo", "--line-timeout", "1"]);
    let started = Instant::now();
    let mut silent = WsClient::connect(web);
    silent.expect_nothing_then_closed();
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
    server.wait_for_log("an unfinished line for 1 s");
    // Once the chat is open, silence is what idle connections do: not closed.
    let mut chat = WsClient::open(web);
    assert_eq!(
        poll_events(chat.stream(), libc::POLLRDHUP, Duration::from_millis(1500)),
        0,
        "an idle chat was closed"
    );
    assert_eq!(chat.ask("u", "still open"), "still open");
}

#[test]
fn a_frame_never_finished_is_closed_by_the_line_timeout() {
    let (server, web) = serve_web(&["--robot", "echo", "--line-timeout", "1"]);
    let mut client = WsClient::open(web);
    let started = Instant::now();
    let whole = text("u::never finished");
    client.send(&whole[..whole.len() - 3]);
    assert!(
        poll_events(client.stream(), libc::POLLRDHUP, READ_TIMEOUT) & HANGUP != 0,
        "a partial frame was never closed"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A header alone, too.
    let mut client = WsClient::open(web);
    client.send(&header(FIN | OP_TEXT, 100, Some(MASK), Len::Shortest)[..3]);
    assert!(poll_events(client.stream(), libc::POLLRDHUP, READ_TIMEOUT) & HANGUP != 0);
    server.wait_for_log("an unfinished line for 1 s");
}

/// At shutdown, a connection whose request has not all come (a health check, a page being
/// loaded) is told so with a `503`, not dropped without a word.
#[test]
fn a_request_under_way_at_shutdown_gets_a_503() {
    let server = WebServer::echo();
    let mut waiting = TcpStream::connect(server.web).unwrap();
    waiting.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Accepted in order: once a later connection is answered, this one is the server's.
    assert_eq!(server.open().ask("u", "later"), "later");
    server.shutdown();
    let mut response = Vec::new();
    std::io::Read::read_to_end(&mut waiting, &mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(response.contains("shutting down"), "{response}");
}

/// A client that closes its side in the middle of a frame can never finish it: the server
/// says so and closes at once, without waiting for the line timeout (found by the fuzz target
/// `web_connection`: one byte of a header, then the client's FIN).
#[test]
fn a_client_that_stops_in_the_middle_of_a_frame_is_closed_at_once() {
    let server = WebServer::echo();
    for partial in [&text("u::cut")[..1], &text("u::cut short")[..5]] {
        let mut client = server.open();
        client.send(partial);
        client.stream().shutdown(Shutdown::Write).unwrap();
        let started = Instant::now();
        client.expect_close(1002);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // Messages whole before the client's FIN are still answered.
    let mut client = server.open();
    client.send_text("u::whole");
    client.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.text(), "whole");
}

#[test]
fn a_fragmented_message_kept_open_by_pings_is_closed_by_the_line_timeout() {
    let (server, web) = serve_web(&["--robot", "echo", "--line-timeout", "1"]);
    let mut client = WsClient::open(web);
    let started = Instant::now();
    client.send(frame(OP_TEXT, b"u::a message that "));
    let pings: Vec<Vec<u8>> = (0..100).map(|i| ping(format!("{i}").as_bytes())).collect();
    let (sent, closed) = dribble(
        client.stream(),
        pings.iter().map(Vec::as_slice),
        Duration::from_millis(100),
        |_| {},
    );
    let closed = closed.expect("the unfinished message was never closed");
    assert!(sent < 100);
    let after = closed - started;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
    server.wait_for_log("an unfinished line for 1 s");
}

#[test]
fn slow_messages_each_within_the_line_timeout_are_not_closed() {
    let (_server, web) = serve_web(&["--robot", "echo", "--line-timeout", "1"]);
    let mut client = WsClient::open(web);
    // Three messages, each sent over 0.6 s: 1.8 s in all, each within the timeout.
    for i in 0..3 {
        let message = text(&format!("u::slow {i}"));
        let pieces: Vec<&[u8]> = message.chunks(message.len().div_ceil(4)).collect();
        let (sent, closed) = dribble(
            client.stream(),
            pieces.iter().copied(),
            Duration::from_millis(150),
            |_| {},
        );
        assert_eq!((sent, closed), (pieces.len(), None), "message {i}");
        assert_eq!(client.text(), format!("slow {i}"));
    }
}

// ----- large and flooding clients -----

#[test]
fn a_100_mb_message_is_refused_from_its_header_and_the_server_does_not_grow() {
    let (server, web) = serve_web(&["--robot", "echo"]);
    let mut other = WsClient::open(web);
    assert_eq!(other.ask("u", "warm up"), "warm up");
    let before = server.rss_bytes();

    let mut client = WsClient::open(web);
    const ANNOUNCED: usize = 100 << 20;
    client.send(header(
        FIN | OP_TEXT,
        ANNOUNCED as u64,
        Some(MASK),
        Len::Shortest,
    ));
    // Then the payload streams, as a client that does not wait would send it, until the close
    // is there to read. The server refuses from the header, before reading any payload: what
    // is sent before the close can be seen is at most what the two sockets' buffers hold.
    let stream = client.stream().try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let chunk = vec![b'x' ^ MASK[0]; 64 * 1024];
    let mut sent = 0;
    while poll_events(&stream, libc::POLLIN, Duration::ZERO) == 0 {
        match (&stream).write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                poll_events(&stream, libc::POLLIN | libc::POLLOUT, READ_TIMEOUT);
            }
            Err(e) => panic!("sending the payload: {e} after {sent} bytes"),
        }
        assert!(sent < ANNOUNCED, "all 100 MB went before the close");
    }
    stream.set_nonblocking(false).unwrap();
    assert!(
        sent < ANNOUNCED / 4,
        "the close came after {sent} bytes of the payload"
    );
    let close = client.frame();
    assert_eq!(ws::close_code(&close), 1009, "{close:?}");
    // The rest of the 100 MB still comes; the server throws it away as it reads it (until it
    // gives up waiting for this client to close, when writing fails).
    while sent < ANNOUNCED {
        match (&stream).write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let growth = server.rss_bytes().saturating_sub(before);
    assert!(
        growth < 2 << 20,
        "server memory grew by {growth} bytes for a refused 100 MB message ({sent} bytes sent)"
    );
    client.stream().shutdown(std::net::Shutdown::Write).unwrap();
    client.expect_nothing_then_closed();
    assert_eq!(other.ask("u", "after"), "after");
}

/// A web client floods `batch` and never reads: the server stops reading it, holds little for
/// it, serves everyone else, and closes it after `--send-timeout`.
fn a_client_that_never_reads(batch: &[u8]) {
    let (server, web) = serve_web(&["--robot", "echo", "--send-timeout", "2"]);
    let mut other = WsClient::open(web);
    assert_eq!(other.ask("u", "before"), "before");
    let before = server.rss_bytes();

    let flooder = WsClient::open(web);
    let (sent, closed) = flood_until_pushed_back(flooder.stream(), batch);
    let growth = server.rss_bytes().saturating_sub(before);
    assert!(
        growth < 1 << 20,
        "server memory grew by {growth} bytes after {sent} bytes sent"
    );
    for i in 0..20 {
        assert_eq!(
            other.ask("u", &format!("during {i}")),
            format!("during {i}")
        );
    }
    assert_eq!(get(web, "/healthz").status, 200);
    assert!(
        closed || poll_events(flooder.stream(), libc::POLLRDHUP, READ_TIMEOUT) & HANGUP != 0,
        "the flooder was never closed"
    );
    server.wait_for_log("went unread for 2 s");
}

#[test]
fn a_client_that_pings_and_never_reads_stays_small() {
    let batch: Vec<u8> = (0..500).flat_map(|_| ping(&[b'p'; 125])).collect();
    a_client_that_never_reads(&batch);
}

#[test]
fn a_client_that_sends_messages_and_never_reads_stays_small() {
    let batch: Vec<u8> = (0..500)
        .flat_map(|_| text("u::flooding and never reading a single reply"))
        .collect();
    a_client_that_never_reads(&batch);
}

// ----- the connection limit -----

/// What a connection to `web` gets without sending anything, when the server is full: a 503.
fn refused_when_full(web: SocketAddr) -> Response {
    let mut client = WsClient::connect(web);
    http_response(&mut client, false)
}

#[test]
fn max_connections_counts_web_and_line_connections_together() {
    let server = WebServer::start(Server::builder().robot(EchoRobot).max_connections(2));
    let mut line = Client::connect(server.addr);
    let mut chat = server.open();
    // Full: another web connection gets a 503, another line connection an ERR line.
    let full = refused_when_full(server.web);
    assert_eq!(full.status, 503, "{}", full.head);
    assert!(full.body_text().contains("full"), "{}", full.body_text());
    let mut extra_line = Client::connect_raw(server.addr);
    assert!(extra_line.line().starts_with("ERR "));
    extra_line.expect_closed();
    assert_eq!(line.ask("l", "still served"), "still served");
    assert_eq!(chat.ask("w", "still served"), "still served");
    // A web chat that ends frees its place for a line client, and the other way round.
    chat.send_text("w::exit");
    assert_eq!(chat.text(), ws::GOODBYE);
    chat.expect_close(1000);
    let mut line2 = admitted(|| {
        let mut client = Client::connect_raw(server.addr);
        (client.line() == DEFAULT_GREETING).then_some(client)
    });
    assert_eq!(line2.ask("l", "in"), "in");
    drop(line);
    let mut chat2 = admitted(|| {
        let mut client = WsClient::connect(server.web);
        client.send(upgrade_request(&server.web.to_string(), ""));
        let head = client.response_head();
        if head.starts_with("HTTP/1.1 503") {
            return None;
        }
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(client.text(), DEFAULT_GREETING);
        Some(client)
    });
    assert_eq!(chat2.ask("w", "in"), "in");
}

/// Tries `attempt` until it is let in: a closed connection frees its place a moment after the
/// client sees it close.
fn admitted<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(admitted) = attempt() {
            return admitted;
        }
        assert!(started.elapsed() < READ_TIMEOUT, "never admitted");
        thread::sleep(Duration::from_millis(20));
    }
}

// ----- the PROXY protocol -----

#[test]
fn with_proxy_protocol_the_header_comes_before_the_request_and_names_the_client() {
    let server = ServeProcess::start_at_debug(&[
        "--web",
        "127.0.0.1:0",
        "--robot",
        "echo",
        "--proxy-protocol",
    ]);
    let web = common::web_addr(&server);
    let proxied = |client: &str| format!("PROXY TCP4 {client} 192.0.2.1 40000 8080\r\n");
    // The header, then the upgrade, in separate writes.
    let mut chat = WsClient::connect(web);
    chat.send(proxied("198.51.100.22"));
    chat.send(upgrade_request(&web.to_string(), ""));
    chat.expect_upgrade();
    assert_eq!(chat.text(), DEFAULT_GREETING);
    assert_eq!(chat.ask("u", "via a proxy"), "via a proxy");
    server.wait_for_log("is for client 198.51.100.22:40000");
    // In one write, as HAProxy sends them.
    let mut chat = WsClient::connect(web);
    chat.send(proxied("198.51.100.23") + &upgrade_request(&web.to_string(), ""));
    chat.expect_upgrade();
    assert_eq!(chat.text(), DEFAULT_GREETING);
    assert_eq!(chat.ask("u", "in one write"), "in one write");
    // A refusal is logged with the client's address, not the proxy's.
    let mut refused = WsClient::connect(web);
    refused.send(
        proxied("198.51.100.24")
            + &upgrade_request(&web.to_string(), "Origin: https://evil.example\r\n"),
    );
    assert_eq!(http_response(&mut refused, false).status, 403);
    server.wait_for_log("refused a WebSocket from 198.51.100.24:40000");
    // A health check through the proxy.
    let mut health = WsClient::connect(web);
    health.send("PROXY UNKNOWN\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(http_response(&mut health, false).body, b"ok\n");
    // Without the header, the request is not served.
    let mut direct = WsClient::connect(web);
    direct.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let rest = direct.read_to_end();
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "served without a PROXY header: {}",
        String::from_utf8_lossy(&rest)
    );
}

// ----- metrics -----

#[test]
fn metrics_count_connections_by_transport_and_responses_by_status() {
    let (server, web) = serve_web(&["--robot", "echo", "--metrics", "127.0.0.1:0"]);
    let metrics = common::metrics_addr(&server);
    let open_web = "robochat_connections_open{transport=\"web\"}";
    let open_line = "robochat_connections_open{transport=\"line\"}";
    let accepted_web = "robochat_connections_accepted_total{transport=\"web\"}";
    let accepted_line = "robochat_connections_accepted_total{transport=\"line\"}";
    let status = |code: u16| format!("robochat_http_responses_total{{code=\"{code}\"}}");

    let mut chats: Vec<WsClient> = (0..3).map(|_| WsClient::open(web)).collect();
    let mut line = Client::connect(server.addr);
    assert_eq!(get(web, "/").status, 200);
    assert_eq!(get(web, "/healthz").status, 200);
    assert_eq!(get(web, "/nope").status, 404);
    assert_eq!(get(web, "/ws").status, 426);
    assert_eq!(
        upgrade_status(web, &web.to_string(), "Origin: https://evil.example\r\n"),
        403
    );
    let body = scrape_until(metrics, |b| sample(b, open_web) == 3);
    assert_eq!(sample(&body, open_line), 1);
    assert_eq!(sample(&body, accepted_web), 3 + 5);
    assert_eq!(sample(&body, accepted_line), 1);
    assert_eq!(sample(&body, &status(101)), 3);
    assert_eq!(sample(&body, &status(200)), 2);
    assert_eq!(sample(&body, &status(404)), 1);
    assert_eq!(sample(&body, &status(426)), 1);
    assert_eq!(sample(&body, &status(403)), 1);
    assert_eq!(sample(&body, &status(400)), 0);

    // Messages over WebSocket count as messages.
    let messages_before = sample(&body, "robochat_messages_total");
    for chat in &mut chats {
        assert_eq!(chat.ask("u", "counted"), "counted");
    }
    assert_eq!(line.ask("u", "counted"), "counted");
    let body = scrape(metrics);
    assert_eq!(
        sample(&body, "robochat_messages_total"),
        messages_before + 4
    );
    // Chats that end are no longer open.
    for mut chat in chats.drain(..2) {
        chat.send(ws::close(1000, b""));
        chat.expect_close(1000);
    }
    let body = scrape_until(metrics, |b| sample(b, open_web) == 1);
    assert_eq!(sample(&body, open_line), 1);
    drop(chats);
}

#[test]
fn a_full_web_listener_answers_503_not_a_chat_line() {
    let server = WebServer::start(Server::builder().robot(EchoRobot).max_connections(1));
    let _chat = server.open();
    let full = refused_when_full(server.web);
    assert_eq!(full.status, 503);
    assert!(!full.body_text().starts_with("ERR"), "{}", full.body_text());
}
