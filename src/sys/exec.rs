//! fork + exec from a plan built entirely before fork.
//!
//! Between fork and exec the child only calls async-signal-safe functions on data prepared by the
//! parent: no allocation, no logging, no locks, no name-service lookups. In order it: moves the
//! planned fds to their target numbers (through temporaries above every target, so overlaps
//! cannot clobber), resets every signal disposition to the default, starts a process group of its
//! own, sets the planned umask, drops privileges if the plan says so (supplementary groups, then
//! the gid, then the uid, then checks that `setuid(0)` fails), sets no_new_privs if the plan says
//! so (after the drop, which it would not forbid anyway, so that nothing exec'd from then on can
//! gain privileges), asks for SIGKILL when the master dies (after the drop: changing credentials
//! clears that request), empties its signal mask and execs. If a step fails, the step and its errno travel back through a close-on-exec pipe, so
//! the parent reports "exec failed: ENOENT" or "setgid failed: EPERM" instead of a worker that
//! mysteriously exits 127.
//!
//! All signals are blocked in the parent around fork, so no herdsman handler can run in the child
//! before its dispositions are reset.

use std::ffi::{CString, NulError, OsStr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("an argument or environment entry contains a NUL byte")]
    Nul(#[from] NulError),
    #[error("could not create the exec status pipe")]
    Pipe(#[source] Errno),
    #[error("could not block signals around fork")]
    SignalMask(#[source] Errno),
    #[error("fork failed")]
    Fork(#[source] Errno),
    #[error("could not execute {program}{}", as_uid(*uid))]
    Exec {
        program: String,
        /// The uid the child had switched to, if it switched.
        uid: Option<libc::uid_t>,
        #[source]
        source: Errno,
    },
    #[error("could not drop privileges in the worker: {step} failed")]
    Privileges {
        step: &'static str,
        #[source]
        source: Errno,
    },
    #[error("privilege drop did not stick: the worker could still become root after setuid")]
    PrivilegesKept,
}

fn as_uid(uid: Option<libc::uid_t>) -> String {
    uid.map(|uid| format!(" as uid {uid}")).unwrap_or_default()
}

impl ExecError {
    /// For a program that could not be executed, what to do about it, by errno; `user` names
    /// the account the child had switched to (e.g. `user nobody (uid 65534)`), if it did.
    pub fn exec_fix(&self, user: Option<&str>) -> Option<String> {
        let ExecError::Exec {
            program,
            uid,
            source,
        } = self
        else {
            return None;
        };
        Some(match (*source, uid) {
            (Errno::EACCES, Some(uid)) => {
                let who = user.map_or_else(|| format!("uid {uid}"), str::to_string);
                format!(
                    "the workers run as {who}, who may not execute {program} or enter a \
                     directory on its way (a venv under /root is the usual case): give that user \
                     read and execute permission on the interpreter and its directories, or \
                     create a venv it can read (python3 -m venv /srv/app/.venv) and point \
                     --python at it"
                )
            }
            (Errno::EACCES, None) => format!(
                "{program}, or a directory on its way, is not executable by herdsman's user: \
                 fix its permissions, or point --python at an interpreter that is"
            ),
            (Errno::ENOENT, _) => format!(
                "{program} does not exist, or its target (a symlink) or its #! interpreter does \
                 not: point --python at an existing interpreter"
            ),
            _ => "point --python at a Python interpreter (a venv's bin/python)".to_string(),
        })
    }
}

/// Who the child becomes before exec: set by root only, applied in the order that works
/// (supplementary groups and gid while still root, the uid last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The complete supplementary group list.
    pub groups: Vec<libc::gid_t>,
    pub gid: libc::gid_t,
    /// `None`: only the groups change (a `group` without a `user`).
    pub uid: Option<libc::uid_t>,
}

/// The steps of the child that can fail, as reported through the status pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
enum Step {
    Fds = 1,
    Setgroups = 2,
    Setgid = 3,
    Setuid = 4,
    StillRoot = 5,
    Exec = 6,
    NoNewPrivs = 7,
}

impl Step {
    fn from_raw(raw: i32) -> Option<Step> {
        [
            Step::Fds,
            Step::Setgroups,
            Step::Setgid,
            Step::Setuid,
            Step::StillRoot,
            Step::Exec,
            Step::NoNewPrivs,
        ]
        .into_iter()
        .find(|step| *step as i32 == raw)
    }
}

/// Everything the child needs, as raw pointers into memory owned by the plan.
pub struct ExecPlan {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// (source fd, target fd) pairs.
    fds: Vec<(RawFd, RawFd)>,
    umask: Option<libc::mode_t>,
    identity: Option<Identity>,
    no_new_privs: bool,
}

impl ExecPlan {
    /// `argv[0]` is `program`. `fds` maps open fds of the parent to the numbers the child gets;
    /// every other fd must be close-on-exec in the parent.
    /// `env` entries are taken byte for byte (they need not be UTF-8).
    pub fn new<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        program: &str,
        args: &[String],
        env: &[(K, V)],
        fds: Vec<(RawFd, RawFd)>,
    ) -> Result<ExecPlan, ExecError> {
        let program = CString::new(program)?;
        let mut argv = vec![program.clone()];
        for arg in args {
            argv.push(CString::new(arg.as_str())?);
        }
        let envp = env
            .iter()
            .map(|(k, v)| {
                let (k, v) = (k.as_ref().as_bytes(), v.as_ref().as_bytes());
                CString::new([k, b"=", v].concat())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExecPlan {
            argv_ptrs: null_terminated(&argv),
            envp_ptrs: null_terminated(&envp),
            program,
            _argv: argv,
            _envp: envp,
            fds,
            umask: None,
            identity: None,
            no_new_privs: false,
        })
    }

    /// The child's umask; `None` keeps the parent's.
    pub fn with_umask(mut self, umask: Option<u32>) -> ExecPlan {
        self.umask = umask.map(|mask| mask as libc::mode_t);
        self
    }

    /// Who the child becomes before exec; `None` keeps the parent's identity.
    pub fn with_identity(mut self, identity: Option<Identity>) -> ExecPlan {
        self.identity = identity;
        self
    }

    /// Whether the child sets `PR_SET_NO_NEW_PRIVS` before exec (inherited by everything it
    /// forks or execs, and irreversible).
    pub fn with_no_new_privs(mut self, on: bool) -> ExecPlan {
        self.no_new_privs = on;
        self
    }

    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    let mut ptrs: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    ptrs
}

/// Forks and execs `plan`, returning the child's pid once exec has succeeded.
pub fn spawn(plan: &ExecPlan) -> Result<Pid, ExecError> {
    let (status_read, status_write) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ExecError::Pipe)?;
    let mut saved = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut saved),
    )
    .map_err(ExecError::SignalMask)?;
    let parent = nix::unistd::getpid();
    // The fallback's upper bound, known before fork: sysconf is not async-signal-safe.
    let fd_limit = highest_open_fd().max(status_write.as_raw_fd());
    // SAFETY: the master is single-threaded, so the child is a faithful copy with no lock held
    // by another thread; the child only runs `child_exec`, which is async-signal-safe.
    let forked = unsafe { fork() };
    if let Ok(ForkResult::Child) = forked {
        child_exec(plan, parent.as_raw(), status_write.as_raw_fd(), fd_limit);
    }
    // Restoring the mask cannot fail with a valid `how`; a failure would only leave signals
    // blocked, which the next loop iteration would not notice, so report it.
    let restored = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
    drop(status_write);
    let child = match forked {
        Ok(ForkResult::Parent { child }) => child,
        Ok(ForkResult::Child) => unreachable!("child_exec never returns"),
        Err(errno) => return Err(ExecError::Fork(errno)),
    };
    restored.map_err(ExecError::SignalMask)?;
    match read_child_status(status_read.as_raw_fd()) {
        None => Ok(child),
        Some((step, errno)) => {
            // The child has already exited (or is about to): reap it here so the loop never
            // sees an unknown pid.
            let _ = waitpid(child, None);
            Err(child_error(plan, step, errno))
        }
    }
}

fn child_error(plan: &ExecPlan, step: Option<Step>, errno: Errno) -> ExecError {
    let step = match step {
        Some(Step::StillRoot) => return ExecError::PrivilegesKept,
        Some(Step::Setgroups) => "setgroups",
        Some(Step::Setgid) => "setgid",
        Some(Step::Setuid) => "setuid",
        Some(Step::NoNewPrivs) => "prctl(PR_SET_NO_NEW_PRIVS)",
        Some(Step::Fds | Step::Exec) | None => {
            return ExecError::Exec {
                program: plan.program(),
                uid: plan.identity.as_ref().and_then(|identity| identity.uid),
                source: errno,
            }
        }
    };
    ExecError::Privileges {
        step,
        source: errno,
    }
}

/// Blocks until the status pipe closes (exec succeeded) or yields the failed step and its errno.
fn read_child_status(fd: RawFd) -> Option<(Option<Step>, Errno)> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into a stack buffer we own, within its bounds.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if Errno::last() == Errno::EINTR => continue,
            _ => break,
        }
    }
    if got < buf.len() {
        return None;
    }
    let step = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Some((Step::from_raw(step), Errno::from_raw(errno)))
}

/// Runs in the forked child. Never returns.
fn child_exec(plan: &ExecPlan, parent: libc::pid_t, status_fd: RawFd, fd_limit: RawFd) -> ! {
    // SAFETY: every call below is async-signal-safe and uses only memory prepared before fork.
    unsafe {
        let above = plan
            .fds
            .iter()
            .map(|&(_, target)| target)
            .max()
            .unwrap_or(2)
            + 1;
        // The status pipe may sit on a target number (a hole left by a closed channel): move it
        // above every target first, so the fd moves cannot clobber it.
        let status_fd = match libc::fcntl(status_fd, libc::F_DUPFD_CLOEXEC, above) {
            moved if moved >= 0 => moved,
            _ => libc::_exit(127),
        };
        if let Err(errno) = move_fds(&plan.fds, above) {
            fail(status_fd, Step::Fds, errno);
        }
        // Whatever the master itself inherited without close-on-exec must not reach a worker:
        // close everything above the planned fds but the status pipe (close-on-exec itself).
        close_above(above, status_fd, fd_limit);
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::setpgid(0, 0);
        if let Some(mask) = plan.umask {
            libc::umask(mask);
        }
        if let Some(identity) = &plan.identity {
            if let Err((step, errno)) = drop_privileges(identity) {
                fail(status_fd, step, errno);
            }
        }
        if plan.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(status_fd, Step::NoNewPrivs, Errno::last_raw());
        }
        // After the drop: a change of credentials clears the parent-death signal.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            // The master died between fork and prctl: nobody will supervise us.
            libc::_exit(127);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(
            plan.program.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
        fail(status_fd, Step::Exec, Errno::last_raw());
    }
}

/// setgroups, setgid, setuid, in that order (each later step removes the right to do the earlier
/// ones), then proves the uid change is permanent: `setuid(0)` must now fail.
///
/// SAFETY (for callers): only credential system calls on memory prepared before fork.
unsafe fn drop_privileges(identity: &Identity) -> Result<(), (Step, i32)> {
    let groups = &identity.groups;
    if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
        return Err((Step::Setgroups, Errno::last_raw()));
    }
    if libc::setgid(identity.gid) != 0 {
        return Err((Step::Setgid, Errno::last_raw()));
    }
    let Some(uid) = identity.uid else {
        return Ok(());
    };
    if libc::setuid(uid) != 0 {
        return Err((Step::Setuid, Errno::last_raw()));
    }
    if uid != 0 && libc::setuid(0) == 0 {
        return Err((Step::StillRoot, 0));
    }
    Ok(())
}

/// Moves each source fd to its target. Sources are first duplicated above every target, so a
/// source that happens to sit on another pair's target number is not clobbered.
///
/// SAFETY (for callers): only dup/fcntl, no allocation.
unsafe fn move_fds(fds: &[(RawFd, RawFd)], above: RawFd) -> Result<(), i32> {
    // Fixed-size scratch: a worker never gets more than a few dozen fds.
    let mut temps = [-1 as RawFd; 256];
    if fds.len() > temps.len() {
        return Err(libc::EMFILE);
    }
    for (i, &(source, _)) in fds.iter().enumerate() {
        let temp = libc::fcntl(source, libc::F_DUPFD_CLOEXEC, above);
        if temp < 0 {
            return Err(Errno::last_raw());
        }
        temps[i] = temp;
    }
    for (i, &(_, target)) in fds.iter().enumerate() {
        if libc::dup2(temps[i], target) < 0 {
            return Err(Errno::last_raw());
        }
    }
    Ok(())
}

/// The highest fd open in this process (from /proc/self/fd), or the hard fd limit when /proc is
/// not readable: the upper bound of `close_above`'s fallback, computed before fork. The soft
/// limit (sysconf's answer) is not enough: an fd inherited above a lowered soft limit stays open.
fn highest_open_fd() -> RawFd {
    let listed = std::fs::read_dir("/proc/self/fd").ok().map(|dir| {
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
            .max()
            .unwrap_or(2)
    });
    listed.unwrap_or_else(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        let max = if ok { limit.rlim_max } else { 65536 };
        max.clamp(3, 1 << 20) as RawFd - 1
    })
}

/// Test-only: makes `close_above` take its fallback, as on kernels without close_range.
#[cfg(test)]
static FORCE_FALLBACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Closes every fd from `first` up to `limit` (the highest fd open before fork), except `keep`
/// (>= `first`: the exec status pipe, needed until exec). close_range where the kernel has it
/// (5.9+), else one close per fd: both ends inclusive, no call that is not async-signal-safe.
///
/// SAFETY (for callers): close_range/close only.
unsafe fn close_above(first: RawFd, keep: RawFd, limit: RawFd) {
    let ranges = [(first, keep - 1), (keep + 1, RawFd::MAX)];
    for (low, high) in ranges {
        if low > high {
            continue;
        }
        #[cfg(test)]
        let forced = FORCE_FALLBACK.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        let forced = false;
        let done = !forced
            && libc::syscall(
                libc::SYS_close_range,
                low as libc::c_uint,
                high as libc::c_uint,
                0,
            ) == 0;
        if !done {
            close_each(low, high.min(limit));
        }
    }
}

/// close() on every fd in `low..=high`.
///
/// SAFETY (for callers): closes fds nobody else uses any more.
unsafe fn close_each(low: RawFd, high: RawFd) {
    let mut fd = low;
    while fd <= high {
        libc::close(fd);
        fd += 1;
    }
}

unsafe fn fail(status_fd: RawFd, step: Step, errno: i32) -> ! {
    let step = (step as i32).to_ne_bytes();
    let errno = errno.to_ne_bytes();
    let bytes = [
        step[0], step[1], step[2], step[3], errno[0], errno[1], errno[2], errno[3],
    ];
    // One write of 8 bytes: atomic on a pipe, so the parent reads both or neither.
    libc::write(status_fd, bytes.as_ptr().cast(), bytes.len());
    libc::_exit(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only reads the fd's flags.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    /// The fallback closes both ranges around `keep` completely: the fd just below `keep` and the
    /// highest open fd (`limit`) included; `keep` and fds below `first` stay.
    #[test]
    fn the_fallback_closes_every_fd_but_keep() {
        let (a, b) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let base = 900;
        for fd in base..=base + 4 {
            // SAFETY: dup2 onto high numbers this test owns.
            assert!(unsafe { libc::dup2(a.as_raw_fd(), fd) } == fd);
        }
        FORCE_FALLBACK.store(true, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: closes only the fds dup'ed above (base..=base+3 but base+2).
        unsafe { close_above(base, base + 2, base + 3) };
        FORCE_FALLBACK.store(false, std::sync::atomic::Ordering::Relaxed);
        let open: Vec<bool> = (base..=base + 4).map(is_open).collect();
        assert_eq!(open, vec![false, false, true, false, true]);
        assert!(is_open(b.as_raw_fd()), "below `first` untouched");
        // SAFETY: closing the two fds this test left.
        unsafe {
            libc::close(base + 2);
            libc::close(base + 4);
        }
    }

    #[test]
    fn the_highest_open_fd_is_seen() {
        let (a, _b) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        // SAFETY: dup2 onto a number this test owns.
        assert_eq!(unsafe { libc::dup2(a.as_raw_fd(), 1500) }, 1500);
        assert!(highest_open_fd() >= 1500);
        // SAFETY: closing the fd made above.
        unsafe { libc::close(1500) };
    }
}
