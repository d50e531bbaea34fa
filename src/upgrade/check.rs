//! The new binary's check, run before anything is handed over: `NEW check ARGS` (the master's
//! own arguments), with `HERDSMAN_UPGRADE_CHECK` naming the handover format about to be
//! written. It passes only if the new binary starts, reads the configuration as it is now
//! without a problem, and reads that format; a binary without upgrade support rejects the
//! unknown variable, so it fails the check instead of receiving a handover it cannot read.
//!
//! The check is a child of the master like a worker, started through the same fork/exec path
//! (its own process group, SIGKILL if the master dies, nothing inherited but stdin and stdout
//! on /dev/null and stderr on a pipe), and the loop never waits for it: the pipe is polled with
//! the channels, the exit comes through the normal reaping, and a check that has not finished
//! after [`CHECK_TIMEOUT`] is killed. At most [`MAX_OUTPUT`] bytes of what it writes are kept,
//! to be logged if it fails.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};

use super::binary::Binary;
use super::error::UpgradeError;
use super::handover::{CHECK_VAR, FD_VAR, VERSION};
use crate::sys::exec::{self, ExecPlan};
use crate::sys::reap::ExitStatus;

/// How long the check may run before it is killed and the upgrade refused.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of the check's output kept for the log.
pub const MAX_OUTPUT: usize = 16 * 1024;

/// A running check.
pub struct Check {
    pid: i32,
    output: Option<OwnedFd>,
    text: Vec<u8>,
    deadline: Instant,
    status: Option<ExitStatus>,
    timed_out: bool,
}

/// How a finished check went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed { status: ExitStatus, output: String },
    TimedOut { output: String },
}

impl Check {
    /// Starts `NEW check ARGS` with the master's environment `env`.
    pub fn start(
        binary: &Binary,
        env: &[(String, String)],
        now: Instant,
    ) -> Result<Check, UpgradeError> {
        let program = binary.path().to_str().ok_or(UpgradeError::NotUtf8)?;
        let args = check_args(binary)?;
        let mut env: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k != CHECK_VAR && k != FD_VAR)
            .cloned()
            .collect();
        env.push((CHECK_VAR.to_string(), VERSION.to_string()));
        let devnull = File::open("/dev/null").map_err(UpgradeError::DevNull)?;
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(UpgradeError::CheckPipe)?;
        set_nonblocking(&read).map_err(UpgradeError::CheckPipe)?;
        let null = devnull.as_raw_fd();
        let fds = vec![(null, 0), (null, 1), (write.as_raw_fd(), 2)];
        let plan = ExecPlan::new(program, &args, &env, fds).map_err(UpgradeError::CheckSpawn)?;
        let pid = exec::spawn(&plan).map_err(UpgradeError::CheckSpawn)?;
        Ok(Check {
            pid: pid.as_raw(),
            output: Some(read),
            text: Vec::new(),
            deadline: now + CHECK_TIMEOUT,
            status: None,
            timed_out: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The output pipe, while it is worth polling.
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        self.output.as_ref().map(|fd| fd.as_fd())
    }

    /// When the check is killed if it has not exited.
    pub fn deadline(&self) -> Option<Instant> {
        (self.status.is_none() && !self.timed_out).then_some(self.deadline)
    }

    /// Reads what the check wrote so far; keeps the first [`MAX_OUTPUT`] bytes.
    pub fn drain(&mut self) {
        let Some(fd) = &self.output else { return };
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => break self.output = None,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(self.text.len());
                    self.text.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(_) => break self.output = None,
            }
        }
    }

    /// Takes the exit of `pid` if it is the check's; returns whether it was.
    pub fn reaped(&mut self, pid: i32, status: ExitStatus) -> bool {
        if pid != self.pid || self.status.is_some() {
            return false;
        }
        self.status = Some(status);
        true
    }

    /// Kills the check once its deadline has passed (its exit is reaped as usual).
    pub fn expire(&mut self, now: Instant) {
        if self.deadline().is_some_and(|at| now >= at) {
            // The check is our unreaped child (no status yet), so the pid is still its own.
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            self.timed_out = true;
        }
    }

    /// The outcome, once the check has exited.
    pub fn outcome(&mut self) -> Option<Outcome> {
        let status = self.status?;
        self.drain();
        self.output = None;
        let output = String::from_utf8_lossy(&self.text).trim_end().to_string();
        Some(match (self.timed_out, status) {
            (true, _) => Outcome::TimedOut { output },
            (false, ExitStatus::Code(0)) => Outcome::Passed,
            (false, status) => Outcome::Failed { status, output },
        })
    }
}

/// `check` followed by the master's own arguments.
fn check_args(binary: &Binary) -> Result<Vec<String>, UpgradeError> {
    let rest = binary.argv().iter().skip(1).map(|arg| arg.to_str());
    std::iter::once(Some("check"))
        .chain(rest)
        .map(|arg| arg.map(str::to_string).ok_or(UpgradeError::NotUtf8))
        .collect()
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use nix::sys::wait::{waitpid, WaitStatus};

    /// Runs the check of `program` to its end, reaping it here like the loop would.
    fn run(program: &str, expire: bool) -> Outcome {
        let binary = Binary::at(Path::new(program), &["herdsman", "-w", "2", "app:app"]);
        let now = Instant::now();
        let mut check = Check::start(&binary, &[], now).expect("started");
        assert!(check.pollable().is_some());
        if expire {
            check.expire(now + CHECK_TIMEOUT);
            assert_eq!(check.deadline(), None, "killed: no deadline any more");
        }
        let status = match waitpid(Pid::from_raw(check.pid()), None).expect("waitpid") {
            WaitStatus::Exited(_, code) => ExitStatus::Code(code),
            WaitStatus::Signaled(_, signal, core_dumped) => ExitStatus::Signaled {
                signal: signal as i32,
                core_dumped,
            },
            other => panic!("unexpected {other:?}"),
        };
        assert!(
            !check.reaped(check.pid() + 1, status),
            "not the check's pid"
        );
        assert!(check.reaped(check.pid(), status));
        check.outcome().expect("finished")
    }

    #[test]
    fn an_exit_code_of_zero_passes() {
        assert_eq!(run("/bin/true", false), Outcome::Passed);
    }

    #[test]
    fn a_failure_keeps_what_the_check_wrote() {
        // `sh check -w 2 app:app`: sh cannot open a script named "check" and says so.
        match run("/bin/sh", false) {
            Outcome::Failed { status, output } => {
                assert_ne!(status, ExitStatus::Code(0));
                assert!(output.contains("check"), "{output:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_check_that_never_ends_is_killed_at_its_deadline() {
        // `yes check ...` writes to /dev/null forever.
        assert!(matches!(
            run("/usr/bin/yes", true),
            Outcome::TimedOut { .. }
        ));
    }

    #[test]
    fn a_missing_binary_fails_to_start() {
        let binary = Binary::at(Path::new("/nonexistent/herdsman"), &["herdsman"]);
        let err = Check::start(&binary, &[], Instant::now())
            .err()
            .expect("refused");
        assert!(matches!(err, UpgradeError::CheckSpawn(_)), "{err:?}");
    }

    #[test]
    fn the_arguments_are_check_then_the_masters_own() {
        let binary = Binary::at(Path::new("/x"), &["herdsman", "-w", "2", "app:app"]);
        assert_eq!(
            check_args(&binary).expect("utf-8"),
            vec!["check", "-w", "2", "app:app"]
        );
    }
}
