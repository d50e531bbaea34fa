//! Captured worker output (`capture_output`): each worker's stdout and stderr are one pipe to the
//! master, whose read end (non-blocking) lives here until the pipe closes. The master loop polls
//! these ends with everything else and [`Captured::drain`]s them on every wakeup, so a worker
//! only ever waits on a full pipe (64 KiB) while the master is itself stopped.
//!
//! Each complete line goes to the log sink as a record of the master's log (`logging::captured`). A line longer than
//! [`MAX_LINE`] is cut there (the rest follows as another line); what is left without a newline
//! when the pipe closes is written as a line too. The sink never blocks on these writes: when
//! the destination cannot take a line now, the line is dropped and counted (see
//! `logging::sink`). The worker's own children inherit the pipe, so their output is captured
//! under the worker's id as well, until the last of them closes it.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::logging;

/// Longest line kept whole: longer ones are written in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;
/// Most bytes read from one pipe per wakeup, so one chatty worker cannot starve the loop; the
/// poll wakes again at once for the rest.
const READ_BUDGET: usize = 256 * 1024;

/// The open output pipes, by worker id.
#[derive(Default)]
pub struct Captured {
    pipes: BTreeMap<u64, Pipe>,
}

struct Pipe {
    fd: OwnedFd,
    id: u64,
    pid: i32,
    pending: Vec<u8>,
}

impl Captured {
    /// Starts capturing worker `id` (pid `pid`) from `fd`, the read end (non-blocking).
    pub fn insert(&mut self, id: u64, pid: i32, fd: OwnedFd) {
        let pipe = Pipe {
            fd,
            id,
            pid,
            pending: Vec::new(),
        };
        self.pipes.insert(id, pipe);
    }

    /// The read ends to poll for input.
    pub fn pollable(&self) -> Vec<BorrowedFd<'_>> {
        self.pipes.values().map(|pipe| pipe.fd.as_fd()).collect()
    }

    /// Every open pipe as (worker id, worker pid, read end), for a handover.
    pub fn pipes(&self) -> Vec<(u64, i32, RawFd)> {
        let fd = |pipe: &Pipe| pipe.fd.as_raw_fd();
        self.pipes
            .iter()
            .map(|(id, pipe)| (*id, pipe.pid, fd(pipe)))
            .collect()
    }

    /// Writes every partial line held now as a line (before a handover: they would be lost).
    pub fn flush_partial_lines(&mut self) {
        self.pipes.values_mut().for_each(Pipe::flush_partial);
    }

    /// Reads what every pipe has now and writes the complete lines; forgets closed pipes.
    pub fn drain(&mut self) {
        self.pipes.retain(|_, pipe| pipe.drain());
    }
}

impl Drop for Captured {
    /// The master is exiting: take what the pipes still hold, then flush the partial lines.
    fn drop(&mut self) {
        for pipe in self.pipes.values_mut() {
            if pipe.drain() {
                pipe.flush_partial();
            }
        }
    }
}

impl Pipe {
    /// Returns whether the pipe is still open.
    fn drain(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0;
        while taken < READ_BUDGET {
            match nix::unistd::read(&self.fd, &mut buf) {
                Ok(0) => {
                    self.flush_partial();
                    return false;
                }
                Ok(n) => {
                    taken += n;
                    self.push(&buf[..n]);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                Err(_) => {
                    self.flush_partial();
                    return false;
                }
            }
        }
        true
    }

    /// Appends `bytes` and writes every complete line (or full-size piece).
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let end = match rest.iter().position(|&b| b == b'\n') {
                Some(newline) if newline < MAX_LINE => newline + 1,
                _ if rest.len() >= MAX_LINE => MAX_LINE,
                _ => break,
            };
            logging::write_worker_line(self.id, self.pid, &self.pending[start..start + end]);
            start += end;
        }
        self.pending.drain(..start);
    }

    fn flush_partial(&mut self) {
        if !self.pending.is_empty() {
            logging::write_worker_line(self.id, self.pid, &self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_pair() -> (OwnedFd, OwnedFd) {
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        nix::unistd::pipe2(flags).expect("pipe")
    }

    #[test]
    fn pipes_are_forgotten_once_closed() {
        let mut captured = Captured::default();
        let (read, write) = pipe_pair();
        captured.insert(7, 1234, read);
        nix::unistd::write(&write, b"partial").unwrap();
        captured.drain();
        assert_eq!(captured.pipes[&7].pending, b"partial");
        assert_eq!(captured.pollable().len(), 1);
        drop(write);
        captured.drain();
        assert!(captured.pipes.is_empty(), "closed pipe forgotten");
    }

    #[test]
    fn lines_are_split_at_newlines_and_at_the_size_limit() {
        let mut captured = Captured::default();
        let (read, _write) = pipe_pair();
        captured.insert(1, 1, read);
        let pipe = captured.pipes.get_mut(&1).unwrap();
        pipe.push(b"one\ntw");
        assert_eq!(pipe.pending, b"tw");
        pipe.push(b"o\n");
        assert!(pipe.pending.is_empty());
        pipe.push(&vec![b'x'; MAX_LINE + 10]);
        assert_eq!(pipe.pending.len(), 10, "a full-size piece was written");
        assert_eq!((pipe.id, pipe.pid), (1, 1));
    }
}
