//! What a connection speaks, and so how its replies are written: lines on the line port, or
//! WebSocket text messages on the web listener. The words are the same on both.

use std::fmt;

use crate::protocol::{encode_line, ERROR_PREFIX};
use crate::websocket::{self, CloseCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    /// `USERNAME::TEXT` lines, one reply line each.
    Line,
    /// A web listener's connection: HTTP, then WebSocket text messages.
    Web,
}

impl Transport {
    /// Appends `text` as one reply: a line, or a text message.
    pub fn reply(self, out: &mut Vec<u8>, text: &str) {
        match self {
            Transport::Line => encode_line(out, text),
            Transport::Web => websocket::encode_text(out, text),
        }
    }

    /// Appends an `ERR` reply saying `reason`.
    pub fn error(self, out: &mut Vec<u8>, reason: &dyn fmt::Display) {
        self.reply(out, &format!("{ERROR_PREFIX}{reason}"));
    }

    /// Appends the last words before the server closes: `text` and, on WebSocket, the close
    /// frame with `code`.
    pub fn goodbye(self, out: &mut Vec<u8>, text: &str, code: CloseCode) {
        self.reply(out, text);
        if self == Transport::Web {
            close(out, code);
        }
    }
}

/// Appends a WebSocket close frame with `code` and what it means as its reason.
pub(super) fn close(out: &mut Vec<u8>, code: CloseCode) {
    let reason = match code {
        CloseCode::Normal | CloseCode::GoingAway => String::new(),
        other => other.to_string(),
    };
    websocket::encode_close(out, code.code(), &reason);
}
