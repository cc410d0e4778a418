//! The web listener's answer to a request head: the page, `/healthz`, a refusal, or the
//! WebSocket upgrade (whose `101` is followed by the greeting). Pure: the caller writes the
//! bytes, logs and closes.

use crate::web::{self, Head, Origins, Route};

/// What to do with the bytes a web connection has sent so far.
pub(super) enum Answer {
    /// The head is not all there yet.
    Incomplete,
    /// Send `response`, then close. `refused_origin` is set when the upgrade was refused for
    /// its `Origin` (worth a log line: a page elsewhere is trying to use this server).
    Close {
        status: u16,
        response: Vec<u8>,
        refused_origin: Option<String>,
    },
    /// Send `response` (the `101`); the bytes after the head's `len` are WebSocket frames.
    Upgrade { len: usize, response: Vec<u8> },
}

impl Answer {
    /// The response's status.
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Incomplete => None,
            Answer::Close { status, .. } => Some(*status),
            Answer::Upgrade { .. } => Some(101),
        }
    }
}

/// The answer to the request head at the start of `input`.
pub(super) fn answer(input: &[u8], origins: &Origins) -> Answer {
    let (len, request) = match web::parse_head(input) {
        Head::Incomplete => return Answer::Incomplete,
        Head::Invalid(status) => return close(status, web::text_response(status, "bad request")),
        Head::Complete { len, request } => (len, request),
    };
    let head_only = request.method == "HEAD";
    let (status, response) =
        match Route::of(&request, origins) {
            Route::Upgrade { accept } => {
                return Answer::Upgrade {
                    len,
                    response: web::upgrade_response(&accept),
                }
            }
            Route::Forbidden => return Answer::Close {
                status: 403,
                response: web::text_response(
                    403,
                    "this page's origin may not open the chat (see robochat serve --allow-origin)",
                ),
                refused_origin: request.origin.map(str::to_owned),
            },
            Route::Page => (200, web::page_response()),
            Route::Health => (200, web::text_response(200, "ok")),
            Route::UpgradeRequired => (
                426,
                web::text_response(
                    426,
                    "this is the chat's WebSocket: connect with a WebSocket client",
                ),
            ),
            Route::BadUpgrade => (
                400,
                web::text_response(400, "a WebSocket upgrade needs version 13 and a valid key"),
            ),
            Route::MethodNotAllowed => (405, web::text_response(405, "only GET is served here")),
            Route::NotFound => (
                404,
                web::text_response(404, "not found: the chat page is at /"),
            ),
        };
    let response = if head_only {
        head_of(response)
    } else {
        response
    };
    close(status, response)
}

fn close(status: u16, response: Vec<u8>) -> Answer {
    Answer::Close {
        status,
        response,
        refused_origin: None,
    }
}

/// The head of a whole response (for `HEAD`): everything up to its blank line.
fn head_of(mut response: Vec<u8>) -> Vec<u8> {
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        response.truncate(end + 4);
    }
    response
}
