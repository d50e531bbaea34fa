//! A table of non-blocking connections accepted from one kind of listener, driven by the master's
//! poll loop: accept, read, write and close, never blocking and never doing unbounded work.
//!
//! Invariants:
//! - Every fd is non-blocking and close-on-exec (`accept4` with both flags), so a worker never
//!   inherits one and a slow peer never stalls the master.
//! - Bounded: at most `max_conns` connections (a new one evicts the oldest connection that has
//!   not sent a whole request yet, else it is closed at once), at most `max_input` buffered bytes
//!   per connection, at most `accept_budget` accepts per listener per wakeup.
//! - Deadlines: a connection must deliver its request within `timeout` of being accepted (so
//!   trickling bytes does not keep it alive) and take its answer within `timeout` of it being
//!   queued. While its request is with the master it has no deadline: the master always answers.
//! - An accept that fails for lack of fds pauses that listener briefly instead of spinning (the
//!   listener stays readable, so polling it again at once would busy-loop).
//! - Ids are never reused, so a readiness report for a connection closed meanwhile is ignored.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{accept4, recv, send, shutdown, MsgFlags, Shutdown, SockFlag};
use tracing::{debug, warn};

/// Identifies a connection for the life of the master.
pub type ConnId = u64;

/// How long a listener rests after accept failed for lack of fds or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// Bytes read per readiness report.
const READ_CHUNK: usize = 16 * 1024;

/// The bounds of one table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_conns: usize,
    pub max_input: usize,
    pub timeout: Duration,
    pub accept_budget: usize,
}

struct Conn {
    fd: OwnedFd,
    accepted: Instant,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    deadline: Option<Instant>,
    /// The peer will send nothing more (end-of-file read).
    read_closed: bool,
    /// A request is with the master; the answer comes through [`Table::reply`].
    waiting: bool,
    /// Close once the output is flushed (HTTP `Connection: close`, fatal protocol errors).
    close_when_flushed: bool,
}

impl Conn {
    /// Nothing is happening on it that the peer is owed: it may be evicted.
    fn is_idle(&self) -> bool {
        !self.waiting && self.output.len() == self.sent
    }
}

/// What `accept` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// New connections, in order.
    pub new: Vec<ConnId>,
    /// Connections closed to make room, or closed at once for lack of room.
    pub shed: u64,
}

/// The connections of one kind of listener.
pub struct Table {
    name: &'static str,
    limits: Limits,
    conns: BTreeMap<ConnId, Conn>,
    next_id: ConnId,
    paused_until: Option<Instant>,
}

impl Table {
    pub fn new(name: &'static str, limits: Limits) -> Table {
        Table {
            name,
            limits,
            conns: BTreeMap::new(),
            next_id: 1,
            paused_until: None,
        }
    }

    /// Whether the listeners of this table should be polled now.
    pub fn accepting(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|until| now >= until)
    }

    /// Accepts up to the budget from `listener` (non-blocking).
    pub fn accept(&mut self, listener: BorrowedFd<'_>, now: Instant) -> Accepted {
        let mut accepted = Accepted::default();
        for _ in 0..self.limits.accept_budget {
            let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
            match accept4(listener.as_raw_fd(), flags) {
                // SAFETY: accept4 just returned this fd; nothing else owns it.
                Ok(raw) => self.admit(unsafe { OwnedFd::from_raw_fd(raw) }, now, &mut accepted),
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    warn!(listener = self.name, error = %e, "accept failed; pausing this listener for {ACCEPT_PAUSE:?}");
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    break;
                }
            }
        }
        accepted
    }

    fn admit(&mut self, fd: OwnedFd, now: Instant, accepted: &mut Accepted) {
        if self.conns.len() >= self.limits.max_conns {
            accepted.shed += 1;
            if !self.evict_oldest_idle() {
                debug!(
                    listener = self.name,
                    "connection table full; closing the new connection"
                );
                return; // dropping `fd` closes it
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Conn {
            fd,
            accepted: now,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            deadline: Some(now + self.limits.timeout),
            read_closed: false,
            waiting: false,
            close_when_flushed: false,
        };
        self.conns.insert(id, conn);
        accepted.new.push(id);
    }

    /// Closes the connection accepted longest ago that owes nothing and waits for nothing;
    /// false if every connection is busy.
    fn evict_oldest_idle(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_idle())
            .min_by_key(|(_, c)| c.accepted)
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => {
                debug!(
                    listener = self.name,
                    conn = id,
                    "evicting the oldest idle connection"
                );
                self.close(id);
                true
            }
            None => false,
        }
    }

    /// The connection's fd (for peer credentials).
    pub fn fd(&self, id: ConnId) -> Option<BorrowedFd<'_>> {
        self.conns.get(&id).map(|c| c.fd.as_fd())
    }

    /// Every connection with the events it waits for. A connection waiting for nothing is still
    /// listed (with no events) so that a hang-up is noticed.
    pub fn pollable(&self) -> Vec<(ConnId, BorrowedFd<'_>, PollFlags)> {
        let max_input = self.limits.max_input;
        self.conns
            .iter()
            .map(|(id, c)| {
                let mut flags = PollFlags::empty();
                if !c.read_closed && c.input.len() < max_input {
                    flags |= PollFlags::POLLIN;
                }
                if c.output.len() > c.sent {
                    flags |= PollFlags::POLLOUT;
                }
                (*id, c.fd.as_fd(), flags)
            })
            .collect()
    }

    /// Does the I/O that `revents` allows: one read, and a flush.
    pub fn on_event(&mut self, id: ConnId, revents: PollFlags) {
        if revents.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
            self.close(id);
            return;
        }
        if revents.contains(PollFlags::POLLIN) {
            self.read(id);
        } else if revents.contains(PollFlags::POLLHUP) {
            // Hung up with nothing left to read: it cannot take an answer either.
            self.close(id);
            return;
        }
        if revents.contains(PollFlags::POLLOUT) {
            self.flush(id);
        }
    }

    fn read(&mut self, id: ConnId) {
        let max_input = self.limits.max_input;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let room = max_input.saturating_sub(conn.input.len()).min(READ_CHUNK);
        if room == 0 {
            return;
        }
        let mut buf = vec![0u8; room];
        match recv(conn.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => conn.read_closed = true,
            Ok(n) => conn.input.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => {
                debug!(listener = self.name, conn = id, error = %e, "read failed; closing");
                self.close(id);
            }
        }
    }

    /// Writes as much pending output as the socket takes; closes or re-arms when done.
    fn flush(&mut self, id: ConnId) {
        let timeout = self.limits.timeout;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.sent >= conn.output.len() {
            return;
        }
        while conn.sent < conn.output.len() {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match send(conn.fd.as_raw_fd(), &conn.output[conn.sent..], flags) {
                Ok(n) => conn.sent += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    debug!(listener = self.name, conn = id, error = %e, "write failed; closing");
                    self.close(id);
                    return;
                }
            }
        }
        conn.output.clear();
        conn.sent = 0;
        if conn.close_when_flushed || (conn.read_closed && conn.input.is_empty() && !conn.waiting) {
            // Our side is done: a FIN before close lets the peer read everything we sent.
            let _ = shutdown(conn.fd.as_raw_fd(), Shutdown::Write);
            self.close(id);
            return;
        }
        // The answer is out: the next request gets a fresh deadline.
        conn.deadline = (!conn.waiting).then(|| Instant::now() + timeout);
    }

    /// The first complete frame in the input of an idle connection, cut at `find` (which
    /// returns the frame's length including its terminator). A connection whose peer closed its
    /// side hands over whatever is left as a last frame.
    pub fn take_frame(
        &mut self,
        id: ConnId,
        find: impl Fn(&[u8]) -> Option<usize>,
    ) -> Option<Vec<u8>> {
        let conn = self.conns.get_mut(&id)?;
        if !conn.is_idle() || conn.input.is_empty() {
            return None;
        }
        let len = find(&conn.input).or(conn.read_closed.then_some(conn.input.len()))?;
        Some(conn.input.drain(..len).collect())
    }

    /// Whether `id` has a complete frame it has not handed over yet.
    pub fn has_frame(&self, id: ConnId, find: impl Fn(&[u8]) -> Option<usize>) -> bool {
        self.conns.get(&id).is_some_and(|c| {
            c.is_idle() && !c.input.is_empty() && (c.read_closed || find(&c.input).is_some())
        })
    }

    /// Whether the input of `id` is full without a frame in it.
    pub fn input_full(&self, id: ConnId) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| c.input.len() >= self.limits.max_input)
    }

    /// Connection ids, oldest first.
    pub fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Marks `id` as waiting for the master (no deadline until [`Table::reply`]).
    pub fn wait_for_master(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.waiting = true;
            conn.deadline = None;
        }
    }

    /// Queues `bytes` for `id` and writes what the socket takes now; `close` closes the
    /// connection once everything is written.
    pub fn reply(&mut self, id: ConnId, bytes: &[u8], close: bool) {
        let timeout = self.limits.timeout;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.waiting = false;
        conn.output.extend_from_slice(bytes);
        conn.close_when_flushed |= close;
        conn.deadline = Some(Instant::now() + timeout);
        self.flush(id);
    }

    /// Closes connections that have nothing more to do: the peer closed its side, and nothing is
    /// buffered, pending or owed.
    pub fn close_finished(&mut self) {
        let done: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.read_closed && c.input.is_empty() && c.is_idle())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.close(id);
        }
    }

    pub fn close(&mut self, id: ConnId) {
        if self.conns.remove(&id).is_some() {
            debug!(listener = self.name, conn = id, "connection closed");
        }
    }

    /// The earliest deadline of a connection, or the end of an accept pause.
    pub fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| c.deadline);
        conns.chain(self.paused_until).min()
    }

    /// Drops connections past their deadline; ends an accept pause that is over.
    pub fn expire(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|until| now >= until) {
            self.paused_until = None;
        }
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|at| now >= at))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            debug!(
                listener = self.name,
                conn = id,
                "connection dropped at its deadline"
            );
            self.close(id);
        }
    }

    /// One last attempt to write what is pending, then closes everything (the master exits).
    pub fn close_all(&mut self) {
        for id in self.ids() {
            self.flush(id);
            self.close(id);
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    fn limits() -> Limits {
        Limits {
            max_conns: 2,
            max_input: 16,
            timeout: Duration::from_secs(5),
            accept_budget: 8,
        }
    }

    fn listener() -> (tempfile::TempDir, UnixListener, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        (dir, listener, path)
    }

    fn newline(input: &[u8]) -> Option<usize> {
        input.iter().position(|b| *b == b'\n').map(|i| i + 1)
    }

    #[test]
    fn frames_replies_and_closes_after_the_peer_is_done() {
        let (_dir, l, path) = listener();
        let mut table = Table::new("test", limits());
        let now = Instant::now();
        let mut client = UnixStream::connect(&path).unwrap();
        let id = table.accept(l.as_fd(), now).new[0];
        client.write_all(b"one\ntw").unwrap();
        table.on_event(id, PollFlags::POLLIN);
        assert_eq!(table.take_frame(id, newline), Some(b"one\n".to_vec()));
        assert_eq!(table.take_frame(id, newline), None, "incomplete");
        table.reply(id, b"1\n", false);
        let mut got = [0u8; 2];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"1\n");
        client.shutdown(std::net::Shutdown::Write).unwrap();
        table.on_event(id, PollFlags::POLLIN);
        assert_eq!(table.take_frame(id, newline), Some(b"tw".to_vec()), "last");
        table.reply(id, b"2\n", false);
        assert!(table.is_empty(), "closed once the last answer is out");
    }

    #[test]
    fn a_full_table_evicts_the_oldest_idle_connection() {
        let (_dir, l, path) = listener();
        let mut table = Table::new("test", limits());
        let now = Instant::now();
        let _a = UnixStream::connect(&path).unwrap();
        let _b = UnixStream::connect(&path).unwrap();
        let first = table.accept(l.as_fd(), now).new;
        assert_eq!(first.len(), 2);
        table.wait_for_master(first[1]);
        let _c = UnixStream::connect(&path).unwrap();
        let later = now + Duration::from_millis(1);
        let accepted = table.accept(l.as_fd(), later);
        assert_eq!(accepted.shed, 1);
        assert_eq!(
            table.ids(),
            vec![first[1], accepted.new[0]],
            "a was evicted"
        );
        table.wait_for_master(accepted.new[0]);
        let _d = UnixStream::connect(&path).unwrap();
        let accepted = table.accept(l.as_fd(), later);
        assert!(accepted.new.is_empty(), "every connection is busy");
        assert_eq!(accepted.shed, 1);
    }

    #[test]
    fn deadlines_drop_silent_peers_but_not_those_waiting_for_the_master() {
        let (_dir, l, path) = listener();
        let mut table = Table::new("test", limits());
        let now = Instant::now();
        let _a = UnixStream::connect(&path).unwrap();
        let _b = UnixStream::connect(&path).unwrap();
        let ids = table.accept(l.as_fd(), now).new;
        table.wait_for_master(ids[1]);
        assert_eq!(table.next_deadline(), Some(now + Duration::from_secs(5)));
        table.expire(now + Duration::from_secs(5));
        assert_eq!(table.ids(), vec![ids[1]]);
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn input_is_bounded() {
        let (_dir, l, path) = listener();
        let mut table = Table::new("test", limits());
        let mut client = UnixStream::connect(&path).unwrap();
        let id = table.accept(l.as_fd(), Instant::now()).new[0];
        client.write_all(&[b'x'; 40]).unwrap();
        table.on_event(id, PollFlags::POLLIN);
        assert!(table.input_full(id));
        let (_, _, flags) = table.pollable()[0];
        assert!(!flags.contains(PollFlags::POLLIN), "no more reading");
    }
}
