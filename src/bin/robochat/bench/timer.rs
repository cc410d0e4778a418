//! A wake-up with microsecond precision for the open-loop schedule.
//!
//! epoll's timeout counts whole milliseconds (mio rounds up), so waiting for the next due
//! message with it would send every message up to 1 ms late, and since latency is measured
//! from the due time, that lateness would be reported as the server's. A timerfd in the same
//! poll wakes the loop on time. Elsewhere than Linux, `Timer::new` fails and the worker falls
//! back to the poll timeout.

use std::io;
use std::time::Duration;

use mio::{Registry, Token};

#[cfg(target_os = "linux")]
pub struct Timer {
    fd: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
impl Timer {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: timerfd_create takes no pointers; the fd returned is owned from here on.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            token,
            mio::Interest::READABLE,
        )?;
        Ok(Timer { fd })
    }

    /// Fires once, `after` from now (replacing any earlier setting).
    pub fn set(&self, after: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // A zero value would disarm the timer: fire in 1 ns instead.
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the fd is ours; settime reads `spec` and writes nothing (old value: null).
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes an expiry, so the next one is a new edge for the poll.
    pub fn acknowledge(&self) {
        use std::os::fd::AsRawFd;
        let mut expirations = 0u64;
        // SAFETY: reads at most 8 bytes into a u64 we own; a non-blocking read of an unexpired
        // timer fails with EAGAIN, which is fine to ignore.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut expirations as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

#[cfg(not(target_os = "linux"))]
pub struct Timer;

#[cfg(not(target_os = "linux"))]
impl Timer {
    pub fn new(_registry: &Registry, _token: Token) -> io::Result<Timer> {
        Err(io::ErrorKind::Unsupported.into())
    }
    pub fn set(&self, _after: Duration) -> io::Result<()> {
        Ok(())
    }
    pub fn acknowledge(&self) {}
}
