//! The exec itself, on the old image's side, and the signal mask around it.
//!
//! Between `execve` and the moment the new image has installed its handlers, every signal has
//! its default disposition: a SIGTERM, SIGHUP or SIGUSR2 would kill the master, a SIGTTIN would
//! stop it. So every signal is blocked before `execve` (the mask survives exec, and signals
//! sent meanwhile stay pending), and the new image restores the previous mask only once its
//! handlers are installed: nothing is lost and nothing is fatal during the handover.
//!
//! Before blocking, the loop's own bookkeeping must be empty: a signal whose handler already
//! ran but that the loop has not taken yet lives only in this image's memory and would be lost.
//! So the exec is deferred (to the next quiet moment of the loop) when one is waiting; once
//! everything is blocked nothing new can reach the handlers.
//!
//! If `execve` fails, everything is put back: close-on-exec on the handed-over fds, the memfd
//! closed, the mask restored. The old image goes on as if nothing happened.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use super::binary::Binary;
use super::error::UpgradeError;
use super::handover::{Handover, CHECK_VAR, FD_VAR};
use super::rollback::{self, PREVIOUS_VAR, ROLLBACK_VAR};

/// The exec did not happen because a signal is waiting to be taken: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferred;

/// Replaces this process's image with the new binary, handing `handover` over, with the
/// environment `env` (the master's own, byte for byte). Returns only if the exec did not
/// happen: `Ok(Deferred)` when `signal_waiting()` said a signal is waiting (nothing was
/// changed), `Err` when the exec failed (everything was restored).
pub fn exec_in_place(
    binary: &Binary,
    handover: &mut Handover,
    env: &[(OsString, OsString)],
    signal_waiting: impl Fn() -> bool,
) -> Result<Deferred, UpgradeError> {
    handover.signal_mask = blocked_signals().map_err(UpgradeError::SignalMask)?;
    let memfd = handover.write_memfd()?;
    // The way back, should the new binary not manage to take over (see `rollback`).
    let exe = rollback::open_self();
    let path = c_string(binary.path().as_os_str());
    let argv: Vec<CString> = binary.argv().iter().map(|a| c_string(a)).collect();
    let exe_fd = exe.as_ref().map(AsRawFd::as_raw_fd);
    let envp = exec_env(env, memfd.as_raw_fd(), exe_fd);
    let saved = block_all().map_err(UpgradeError::SignalMask)?;
    if signal_waiting() {
        restore(&saved);
        return Ok(Deferred);
    }
    let mut keep = handover.fds();
    keep.push(memfd.as_raw_fd());
    keep.extend(exe_fd);
    if let Err(e) = set_inherited(&keep) {
        restore(&saved);
        return Err(e);
    }
    let errno = match nix::unistd::execve(&path, &argv, &envp) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    let _ = set_cloexec(&keep);
    drop(memfd);
    drop(exe);
    restore(&saved);
    Err(UpgradeError::Exec {
        path: binary.path().to_path_buf(),
        source: errno,
    })
}

/// The master's environment for the new image: the upgrade's own variables replaced by the
/// handover's fd and, when the running executable could be opened, the way back to it.
fn exec_env(env: &[(OsString, OsString)], memfd: RawFd, exe: Option<RawFd>) -> Vec<CString> {
    let ours =
        |k: &OsString| k == FD_VAR || k == CHECK_VAR || k == PREVIOUS_VAR || k == ROLLBACK_VAR;
    let previous = exe.map(|exe| format!("{PREVIOUS_VAR}={exe},{memfd}").into_bytes());
    env.iter()
        .filter(|(k, _)| !ours(k))
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .chain([format!("{FD_VAR}={memfd}").into_bytes()])
        .chain(previous)
        .filter_map(|entry| CString::new(entry).ok())
        .collect()
}

/// An OS string as a C string; argv entries and paths from the kernel never hold NUL.
fn c_string(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).unwrap_or_else(|_| CString::from(c"?"))
}

/// Clears close-on-exec on each fd; on a failure, sets it back on those already cleared.
fn set_inherited(fds: &[RawFd]) -> Result<(), UpgradeError> {
    set_inherited_raw(fds).map_err(|(fd, source)| UpgradeError::Inherit { fd, source })
}

/// [`set_inherited`], with the fd that failed and its errno.
pub(super) fn set_inherited_raw(fds: &[RawFd]) -> Result<(), (RawFd, Errno)> {
    for (i, &fd) in fds.iter().enumerate() {
        if let Err(errno) = set_flag(fd, FdFlag::empty()) {
            let _ = set_cloexec(&fds[..i]);
            return Err((fd, errno));
        }
    }
    Ok(())
}

/// Sets close-on-exec on each fd; the first failure (an fd that is not open) is returned
/// after trying them all.
pub(crate) fn set_cloexec(fds: &[RawFd]) -> Result<(), (RawFd, Errno)> {
    let mut first = Ok(());
    for &fd in fds {
        if let Err(errno) = set_flag(fd, FdFlag::FD_CLOEXEC) {
            first = first.and(Err((fd, errno)));
        }
    }
    first
}

fn set_flag(fd: RawFd, flag: FdFlag) -> Result<(), Errno> {
    // SAFETY: the fd is only borrowed for one fcntl call, which closes nothing; a number that
    // is not open fails with EBADF.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_SETFD(flag)).map(drop)
}

/// The signals blocked now, by number (real-time ones included).
fn blocked_signals() -> Result<Vec<i32>, Errno> {
    let mut current = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, None, Some(&mut current))?;
    let raw: &libc::sigset_t = current.as_ref();
    // SAFETY: sigismember only reads the set; numbers outside 1..SIGRTMAX are skipped.
    Ok((1..=libc::SIGRTMAX())
        .filter(|&sig| unsafe { libc::sigismember(raw, sig) } == 1)
        .collect())
}

/// Blocks every signal; returns the mask to restore.
fn block_all() -> Result<SigSet, Errno> {
    let mut saved = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut saved),
    )?;
    Ok(saved)
}

fn restore(saved: &SigSet) {
    // Cannot fail with a valid `how`; a failure would leave signals blocked, so say it.
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(saved), None) {
        tracing::error!(error = %e, "could not restore the signal mask after a failed upgrade");
    }
}

/// Sets the signal mask to exactly `signals` (numbers that are not signals are ignored).
pub(crate) fn set_mask(signals: &[i32]) -> Result<(), Errno> {
    // SAFETY: sigemptyset initialises the set we own; sigaddset writes into it and fails with
    // EINVAL on a number that is not a signal.
    let set = unsafe {
        let mut raw: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut raw);
        for &sig in signals {
            libc::sigaddset(&mut raw, sig);
        }
        SigSet::from_sigset_t_unchecked(raw)
    };
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&set), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn entry<'a>(env: &'a [CString], key: &str) -> Option<&'a CStr> {
        env.iter()
            .map(CString::as_c_str)
            .find(|e| e.to_bytes().starts_with(format!("{key}=").as_bytes()))
    }

    fn quiet_handover() -> Handover {
        Handover {
            listeners: Vec::new(),
            workers: Vec::new(),
            outputs: Vec::new(),
            ..crate::upgrade::handover::sample()
        }
    }

    fn current_mask() -> Vec<i32> {
        blocked_signals().expect("mask")
    }

    #[test]
    fn a_failed_exec_puts_everything_back() {
        let before = current_mask();
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let mut handover = quiet_handover();
        handover.outputs = vec![crate::upgrade::HandedOutput {
            worker: 1,
            pid: 1,
            fd: read.as_raw_fd(),
        }];
        let binary = Binary::at(std::path::Path::new("/nonexistent/herdsman"), &["herdsman"]);
        let err = exec_in_place(&binary, &mut handover, &[], || false).unwrap_err();
        assert!(
            matches!(
                err,
                UpgradeError::Exec {
                    source: Errno::ENOENT,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(current_mask(), before, "signal mask restored");
        assert_eq!(
            handover.signal_mask, before,
            "the mask to restore was handed over"
        );
        let flag = |fd| fcntl(fd, FcntlArg::F_GETFD).expect("flags") & libc::FD_CLOEXEC;
        assert_eq!(flag(&read), libc::FD_CLOEXEC, "close-on-exec set again");
        drop(write);
    }

    #[test]
    fn a_waiting_signal_defers_the_exec_and_changes_nothing() {
        let before = current_mask();
        let binary = Binary::at(std::path::Path::new("/nonexistent/herdsman"), &["herdsman"]);
        let deferred = exec_in_place(&binary, &mut quiet_handover(), &[], || {
            // Asked only once every signal is blocked.
            let blocked = current_mask();
            blocked.contains(&libc::SIGTERM) && blocked.contains(&libc::SIGHUP)
        });
        assert_eq!(deferred.expect("deferred"), Deferred);
        assert_eq!(current_mask(), before);
    }

    #[test]
    fn a_handed_over_fd_that_is_not_open_fails_before_the_exec() {
        let mut handover = quiet_handover();
        handover.outputs = vec![crate::upgrade::HandedOutput {
            worker: 1,
            pid: 1,
            fd: 1 << 30,
        }];
        let binary = Binary::at(std::path::Path::new("/nonexistent/herdsman"), &["herdsman"]);
        let err = exec_in_place(&binary, &mut handover, &[], || false).unwrap_err();
        assert!(matches!(err, UpgradeError::Inherit { .. }), "{err:?}");
    }

    #[test]
    fn the_exec_environment_carries_only_the_new_handover_fd() {
        use std::os::unix::ffi::OsStringExt;
        let pair = |k: &str, v: &str| (OsString::from(k), OsString::from(v));
        let env = vec![
            pair("PATH", "/bin"),
            pair(FD_VAR, "3"),
            pair(CHECK_VAR, "1"),
            pair(PREVIOUS_VAR, "7,8"),
            pair(ROLLBACK_VAR, "an older one"),
            (OsString::from("RAW"), OsString::from_vec(vec![0xff, b'x'])),
        ];
        let envp = exec_env(&env, 42, None);
        assert_eq!(envp.len(), 3);
        assert_eq!(entry(&envp, PREVIOUS_VAR), None);
        assert_eq!(entry(&envp, ROLLBACK_VAR), None);
        let envp = exec_env(&env, 42, Some(9));
        assert_eq!(
            entry(&envp, PREVIOUS_VAR),
            Some(c"HERDSMAN_UPGRADE_PREVIOUS=9,42")
        );
        assert_eq!(
            entry(&envp, "RAW").map(CStr::to_bytes),
            Some(&b"RAW=\xffx"[..])
        );
        assert_eq!(entry(&envp, FD_VAR), Some(c"HERDSMAN_UPGRADE_FD=42"));
        assert_eq!(entry(&envp, CHECK_VAR), None);
        assert_eq!(entry(&envp, "PATH"), Some(c"PATH=/bin"));
    }

    #[test]
    fn cloexec_can_be_cleared_and_set_back_and_a_closed_fd_is_reported() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let fds = [read.as_raw_fd(), write.as_raw_fd()];
        set_inherited(&fds).expect("cleared");
        let flag = |fd| fcntl(fd, FcntlArg::F_GETFD).expect("flags") & libc::FD_CLOEXEC;
        assert_eq!(flag(&read), 0);
        set_cloexec(&fds).expect("set");
        assert_eq!(flag(&write), libc::FD_CLOEXEC);
        // Far above any fd limit: never open, whatever other tests open meanwhile.
        let never_open = 1 << 30;
        assert_eq!(
            set_cloexec(&[read.as_raw_fd(), never_open]),
            Err((never_open, Errno::EBADF))
        );
    }
}
