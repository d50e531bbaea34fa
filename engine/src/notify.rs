//! One byte down a pipe to the Python side's event loop, which watches the read end: the engine
//! never calls into Python from its tokio thread. The write end is non-blocking: a full pipe
//! means a byte is already waiting, and the reader looks at the counters anyway.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The master's `report_at` threshold was crossed.
pub const REPORT: u8 = b'r';
/// The server has stopped: no connection, no app call left.
pub const DONE: u8 = b'd';

pub struct Notifier {
    fd: Option<OwnedFd>,
}

impl Notifier {
    /// Takes ownership of a duplicate of `fd`; a negative `fd`: notify nothing (tests).
    pub fn new(fd: i32) -> std::io::Result<Notifier> {
        if fd < 0 {
            return Ok(Notifier { fd: None });
        }
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd number the caller gave us; a failure is
        // reported as an error, a success is a new descriptor owned by nobody else.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `dup` was just created and is owned by this OwnedFd alone.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(dup, libc::F_GETFL);
            libc::fcntl(dup, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Notifier { fd: Some(owned) })
    }

    pub fn send(&self, byte: u8) {
        if let Some(fd) = &self.fd {
            // SAFETY: a one-byte write from a valid buffer to a descriptor we own; EAGAIN (the
            // pipe is full) and EPIPE (the reader is gone) are fine to ignore.
            unsafe {
                libc::write(fd.as_raw_fd(), (&byte as *const u8).cast(), 1);
            }
        }
    }
}
