//! Running a short-lived child to completion and collecting what it wrote: fork and exec through
//! [`exec::spawn`] (the same discipline as a worker's), stdin from `/dev/null`, stdout and stderr
//! into pipes read with `poll` until both close or the deadline passes, then the child is reaped
//! by its own pid (`waitpid(pid)`, never `-1`, so no other child's status is taken). A child past
//! its deadline is killed with SIGKILL and reaped before returning. Used where the master must
//! wait for Python by design, bounded: evaluating a `gunicorn.conf.py` and the `on_starting` /
//! `on_exit` hooks.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};

use super::exec::{self, ExecError, ExecPlan};

/// Most bytes kept of each stream; the rest is dropped (the child still runs to its end).
const KEEP: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("could not open /dev/null")]
    DevNull(#[source] std::io::Error),
    #[error("could not create a pipe")]
    Pipe(#[source] Errno),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("could not wait for the child")]
    Wait(#[source] Errno),
}

/// How the child ended, and what it wrote.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` if it was killed by a signal (or by us, past the deadline).
    pub code: Option<i32>,
    /// Whether it was killed for running past the deadline.
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `program args` with `env` and waits for it at most `limit`.
pub fn run<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
    program: &str,
    args: &[String],
    env: &[(K, V)],
    limit: Duration,
) -> Result<Finished, CaptureError> {
    let devnull = OwnedFd::from(File::open("/dev/null").map_err(CaptureError::DevNull)?);
    let (out_read, out_write) = pipe2(OFlag::O_CLOEXEC).map_err(CaptureError::Pipe)?;
    let (err_read, err_write) = pipe2(OFlag::O_CLOEXEC).map_err(CaptureError::Pipe)?;
    let fds = vec![
        (devnull.as_raw_fd(), 0),
        (out_write.as_raw_fd(), 1),
        (err_write.as_raw_fd(), 2),
    ];
    let plan = ExecPlan::new(program, args, env, fds)?;
    let pid = exec::spawn(&plan)?;
    drop((out_write, err_write, devnull));
    let deadline = Instant::now() + limit;
    let (stdout, stderr, timed_out) = collect(&out_read, &err_read, deadline);
    if timed_out {
        // The child is ours and not reaped yet, so the pid cannot have been reused.
        let _ = kill(pid, Signal::SIGKILL);
    }
    let code = wait(pid)?;
    Ok(Finished {
        code,
        timed_out,
        stdout,
        stderr,
    })
}

/// Reads both pipes until both close or `deadline`; true in the third place if it passed.
fn collect(out: &OwnedFd, err: &OwnedFd, deadline: Instant) -> (Vec<u8>, Vec<u8>, bool) {
    let mut bufs = [Vec::new(), Vec::new()];
    let mut open = [true, true];
    while open.iter().any(|o| *o) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (take(&mut bufs[0]), take(&mut bufs[1]), true);
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let pipes = [out, err];
        let mut fds: Vec<PollFd> = pipes
            .iter()
            .zip(open)
            .filter(|(_, o)| *o)
            .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
        for (i, fd) in [out, err].into_iter().enumerate() {
            if open[i] {
                open[i] = read_some(fd, &mut bufs[i]);
            }
        }
    }
    (take(&mut bufs[0]), take(&mut bufs[1]), false)
}

/// Reads what is there without blocking past it; false once the pipe is closed.
fn read_some(fd: &OwnedFd, buf: &mut Vec<u8>) -> bool {
    let mut ready = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    if !matches!(poll(&mut ready, PollTimeout::ZERO), Ok(n) if n > 0) {
        return true;
    }
    let mut chunk = [0u8; 8192];
    match nix::unistd::read(fd, &mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            let room = KEEP.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..n.min(room)]);
            true
        }
        Err(Errno::EINTR | Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

fn take(buf: &mut Vec<u8>) -> Vec<u8> {
    std::mem::take(buf)
}

fn wait(pid: Pid) -> Result<Option<i32>, CaptureError> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(..)) => return Ok(None),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(CaptureError::Wait(e)),
        }
    }
}
