//! The master's ends of the worker channels: one non-blocking socket per worker, read into a
//! line buffer and decoded into events. A channel is dropped (closed) when its worker is reaped.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use tracing::debug;

use super::event::{Event, WorkerId};
use crate::worker::LineBuffer;

struct Channel {
    fd: OwnedFd,
    buffer: LineBuffer,
    open: bool,
}

#[derive(Default)]
pub struct Channels {
    by_worker: BTreeMap<WorkerId, Channel>,
}

impl Channels {
    pub fn insert(&mut self, id: WorkerId, fd: OwnedFd) {
        let channel = Channel {
            fd,
            buffer: LineBuffer::default(),
            open: true,
        };
        self.by_worker.insert(id, channel);
    }

    /// The master's end of worker `id`'s channel, open or at end-of-file (for a handover).
    pub fn raw_fd(&self, id: WorkerId) -> Option<RawFd> {
        self.by_worker.get(&id).map(|c| c.fd.as_raw_fd())
    }

    pub fn remove(&mut self, id: WorkerId) {
        self.by_worker.remove(&id);
    }

    /// The channels still worth polling, with their worker ids.
    pub fn pollable(&self) -> Vec<(WorkerId, BorrowedFd<'_>)> {
        self.by_worker
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(id, c)| (*id, c.fd.as_fd()))
            .collect()
    }

    /// Writes one line to worker `id` without blocking. Messages are tiny and rare (one per
    /// worker life), so a full socket buffer means the worker is not reading at all: the line is
    /// dropped and the caller told.
    pub fn send(&mut self, id: WorkerId, line: &str) -> Result<(), Errno> {
        let channel = self.by_worker.get(&id).ok_or(Errno::EBADF)?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        let written = nix::sys::socket::send(
            channel.fd.as_raw_fd(),
            &bytes,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        )?;
        if written == bytes.len() {
            Ok(())
        } else {
            Err(Errno::EAGAIN)
        }
    }

    /// Sends `line` to every worker whose channel is open (SIGUSR1's `reopen_logs`); returns
    /// the workers it could not reach.
    pub fn broadcast(&mut self, line: &str) -> Vec<(WorkerId, Errno)> {
        let open: Vec<WorkerId> = self.pollable().into_iter().map(|(id, _)| id).collect();
        open.into_iter()
            .filter_map(|id| self.send(id, line).err().map(|e| (id, e)))
            .collect()
    }

    /// Reads everything available on worker `id`'s channel into events.
    pub fn drain(&mut self, id: WorkerId, events: &mut Vec<Event>) {
        let Some(channel) = self.by_worker.get_mut(&id) else {
            return;
        };
        if !channel.open {
            return;
        }
        let mut buf = [0u8; 8192];
        loop {
            match nix::unistd::read(&channel.fd, &mut buf) {
                Ok(0) | Err(Errno::ECONNRESET) => {
                    channel.open = false;
                    events.push(Event::ChannelClosed { id });
                    return;
                }
                Ok(n) => decode(id, &mut channel.buffer, &buf[..n], events),
                Err(Errno::EINTR) => continue,
                Err(_) => return, // EAGAIN: nothing more for now
            }
        }
    }
}

fn decode(id: WorkerId, buffer: &mut LineBuffer, bytes: &[u8], events: &mut Vec<Event>) {
    for parsed in buffer.push(bytes) {
        match parsed {
            Ok(message) => events.push(Event::Message { id, message }),
            Err(line) => debug!(worker = id, line = %line, "unreadable channel message ignored"),
        }
    }
}
