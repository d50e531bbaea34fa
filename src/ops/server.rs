//! [`Ops`]: the control socket and the admin listener as the master loop sees them. The loop
//! polls [`Ops::pollable`] with everything else, hands the readiness reports to
//! [`Ops::on_ready`] after the state machine has seen the wakeup's worker events (so the snapshot
//! is fresh), and queues the events it returns. Reload outcomes come back through
//! [`Ops::reload_started`] and [`Ops::reload_finished`], which answer waiting `reload` clients.
//!
//! Invariants: nothing here blocks or sleeps; each wakeup does a bounded amount of work (accept
//! budgets in `conn`, at most [`REQUEST_BUDGET`] requests); when requests remain buffered,
//! [`Ops::next_deadline`] says "now", so the loop comes back at once, after signals, channels
//! and reaping have had their turn. A flood can slow the answers, never the supervision.
//!
//! This file holds the listeners, the connection tables and the I/O; what a request gets is in
//! `server/requests.rs` (the control protocol) and `server/http.rs` (the admin endpoints).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::PollFlags;
use tracing::{info, warn};

use super::admin::{self};
use super::conn::{ConnId, Limits, Table};
use super::control::{check_peer, ControlSocket, PeerRefused};
use super::error::OpsError;
use super::exchange::{MasterRequest, Snapshot};
use super::metrics::OpsCounters;
use super::protocol::{self};
use crate::config::{Config, ReadyMin};
use crate::sockets::{self, Listener};

mod http;
mod requests;

/// Requests served per wakeup, control and admin together.
pub const REQUEST_BUDGET: usize = 16;
/// How long a client has to send its request, and to take its answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per kind of listener.
pub const MAX_CONNS: usize = 32;
/// Accepts per listener per wakeup.
const ACCEPT_BUDGET: usize = 16;
/// listen(2) backlog of the admin listener.
const ADMIN_BACKLOG: u32 = 256;

/// What a readiness report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    ControlListener,
    Control(ConnId),
    AdminListener(usize),
    Admin(ConnId),
}

/// How a reload ended, for the clients waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Every worker of `generation` is ready and the old ones are retired.
    Completed { generation: u64 },
    /// The new workers failed; the previous generation keeps serving.
    RolledBack { reason: String },
    /// The new configuration was invalid; nothing changed.
    Refused { reason: String },
}

/// The operations interface of one master.
pub struct Ops {
    control: Option<ControlSocket>,
    control_conns: Table,
    admin: Vec<Listener>,
    admin_conns: Table,
    ready_min: ReadyMin,
    draining: bool,
    /// `reload` clients waiting for the next configuration load to start.
    reload_queued: Vec<ConnId>,
    /// `reload` clients waiting for the outcome of the load in progress.
    reload_attached: Vec<ConnId>,
    counters: OpsCounters,
    backlog: bool,
}

impl Ops {
    /// Creates the control socket and binds the admin listener, as configured.
    pub fn bind(config: &Config) -> Result<Ops, OpsError> {
        let control = ControlSocket::bind(config.control_socket.as_deref())?;
        info!(path = %control.path().display(), "control socket ready for `herdsman ctl`");
        let admin = match &config.admin_bind {
            Some(spec) => match bind_admin(spec) {
                Ok(admin) => admin,
                Err(e) => {
                    control.close();
                    return Err(e);
                }
            },
            None => Vec::new(),
        };
        for listener in &admin {
            info!(address = %listener.local(), "admin listener: /metrics, /livez, /readyz");
        }
        Ok(Ops::new(Some(control), admin, config.ready_min))
    }

    /// Operations without any socket, for a master that could not create them but must keep
    /// running (after an in-place upgrade, with workers already serving).
    pub fn without_sockets(ready_min: ReadyMin) -> Ops {
        Ops::new(None, Vec::new(), ready_min)
    }

    fn new(control: Option<ControlSocket>, admin: Vec<Listener>, ready_min: ReadyMin) -> Ops {
        let limits = |max_input| Limits {
            max_conns: MAX_CONNS,
            max_input,
            timeout: CLIENT_TIMEOUT,
            accept_budget: ACCEPT_BUDGET,
        };
        Ops {
            control,
            control_conns: Table::new("control", limits(protocol::MAX_REQUEST)),
            admin,
            admin_conns: Table::new("admin", limits(admin::MAX_REQUEST)),
            ready_min,
            draining: false,
            reload_queued: Vec::new(),
            reload_attached: Vec::new(),
            counters: OpsCounters::default(),
            backlog: false,
        }
    }

    /// The counters this layer keeps (handed over on an upgrade).
    pub fn counters(&self) -> OpsCounters {
        self.counters
    }

    /// Adds a previous image's counters to this one's, so they stay monotonic.
    pub fn restore_counters(&mut self, previous: OpsCounters) {
        self.counters.reloads_refused += previous.reloads_refused;
        self.counters.shed_control += previous.shed_control;
        self.counters.shed_admin += previous.shed_admin;
    }

    /// Applies a reloaded configuration (only `ready_min` can change while running).
    pub fn set_ready_min(&mut self, ready_min: ReadyMin) {
        self.ready_min = ready_min;
    }

    /// Every fd to poll, with its token and events.
    pub fn pollable(&self, now: Instant) -> Vec<(Token, BorrowedFd<'_>, PollFlags)> {
        let mut out = Vec::new();
        if let Some(control) = &self.control {
            if self.control_conns.accepting(now) {
                out.push((Token::ControlListener, control.fd(), PollFlags::POLLIN));
            }
        }
        if self.admin_conns.accepting(now) {
            for (i, listener) in self.admin.iter().enumerate() {
                out.push((Token::AdminListener(i), listener.fd(), PollFlags::POLLIN));
            }
        }
        let control = self.control_conns.pollable().into_iter();
        out.extend(control.map(|(id, fd, flags)| (Token::Control(id), fd, flags)));
        let admin = self.admin_conns.pollable().into_iter();
        out.extend(admin.map(|(id, fd, flags)| (Token::Admin(id), fd, flags)));
        out
    }

    /// Whether requests are buffered that the last wakeup had no budget for.
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    /// Does the I/O the reports allow and serves up to [`REQUEST_BUDGET`] requests; returns the
    /// requests for the master.
    pub fn on_ready(
        &mut self,
        ready: &[(Token, PollFlags)],
        now: Instant,
        snapshot: &Snapshot,
    ) -> Vec<MasterRequest> {
        for &(token, revents) in ready {
            match token {
                Token::ControlListener => self.accept_control(now),
                Token::AdminListener(i) => self.accept_admin(i, now),
                Token::Control(id) => self.control_conns.on_event(id, revents),
                Token::Admin(id) => self.admin_conns.on_event(id, revents),
            }
        }
        let mut events = Vec::new();
        let mut budget = REQUEST_BUDGET;
        self.serve_control(&mut budget, snapshot, &mut events);
        self.serve_admin(&mut budget, snapshot);
        self.control_conns.close_finished();
        self.admin_conns.close_finished();
        self.backlog = self.has_frames();
        events
    }

    fn accept_control(&mut self, now: Instant) {
        let Some(control) = &self.control else { return };
        let accepted = self.control_conns.accept(control.fd(), now);
        self.counters.shed_control += accepted.shed;
        for id in accepted.new {
            let Some(fd) = self.control_conns.fd(id) else {
                continue;
            };
            match check_peer(fd) {
                Ok(_) => {}
                Err(PeerRefused::Uid { uid, pid }) => {
                    let ours = nix::unistd::geteuid().as_raw();
                    warn!(uid, pid, "control socket: refused a connection from uid {uid} (pid {pid}); only uid {ours} and root may use it");
                    self.control_conns.close(id);
                }
                Err(PeerRefused::Unknown(e)) => {
                    warn!(error = %e, "control socket: could not read the peer's credentials; connection refused");
                    self.control_conns.close(id);
                }
            }
        }
    }

    fn accept_admin(&mut self, index: usize, now: Instant) {
        let Some(listener) = self.admin.get(index) else {
            return;
        };
        let accepted = self.admin_conns.accept(listener.fd(), now);
        self.counters.shed_admin += accepted.shed;
    }

    fn has_frames(&self) -> bool {
        let control = self.control_conns.ids().into_iter();
        let admin = self.admin_conns.ids().into_iter();
        control
            .map(|id| self.control_conns.has_frame(id, protocol::line_end))
            .chain(admin.map(|id| self.admin_conns.has_frame(id, admin::head_end)))
            .any(|has| has)
    }

    /// When the loop must come back: a connection deadline, the end of an accept pause, or now
    /// when requests are buffered.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.backlog {
            return Some(now);
        }
        let deadlines = [
            self.control_conns.next_deadline(),
            self.admin_conns.next_deadline(),
        ];
        deadlines.into_iter().flatten().min()
    }

    /// Drops connections past their deadline.
    pub fn expire(&mut self, now: Instant) {
        self.control_conns.expire(now);
        self.admin_conns.expire(now);
    }

    /// The master exits: answers waiting clients, writes what it can, closes everything and
    /// removes the control socket file if it is still ours. Idempotent.
    pub fn close(&mut self) {
        self.refuse_reloads("the master exited");
        self.control_conns.close_all();
        self.admin_conns.close_all();
        if let Some(control) = self.control.take() {
            control.close();
        }
        sockets::close_all(std::mem::take(&mut self.admin));
    }
}

impl Drop for Ops {
    /// Also on the master's error paths: the control socket file never outlives the master.
    fn drop(&mut self) {
        self.close();
    }
}

/// Binds the admin listener(s) for `spec` (a host name may give several), non-blocking.
fn bind_admin(spec: &crate::addr::BindSpec) -> Result<Vec<Listener>, OpsError> {
    let listeners =
        sockets::bind_all(std::slice::from_ref(spec), ADMIN_BACKLOG).map_err(|source| {
            OpsError::Admin {
                spec: spec.to_string(),
                source,
            }
        })?;
    for listener in &listeners {
        if let Err(e) = set_nonblocking(listener.fd()) {
            sockets::close_all(listeners);
            return Err(OpsError::NonBlocking(e));
        }
    }
    Ok(listeners)
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), nix::Error> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}
