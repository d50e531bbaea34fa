//! Reaping: `waitpid(-1, WNOHANG)` until nothing is left. Called on every wakeup of the master
//! loop, whatever woke it, because SIGCHLDs coalesce and may be missed between two polls.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signaled { signal: i32, core_dumped: bool },
}

impl ExitStatus {
    pub fn is_sigkill(self) -> bool {
        matches!(self, ExitStatus::Signaled { signal, .. } if signal == libc::SIGKILL)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                let name = Signal::try_from(*signal)
                    .map(|s| s.as_str())
                    .unwrap_or("signal");
                let core = if *core_dumped { " (core dumped)" } else { "" };
                write!(f, "{name} ({signal}){core}")
            }
        }
    }
}

/// Makes the master a child subreaper: an orphan among its descendants is reparented to it,
/// not to init. Workers forked from a zygote (which double-forks) become the master's own
/// children this way; with exec'd workers it only means that processes a worker leaves behind
/// are reaped by the master (quietly, as unknown children). Kept across `execve` (an in-place
/// upgrade), set again anyway.
pub fn become_child_subreaper() -> Result<(), Errno> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument; no memory is involved.
    let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if done == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Reaps every child that has ended, returning their pids and statuses. Stops at ECHILD (no
/// children) or when the remaining children are all alive.
pub fn reap_all() -> Vec<(i32, ExitStatus)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                reaped.push((pid.as_raw(), ExitStatus::Code(code)))
            }
            Ok(WaitStatus::Signaled(pid, signal, core_dumped)) => reaped.push((
                pid.as_raw(),
                ExitStatus::Signaled {
                    signal: signal as i32,
                    core_dumped,
                },
            )),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) => continue, // stopped/continued reports: not asked for, ignore
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    reaped
}
