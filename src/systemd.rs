//! systemd's readiness protocol (`Type=notify`): tell the service manager when the server is
//! listening and when it begins to shut down.
//!
//! With `NOTIFY_SOCKET` in the environment, states such as `READY=1` are sent as one datagram to
//! that Unix socket (a path, or an abstract name written with a leading `@`). Without it, nothing
//! happens. This is the whole protocol `sd_notify(3)` speaks; no library is needed for it.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (such as `"READY=1"`) to systemd. Returns `Ok(false)` when not run by systemd
/// (no `NOTIFY_SOCKET`), `Ok(true)` when sent.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    match target.as_bytes().strip_prefix(b"@") {
        Some(name) => send_abstract(&socket, name, state)?,
        None => {
            socket.send_to(state.as_bytes(), std::path::Path::new(&target))?;
        }
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_socket: &UnixDatagram, _name: &[u8], _state: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}
