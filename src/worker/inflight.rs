//! The in-flight file: how the master learns which requests a worker was serving when it died,
//! even by `os._exit` or SIGKILL, when the worker can say nothing more. The master creates one
//! small memfd per worker and hands it over (exec: a planned fd and `--inflight-fd`; zygote: one
//! more fd by SCM_RIGHTS); the runtime maps it and, per request, writes `METHOD PATH\0` into a
//! slot when the app is called and clears the slot's first byte when it returns. No system call
//! on that path: stores into shared memory. The master reads the file once, when it reaps the
//! worker, so there is no race with a live writer.
//!
//! The second half carries the other way the requests quarantined when the worker was started
//! (see `master::state::quarantine`).
//!
//! Layout (kept in step with python/herdsman/runtime/inflightfile.py): `SLOTS` slots of
//! `SLOT_SIZE` bytes; a slot whose first byte is 0 is free; a request in slot `key % SLOTS`
//! (at most `SLOTS` listed: with more in flight, later ones take the slot of earlier ones).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

pub const SLOTS: usize = 8;
pub const SLOT_SIZE: usize = 256;
/// Where the quarantined requests start: newline-separated "METHOD PATH", NUL-terminated,
/// written by the master before the worker starts, read by the worker once.
pub const QUARANTINE_OFFSET: usize = SLOTS * SLOT_SIZE;
pub const FILE_SIZE: usize = 2 * QUARANTINE_OFFSET;

/// A new in-flight file (close-on-exec; the spawn plan moves it to its fd number): free slots,
/// then the `quarantined` requests (as many as fit).
pub fn create(quarantined: &[String]) -> Result<OwnedFd, Errno> {
    let name = c"herdsman-inflight";
    // SAFETY: memfd_create with a valid C string; the fd returned is ours alone.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), FILE_SIZE as libc::off_t) } != 0 {
        return Err(Errno::last());
    }
    let mut list = Vec::new();
    for request in quarantined {
        if list.len() + request.len() + 2 > FILE_SIZE - QUARANTINE_OFFSET {
            break;
        }
        list.extend_from_slice(request.as_bytes());
        list.push(b'\n');
    }
    if !list.is_empty() {
        let at = QUARANTINE_OFFSET as libc::off_t;
        // SAFETY: pwrite from a buffer we own into the memfd, within its size.
        if unsafe { libc::pwrite(fd.as_raw_fd(), list.as_ptr().cast(), list.len(), at) } < 0 {
            return Err(Errno::last());
        }
    }
    Ok(fd)
}

/// The requests a (dead) worker's file lists, as "METHOD PATH"; empty if unreadable.
pub fn read(fd: &OwnedFd) -> Vec<String> {
    let mut buf = vec![0u8; FILE_SIZE];
    // SAFETY: pread into a buffer we own, within its length.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Vec::new();
    }
    buf.truncate((n as usize).min(QUARANTINE_OFFSET));
    parse(&buf)
}

/// The used slots of a file's contents.
pub fn parse(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(SLOT_SIZE)
        .filter(|slot| slot.first().is_some_and(|b| *b != 0))
        .map(|slot| {
            let end = slot.iter().position(|b| *b == 0).unwrap_or(slot.len());
            String::from_utf8_lossy(&slot[..end]).into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_slots_are_listed_and_free_ones_skipped() {
        let mut bytes = vec![0u8; QUARANTINE_OFFSET];
        bytes[..12].copy_from_slice(b"GET /crash\0\0");
        bytes[SLOT_SIZE] = 0; // free, though stale bytes follow
        bytes[SLOT_SIZE + 1..SLOT_SIZE + 5].copy_from_slice(b"OLD ");
        let s = 3 * SLOT_SIZE;
        bytes[s..s + 7].copy_from_slice(b"POST /x");
        assert_eq!(parse(&bytes), vec!["GET /crash", "POST /x"]);
    }

    #[test]
    fn a_created_file_reads_empty_then_what_was_written() {
        let fd = create(&["GET /die".to_string()]).expect("memfd");
        assert!(read(&fd).is_empty(), "the quarantine list is not a slot");
        let mut tail = [0u8; 9];
        // SAFETY: pread into a buffer we own.
        let at = QUARANTINE_OFFSET as i64;
        unsafe { libc::pread(fd.as_raw_fd(), tail.as_mut_ptr().cast(), 9, at) };
        assert_eq!(&tail, b"GET /die\n");
        let line = b"PUT /a\0";
        // SAFETY: pwrite from a buffer we own into the memfd.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                line.as_ptr().cast(),
                line.len(),
                SLOT_SIZE as i64,
            )
        };
        assert_eq!(n, line.len() as isize);
        assert_eq!(read(&fd), vec!["PUT /a"]);
    }
}
