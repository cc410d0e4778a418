//! Opening a listening socket: its backlog, its share of the port (`SO_REUSEPORT`), and the
//! kernel send buffer that the connections accepted from it inherit.
//!
//! std and mio listen with a backlog of 128 and cannot set options before `bind`, so the socket
//! is built here with socket2.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// How a listening socket is set up.
#[derive(Clone, Copy, Debug)]
pub(super) struct ListenOptions {
    /// Let other sockets (in this process or others) listen on the same port; the kernel spreads
    /// new connections over them.
    pub reuse_port: bool,
    /// Connections the kernel may queue before they are accepted (it caps this at
    /// `net.core.somaxconn`).
    pub backlog: u32,
    /// `SO_SNDBUF` of every accepted connection, in bytes (the kernel doubles it for its own
    /// bookkeeping); `None` leaves it to the kernel's autotuning, which grows it to
    /// `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) for a client that does not read.
    pub send_buffer: Option<usize>,
}

/// A non-blocking listener on `addr`.
pub(super) fn listen(addr: SocketAddr, options: ListenOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    // Restarting must not wait for the connections of the previous process to time out.
    socket.set_reuse_address(true)?;
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if let Some(bytes) = options.send_buffer {
        // Set on the listener, it is inherited by every accepted socket: no call per connection.
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(&addr.into())?;
    let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The kernel's cap on listen backlogs (`net.core.somaxconn`), where it can be read.
pub(super) fn backlog_cap() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ListenOptions {
        ListenOptions {
            reuse_port: false,
            backlog: 1024,
            send_buffer: Some(64 * 1024),
        }
    }

    #[test]
    fn accepted_sockets_inherit_the_send_buffer() {
        let listener = listen("127.0.0.1:0".parse().unwrap(), options()).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = loop {
            match listener.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        let size = socket2::SockRef::from(&accepted)
            .send_buffer_size()
            .unwrap();
        // Linux reports twice what was set (its bookkeeping share); others report it as set.
        assert!((64 * 1024..=128 * 1024).contains(&size), "{size}");
        drop(client);
    }

    #[test]
    fn a_port_can_be_shared_only_when_both_ask() {
        let shared = ListenOptions {
            reuse_port: true,
            ..options()
        };
        let first = listen("127.0.0.1:0".parse().unwrap(), shared).unwrap();
        let addr = first.local_addr().unwrap();
        assert!(listen(addr, shared).is_ok());
        assert!(listen(addr, options()).is_err());
    }
}
