//! One zygote process, from the master's side (docs/zygote.md): a warm Python process of one
//! generation that forks workers on request. This module speaks its control protocol; when to
//! start, restart and stop zygotes is the loop's business (`master/run/zygotes.rs`).
//!
//! The zygote is started like a worker (`ExecSpawner::start_zygote`: fork and exec, its own
//! process group, `PR_SET_PDEATHSIG`) with `--zygote` and a control socket where a worker's
//! channel would be. On the control socket, one JSON object per line, as on a worker channel:
//! - zygote to master: `zygote_ready` once it has imported what it preloads, or `boot_error`
//!   (the same kinds as a worker's) before it exits; then `forked` or `fork_failed` per request;
//! - master to zygote: `fork` with the worker id, the new worker's channel (and, when `output`
//!   is true, the fd for its stdout and stderr) passed by `SCM_RIGHTS`.
//!
//! A fork is one synchronous round trip bounded by a short timeout: it takes milliseconds (the
//! zygote forks, nothing more). The worker it creates is reparented to the master (a child
//! subreaper) before it runs any of the runtime, so the pid that comes back is the master's own
//! child, reaped and signalled like an exec'd worker. The master only ever waits here, never on
//! the zygote's imports: readiness comes through the poll loop.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::Deserialize;

use super::protocol::BootErrorKind;

/// Longest line accepted from a zygote.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    #[error("could not send the fork request to the zygote")]
    Send(#[source] Errno),
    #[error("could not read the zygote's answer")]
    Receive(#[source] Errno),
    #[error("the zygote closed its control socket")]
    Closed,
    #[error("the zygote did not answer the fork request within {0:?}")]
    Timeout(Duration),
    #[error("the zygote could not fork the worker: {0}")]
    ForkFailed(String),
}

/// A message from a zygote.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ZygoteMessage {
    ZygoteReady {
        #[serde(default)]
        pid: i32,
    },
    BootError {
        kind: BootErrorKind,
        #[serde(default)]
        message: String,
    },
    Forked {
        worker_id: u64,
        pid: i32,
    },
    ForkFailed {
        #[serde(default)]
        worker_id: Option<u64>,
        #[serde(default)]
        error: String,
    },
    #[serde(other)]
    Unknown,
}

/// Where a zygote is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZygoteState {
    /// Started, importing; `deadline` is when it is killed if not ready.
    Starting { deadline: Instant },
    /// Forking on request.
    Ready,
    /// Asked to exit (or killed); waiting to be reaped. Never forks again.
    Stopping,
}

/// A zygote process the master started and has not reaped yet.
pub struct Zygote {
    pub generation: u64,
    pub pid: i32,
    pub state: ZygoteState,
    /// What it said before exiting (`boot_error`), for the failure it causes.
    pub boot_error: Option<(BootErrorKind, String)>,
    pub started: Instant,
    /// Killed for missing its start deadline.
    pub timed_out: bool,
    /// Killed for failing a fork request: never asked to fork again.
    pub failed: bool,
    control: OwnedFd,
    pending: Vec<u8>,
}

impl Zygote {
    /// `control` is the master's end of the control socket (non-blocking, close-on-exec).
    pub fn new(generation: u64, pid: i32, control: OwnedFd, deadline: Instant) -> Zygote {
        Zygote {
            generation,
            pid,
            state: ZygoteState::Starting { deadline },
            boot_error: None,
            started: Instant::now(),
            timed_out: false,
            failed: false,
            control,
            pending: Vec::new(),
        }
    }

    pub fn control_fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Reads what the zygote sent (non-blocking): the complete messages, and whether the socket
    /// reached end-of-file.
    pub fn read(&mut self) -> (Vec<ZygoteMessage>, bool) {
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(&self.control, &mut buf) {
                Ok(0) => return (messages, true),
                Ok(n) => messages.extend(self.push(&buf[..n])),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return (messages, false),
                Err(_) => return (messages, true),
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Vec<ZygoteMessage> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            match serde_json::from_str(text.trim_end()) {
                Ok(message) => out.push(message),
                Err(_) => {
                    tracing::debug!(line = %text.trim_end(), "zygote: malformed line ignored")
                }
            }
        }
        if self.pending.len() > MAX_LINE {
            self.pending.clear();
        }
        out
    }

    /// Asks the zygote to fork worker `worker_id` with `channel` (the worker's end) and
    /// `output` (its stdout and stderr, if not the zygote's own); returns the worker's pid.
    /// Blocks for at most `timeout`.
    pub fn fork(
        &mut self,
        worker_id: u64,
        channel: RawFd,
        inflight: RawFd,
        output: Option<RawFd>,
        timeout: Duration,
    ) -> Result<i32, ZygoteError> {
        let deadline = Instant::now() + timeout;
        let line = fork_request(worker_id, output.is_some());
        // In this order: the channel, the output (if any), the in-flight file.
        let fds: Vec<RawFd> = std::iter::once(channel)
            .chain(output)
            .chain([inflight])
            .collect();
        self.send(line.as_bytes(), &fds, deadline, timeout)?;
        loop {
            let (messages, eof) = self.read();
            for message in messages {
                match message {
                    ZygoteMessage::Forked { worker_id: id, pid } if id == worker_id => {
                        return Ok(pid)
                    }
                    ZygoteMessage::ForkFailed { error, .. } => {
                        return Err(ZygoteError::ForkFailed(error))
                    }
                    other => tracing::debug!(?other, "zygote: unexpected message while forking"),
                }
            }
            if eof {
                return Err(ZygoteError::Closed);
            }
            wait_for(&self.control, PollFlags::POLLIN, deadline, timeout)?;
        }
    }

    fn send(
        &self,
        bytes: &[u8],
        fds: &[RawFd],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ZygoteError> {
        let iov = [IoSlice::new(bytes)];
        let rights = [ControlMessage::ScmRights(fds)];
        // The request is small: the socket buffer takes it whole, and the fds ride on its first
        // byte. Only a full buffer (a zygote that stopped reading) makes us wait.
        loop {
            let sent = sendmsg::<()>(
                self.control.as_raw_fd(),
                &iov,
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            match sent {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(_) => return Err(ZygoteError::Send(Errno::EMSGSIZE)),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    wait_for(&self.control, PollFlags::POLLOUT, deadline, timeout)?
                }
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(ZygoteError::Closed),
                Err(errno) => return Err(ZygoteError::Send(errno)),
            }
        }
    }
}

fn fork_request(worker_id: u64, output: bool) -> String {
    format!(
        "{{\"type\":\"fork\",\"worker_id\":{worker_id},\"output\":{output},\"inflight\":true}}\n"
    )
}

/// Waits until `fd` is ready for `flags`, or fails with a timeout at `deadline`.
fn wait_for(
    fd: &OwnedFd,
    flags: PollFlags,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ZygoteError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ZygoteError::Timeout(timeout));
    }
    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(fd.as_fd(), flags)];
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(errno) => Err(ZygoteError::Receive(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    fn pair() -> (OwnedFd, OwnedFd) {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        socketpair(AddressFamily::Unix, SockType::Stream, None, flags).expect("socketpair")
    }

    #[test]
    fn reads_split_lines_and_tolerates_unknown_ones() {
        let (ours, theirs) = pair();
        let mut zygote = Zygote::new(1, 42, ours, Instant::now());
        nix::unistd::write(&theirs, b"{\"type\":\"zygote_re").unwrap();
        assert_eq!(zygote.read(), (vec![], false));
        nix::unistd::write(&theirs, b"ady\",\"pid\":42}\n{\"type\":\"future\"}\nnot json\n{\"type\":\"boot_error\",\"kind\":\"import\",\"message\":\"m\"}\n").unwrap();
        let (messages, eof) = zygote.read();
        assert!(!eof);
        assert_eq!(
            messages,
            vec![
                ZygoteMessage::ZygoteReady { pid: 42 },
                ZygoteMessage::Unknown,
                ZygoteMessage::BootError {
                    kind: BootErrorKind::Import,
                    message: "m".into()
                },
            ]
        );
        drop(theirs);
        assert_eq!(zygote.read(), (vec![], true));
    }

    #[test]
    fn a_silent_zygote_times_out_and_a_closed_one_is_said_so() {
        let (ours, theirs) = pair();
        let mut zygote = Zygote::new(1, 42, ours, Instant::now());
        let (channel, _keep) = pair();
        let timeout = Duration::from_millis(50);
        let err = zygote.fork(7, channel.as_raw_fd(), channel.as_raw_fd(), None, timeout);
        assert!(matches!(err, Err(ZygoteError::Timeout(_))), "{err:?}");
        let mut buf = [0u8; 256];
        let n = nix::unistd::read(&theirs, &mut buf).unwrap();
        assert_eq!(&buf[..n], fork_request(7, false).as_bytes());
        drop(theirs);
        let err = zygote.fork(8, channel.as_raw_fd(), channel.as_raw_fd(), None, timeout);
        assert!(matches!(err, Err(ZygoteError::Closed)), "{err:?}");
    }
}
