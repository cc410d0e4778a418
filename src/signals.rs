//! Graceful shutdown on SIGINT and SIGTERM, for server binaries.
//!
//! The signals are blocked in every thread and received by one thread with `sigwait`, which then
//! asks the server to shut down through its [`ServerHandle`]. No code runs inside a signal
//! handler, so nothing here has to be async-signal-safe.

use std::io;
use std::thread;

use crate::ServerHandle;

/// SIGINT and SIGTERM, blocked so that they can be waited for.
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGINT and SIGTERM in this thread and in every thread it starts afterwards. Call it
    /// first in `main`, before any thread (such as a server's workers) exists.
    pub fn block() -> io::Result<Self> {
        // SAFETY: the set is initialised by sigemptyset before use, and pthread_sigmask only
        // changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(TerminationSignals { set })
        }
    }

    /// Starts a thread that shuts the server down on the first signal. A second signal ends the
    /// process at once, for when a graceful shutdown takes too long for the operator.
    pub fn shut_down_on_signal(self, handle: ServerHandle) -> io::Result<()> {
        thread::Builder::new()
            .name("robochat-signals".into())
            .spawn(move || {
                let first = self.wait();
                log::info!("received {}, shutting down gracefully", signal_name(first));
                if let Err(e) = crate::systemd::notify("STOPPING=1") {
                    log::warn!("cannot tell systemd the server is stopping: {e}");
                }
                handle.shutdown();
                let second = self.wait();
                log::warn!("received {} again, exiting now", signal_name(second));
                std::process::exit(128 + second);
            })?;
        Ok(())
    }

    fn wait(&self) -> i32 {
        loop {
            let mut signal = 0;
            // SAFETY: the set was built in `block`; sigwait writes the signal number we own.
            let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
            if rc == 0 {
                return signal;
            }
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
