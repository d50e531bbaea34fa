//! Going back to the previous binary when the new one passed its check but cannot take over
//! (the handover is unreadable by the time it runs, the configuration no longer loads with the
//! fallback either, no runtime directory can be made): the master process is the same, so the
//! workers would die with it. Instead the new image executes the previous binary again, in
//! place, with the same handover, and that one goes on with the same workers and logs why.
//!
//! The old image opens its own executable (`/proc/self/exe`, which stays the old file even after
//! a new one was renamed over its path) right before the exec and names it, with the handover's
//! memfd, in [`PREVIOUS_VAR`] (`<exe fd>,<memfd>`). The new image takes both before it reads
//! the handover (a duplicate of the memfd: reading it closes the original). To roll back it
//! blocks every signal (the previous binary restores the handover's mask once its handlers are
//! installed, as after any exec), makes the handed-over fds inheritable again and executes the
//! previous binary through the fd, with [`ROLLBACK_VAR`] saying why. A binary that took over
//! after a rollback keeps the adopted workers: no rollout.
//!
//! What cannot be rolled back: a new binary that dies outright (a crash, a script that exits)
//! takes the process with it, and the workers exit with the master, as they would at any death
//! of the master; the check is what stands between such a binary and the running master.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use super::exec::{set_cloexec, set_inherited_raw};
use super::handover::FD_VAR;

/// `<exe fd>,<memfd>`: the previous binary and the handover, for a rollback.
pub const PREVIOUS_VAR: &str = "HERDSMAN_UPGRADE_PREVIOUS";
/// Why the previous binary runs again (set for it by a rollback).
pub const ROLLBACK_VAR: &str = "HERDSMAN_UPGRADE_ROLLBACK";

/// The previous binary and a duplicate of the handover's memfd.
#[derive(Debug)]
pub struct Previous {
    exe: OwnedFd,
    memfd: OwnedFd,
}

/// The old image's side: its own executable, opened to be named in [`PREVIOUS_VAR`]; `None`
/// (no rollback possible) if it cannot be opened.
pub(super) fn open_self() -> Option<OwnedFd> {
    std::fs::File::open("/proc/self/exe")
        .ok()
        .map(OwnedFd::from)
}

/// The new image's side: takes [`PREVIOUS_VAR`] (removing it), if it names two open fds.
pub(super) fn take_previous() -> Option<Previous> {
    let value = std::env::var_os(PREVIOUS_VAR)?;
    // The process is single-threaded this early: nothing else reads the environment now.
    std::env::remove_var(PREVIOUS_VAR);
    let text = value.to_str()?;
    let (exe, memfd) = text.split_once(',')?;
    let (exe, memfd): (RawFd, RawFd) = (exe.parse().ok()?, memfd.parse().ok()?);
    if exe <= 2 || memfd <= 2 || exe == memfd {
        return None;
    }
    // SAFETY: F_GETFD only reads the descriptor flags; a number that is not open fails.
    let open = |fd| Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) }).is_ok();
    if !open(exe) || !open(memfd) {
        return None;
    }
    // SAFETY: the old image opened `exe` for this variable only, which is gone now, so this is
    // its only owner. `memfd` is only borrowed for the duplicate (the handover's intake owns it).
    let exe = unsafe { OwnedFd::from_raw_fd(exe) };
    // Kept out of whatever this image execs, unless it is the rollback itself (through the fd).
    set_cloexec(&[exe.as_raw_fd()]).ok()?;
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(memfd) };
    let dup = fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(3)).ok()?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    let memfd_dup = unsafe { OwnedFd::from_raw_fd(dup) };
    // The original goes no further than this image, whether or not the intake reads it (a
    // rollback passes the duplicate instead).
    set_cloexec(&[memfd]).ok()?;
    let memfd = memfd_dup;
    Some(Previous { exe, memfd })
}

/// Takes [`ROLLBACK_VAR`] (removing it): why this binary runs again, after a rollback.
pub(super) fn take_rollback_reason() -> Option<String> {
    let value = std::env::var_os(ROLLBACK_VAR)?;
    std::env::remove_var(ROLLBACK_VAR);
    Some(value.to_string_lossy().into_owned())
}

/// Executes the previous binary with the handover, the fds `inherit` kept open across the exec,
/// and `reason` for its log. Returns only if that failed, with the errno.
pub fn roll_back(previous: Previous, inherit: &[RawFd], reason: &str) -> Errno {
    // Stays blocked on success: the previous binary restores the handover's mask.
    let mut saved = SigSet::empty();
    if let Err(errno) = sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut saved),
    ) {
        return errno;
    }
    let memfd = previous.memfd.as_raw_fd();
    let mut keep = inherit.to_vec();
    keep.push(memfd);
    if let Err((_, errno)) = set_inherited_raw(&keep) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
        return errno;
    }
    let argv: Vec<CString> = crate::sys::proctitle::original_args()
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let ours = |k: &OsString| k == FD_VAR || k == PREVIOUS_VAR || k == ROLLBACK_VAR;
    let reason = reason.replace('\0', " ");
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !ours(k))
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .chain([
            format!("{FD_VAR}={memfd}").into_bytes(),
            format!("{ROLLBACK_VAR}={reason}").into_bytes(),
        ])
        .filter_map(|entry| CString::new(entry).ok())
        .collect();
    let errno = match nix::unistd::fexecve(&previous.exe, &argv, &env) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
    errno
}
