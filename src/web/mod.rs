//! The web listener's HTTP, pure: a request head read in full (at most [`MAX_HEAD`] bytes),
//! what it asks for ([`Route`]), and the response bytes. One request per connection: anything
//! but a WebSocket upgrade is answered and closed, so no keep-alive state is ever kept.
//!
//! A browser on any web site can open a WebSocket to any address, so an upgrade is accepted only
//! without an `Origin` (a program, not a page), from a page served by the same host it came to,
//! or from an origin allowed by name ([`Origins`]).

use base64::Engine as _;

/// The chat page (`GET /`): one self-contained file, HTML, CSS and JavaScript, no external
/// resources.
pub const PAGE: &str = include_str!("page.html");

/// The largest request head taken; a longer one is refused (431) without reading on.
pub const MAX_HEAD: usize = 8 * 1024;
/// Request headers looked at, at most; a request with more is refused.
const MAX_HEADERS: usize = 32;
/// The GUID of RFC 6455's accept key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a request head is, so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Head<'a> {
    /// Not all there yet.
    Incomplete,
    /// A whole head of `len` bytes.
    Complete { len: usize, request: Request<'a> },
    /// Not HTTP, or too long: answered with this status and closed.
    Invalid(u16),
}

/// The parts of a request the web listener looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, without a query.
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// `Upgrade: websocket` and `Connection: upgrade` (each among others, any case).
    pub wants_websocket: bool,
    pub websocket_key: Option<&'a str>,
    pub websocket_version: Option<&'a str>,
}

/// Parses the head at the start of `bytes`.
pub fn parse_head(bytes: &[u8]) -> Head<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD => return Head::Invalid(431),
        Ok(httparse::Status::Partial) => return Head::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return Head::Invalid(431),
        Err(_) => return Head::Invalid(400),
    };
    if len > MAX_HEAD {
        return Head::Invalid(431);
    }
    let target = parsed.path.unwrap_or("/");
    let mut request = Request {
        method: parsed.method.unwrap_or(""),
        path: target.split(['?', '#']).next().unwrap_or("/"),
        ..Request::default()
    };
    let (mut upgrade, mut connection_upgrade) = (false, false);
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let field = match name.as_str() {
            "host" => &mut request.host,
            "origin" => &mut request.origin,
            "sec-websocket-key" => &mut request.websocket_key,
            "sec-websocket-version" => &mut request.websocket_version,
            "upgrade" | "connection" => &mut None,
            _ => continue,
        };
        // What decides the route must be unambiguous: text, and (but for lists) given once.
        let Ok(value) = std::str::from_utf8(header.value) else {
            return Head::Invalid(400);
        };
        let value = value.trim();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match name.as_str() {
            "upgrade" => upgrade |= has_token("websocket"),
            "connection" => connection_upgrade |= has_token("upgrade"),
            _ if field.is_some() => return Head::Invalid(400),
            _ => *field = Some(value),
        }
    }
    if parsed.version == Some(1) && request.host.is_none() {
        return Head::Invalid(400); // RFC 9112 3.2: HTTP/1.1 requires a Host
    }
    request.wants_websocket = upgrade && connection_upgrade;
    Head::Complete { len, request }
}

/// The origins whose pages may open a WebSocket here, besides the server's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origins {
    /// Only pages served by the host the request came to, when that host is an address or
    /// `localhost` (and programs, which send no `Origin`). A host given by another name could
    /// be any web site whose name an attacker pointed at this server (DNS rebinding): the
    /// browser would send that site's name as both `Origin` and `Host`. Names are listed.
    #[default]
    SameHost,
    /// These too (`--allow-origin URL`), compared without case and a trailing slash.
    Listed(Vec<String>),
    /// Any (`--allow-origin '*'`).
    Any,
}

impl Origins {
    /// Whether a request with this `Origin`, sent to this `Host`, may open a WebSocket.
    pub fn allow(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true; // not a browser: the origin check protects browsers' users
        };
        let origin = origin.trim_end_matches('/');
        let same_host = host
            .filter(|host| cannot_be_rebound(host))
            .is_some_and(|host| {
                ["http://", "https://"].iter().any(|scheme| {
                    origin
                        .get(..scheme.len())
                        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
                        && origin[scheme.len()..].eq_ignore_ascii_case(host)
                })
            });
        same_host
            || match self {
                Origins::SameHost => false,
                Origins::Any => true,
                Origins::Listed(allowed) => allowed
                    .iter()
                    .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)),
            }
    }
}

/// Whether a `Host` (with its port, if any) is one no other web site can be made to send: an IP
/// address, or `localhost`, which browsers resolve to this machine themselves.
fn cannot_be_rebound(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// What the web listener does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the chat page.
    Page,
    /// `GET /healthz`: `200 ok`, for load balancers.
    Health,
    /// `GET /ws` with a valid upgrade: switch to WebSocket, with this accept key.
    Upgrade {
        accept: String,
    },
    /// `GET /ws` from an origin not allowed.
    Forbidden,
    /// `GET /ws` without a usable upgrade (426 when it is not one at all, 400 when it is broken).
    UpgradeRequired,
    BadUpgrade,
    /// Another method on a known path.
    MethodNotAllowed,
    /// Another path.
    NotFound,
}

impl Route {
    /// The route of `request` for a server allowing `origins`.
    pub fn of(request: &Request<'_>, origins: &Origins) -> Route {
        let known = matches!(request.path, "/" | "/healthz" | "/ws");
        if !known {
            return Route::NotFound;
        }
        if request.method != "GET" && request.method != "HEAD" {
            return Route::MethodNotAllowed;
        }
        match request.path {
            "/" => Route::Page,
            "/healthz" => Route::Health,
            _ if !request.wants_websocket => Route::UpgradeRequired,
            _ if request.method != "GET" || request.websocket_version != Some("13") => {
                Route::BadUpgrade
            }
            _ => match request.websocket_key.filter(|key| valid_key(key)) {
                None => Route::BadUpgrade,
                Some(_) if !origins.allow(request.origin, request.host) => Route::Forbidden,
                Some(key) => Route::Upgrade {
                    accept: accept_key(key),
                },
            },
        }
    }
}

/// Whether a `Sec-WebSocket-Key` is what RFC 6455 asks: 16 bytes in base64.
fn valid_key(key: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|bytes| bytes.len() == 16)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of the key and the
/// RFC's GUID.
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes())
}

/// What the page may do, for browsers to enforce: nothing from elsewhere, no frames around it,
/// its own inline script and style, and connections to its own host (the WebSocket) only. A
/// flaw in the page then cannot load or send anything elsewhere.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// A whole response that ends the connection: status, a short text body (or `body` with its
/// content type), `Connection: close`. For `HEAD`, the caller sends the head only.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    response_with(status, content_type, "", body)
}

/// The chat page ([`PAGE`]), with the policy that confines it.
pub fn page_response() -> Vec<u8> {
    response_with(
        200,
        "text/html; charset=utf-8",
        &format!("Content-Security-Policy: {PAGE_POLICY}\r\n"),
        PAGE.as_bytes(),
    )
}

fn response_with(status: u16, content_type: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n{headers}\
         Connection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A short plain-text response saying `what`.
pub fn text_response(status: u16, what: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        format!("{what}\n").as_bytes(),
    )
}

/// The `101 Switching Protocols` of an accepted upgrade.
pub fn upgrade_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade(extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: chat.example:8080\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn route(head: &str, origins: &Origins) -> Route {
        match parse_head(head.as_bytes()) {
            Head::Complete { len, request } => {
                assert_eq!(len, head.len());
                Route::of(&request, origins)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_rfc_accept_key() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn heads_come_whole_or_not_at_all() {
        let head = upgrade("");
        for cut in 0..head.len() {
            assert_eq!(
                parse_head(&head.as_bytes()[..cut]),
                Head::Incomplete,
                "{cut}"
            );
        }
        assert!(matches!(parse_head(head.as_bytes()), Head::Complete { .. }));
        assert_eq!(
            parse_head(b"\x16\x03\x01 not http\r\n\r\n"),
            Head::Invalid(400)
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse_head(long.as_bytes()), Head::Invalid(431));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(many.as_bytes()), Head::Invalid(431));
    }

    #[test]
    fn ambiguous_heads_are_refused() {
        // Which of two Origins (or Hosts, keys, versions) would count? Neither: 400.
        for twice in [
            "Origin: https://evil.example\r\nOrigin: http://chat.example:8080\r\n",
            "Host: other.example\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Version: 13\r\n",
        ] {
            assert_eq!(
                parse_head(upgrade(twice).as_bytes()),
                Head::Invalid(400),
                "{twice}"
            );
        }
        // An Origin that is not text is not "no Origin".
        let mut garbled = upgrade("Origin: http://evil.example").into_bytes();
        garbled.splice(garbled.len() - 2..garbled.len() - 2, [0xff, b'\r', b'\n']);
        assert_eq!(parse_head(&garbled), Head::Invalid(400));
        // HTTP/1.1 requires a Host.
        let no_host = upgrade("").replace("Host: chat.example:8080\r\n", "");
        assert_eq!(parse_head(no_host.as_bytes()), Head::Invalid(400));
        // Lists may be split over several lines of the same header.
        let split = upgrade("").replace(
            "Connection: keep-alive, Upgrade\r\n",
            "Connection: Upgrade\r\nConnection: keep-alive\r\n",
        );
        let Head::Complete { request, .. } = parse_head(split.as_bytes()) else {
            panic!("{split}")
        };
        assert!(request.wants_websocket);
    }

    #[test]
    fn routes() {
        let same = Origins::SameHost;
        for (head, expected) in [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", Route::Page),
            ("GET /?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", Route::Page),
            ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Route::Health),
            ("HEAD /healthz HTTP/1.0\r\n\r\n", Route::Health),
            ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", Route::NotFound),
            (
                "POST / HTTP/1.1\r\nHost: x\r\n\r\n",
                Route::MethodNotAllowed,
            ),
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
                Route::UpgradeRequired,
            ),
        ] {
            assert_eq!(route(head, &same), expected, "{head:?}");
        }
        assert_eq!(
            route(&upgrade(""), &same),
            Route::Upgrade {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }
        );
        let old_version = upgrade("").replace("Version: 13", "Version: 8");
        assert_eq!(route(&old_version, &same), Route::BadUpgrade);
        let bad_key = upgrade("").replace(KEY, "short");
        assert_eq!(route(&bad_key, &same), Route::BadUpgrade);
    }

    #[test]
    fn origins() {
        let same = Origins::SameHost;
        // A page of the host it came to, by its address or as localhost, is the server's own.
        for host in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "10.1.2.3",
        ] {
            let own = upgrade(&format!("Origin: http://{host}\r\n"))
                .replace("Host: chat.example:8080", &format!("Host: {host}"));
            assert!(
                matches!(route(&own, &same), Route::Upgrade { .. }),
                "{host}"
            );
        }
        // By a name, it could be any site whose name was made to point here (DNS rebinding:
        // the browser then sends that site's name as both Origin and Host): it must be listed.
        let named = upgrade("Origin: http://chat.example:8080\r\n");
        assert_eq!(route(&named, &same), Route::Forbidden);
        let chat = Origins::Listed(vec!["http://chat.example:8080".into()]);
        assert!(matches!(route(&named, &chat), Route::Upgrade { .. }));
        let other = upgrade("Origin: https://evil.example\r\n");
        assert_eq!(route(&other, &same), Route::Forbidden);
        let listed = Origins::Listed(vec!["https://EVIL.example/".into()]);
        assert!(matches!(route(&other, &listed), Route::Upgrade { .. }));
        assert!(matches!(
            route(&other, &Origins::Any),
            Route::Upgrade { .. }
        ));
        // A page of another port of the same host is another origin.
        let other_port = upgrade("Origin: http://127.0.0.1:9090\r\n")
            .replace("Host: chat.example:8080", "Host: 127.0.0.1:8080");
        assert_eq!(route(&other_port, &same), Route::Forbidden);
    }

    #[test]
    fn responses() {
        let text = String::from_utf8(text_response(404, "not found")).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Length: 10\r\n") && text.contains("Connection: close"));
        assert!(text.ends_with("\r\n\r\nnot found\n"));
        let upgrade = String::from_utf8(upgrade_response("abc")).unwrap();
        assert!(upgrade.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(upgrade.contains("Sec-WebSocket-Accept: abc\r\n") && upgrade.ends_with("\r\n\r\n"));
        let page = String::from_utf8(page_response()).unwrap();
        let (head, body) = page.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, PAGE);
        let policy = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Security-Policy: "))
            .expect("the page is confined");
        // Nothing from elsewhere, and the WebSocket to its own host only.
        assert!(policy.starts_with("default-src 'none'") && policy.contains("connect-src 'self'"));
        assert!(
            !text.contains("Content-Security-Policy"),
            "only the page needs one"
        );
    }
}
