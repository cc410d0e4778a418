//! The server's resident memory, read from /proc (Linux), to work out what an idle connection
//! costs it.

use std::io;

/// The VmRSS of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))?;
    Ok(kib * 1024)
}

/// The readings taken during a run; a later reading is `None` if it failed (the server died).
#[derive(Default, Clone, Copy)]
pub struct Readings {
    pub before: u64,
    pub after_idle: Option<u64>,
    pub after_idle_message: Option<u64>,
    pub end: Option<u64>,
}

impl Readings {
    /// Growth from `before` to `after`, per connection, rounded; `None` without both.
    pub fn per_connection(&self, after: Option<u64>, connections: u64) -> Option<i64> {
        let after = after?;
        if connections == 0 {
            return None;
        }
        let growth = after as i128 - self.before as i128;
        Some((growth as f64 / connections as f64).round() as i64)
    }
}
