//! Opening the listening socket, optionally shared with other processes (`SO_REUSEPORT`).
//!
//! mio's `TcpListener::bind` sets `SO_REUSEADDR` and listens with a backlog of 1024; sharing a
//! port needs one more option set before `bind`, which std and mio do not offer, so that path
//! builds the socket itself.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use mio::net::TcpListener;

/// Pending connections the kernel may queue for us (it caps this at `net.core.somaxconn`).
const BACKLOG: libc::c_int = 1024;

/// A non-blocking listener on `addr`; with `reuse_port`, other sockets (in this process or
/// others) may listen on the same port, and the kernel spreads connections over them.
pub(super) fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(addr);
    }
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket() returns a new descriptor or -1; OwnedFd takes sole ownership of it.
    let fd = unsafe {
        check(libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?
    };
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    set_flag(fd, libc::SO_REUSEADDR)?;
    set_flag(fd, libc::SO_REUSEPORT)?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for this address family.
    unsafe {
        check(libc::bind(
            fd,
            &storage as *const _ as *const libc::sockaddr,
            len,
        ))?;
        check(libc::listen(fd, BACKLOG))?;
    }
    Ok(TcpListener::from_std(std::net::TcpListener::from(socket)))
}

fn set_flag(fd: RawFd, option: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads an int of the size given from a live local.
    unsafe {
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
    }
    Ok(())
}

/// `addr` as a C socket address.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, valid when zeroed, and large enough for both
    // families written into it below.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
