//! The process's open-file limit, which bounds how many connections a server can hold.

use std::io;

/// Raises the soft limit on open files to the hard limit, and returns the new soft limit.
///
/// Each connection needs one file descriptor, and the usual soft limit (1024) is far below what
/// a server holding thousands of connections needs; the hard limit is what the administrator
/// allows.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
    Ok(limit.rlim_cur as u64)
}
