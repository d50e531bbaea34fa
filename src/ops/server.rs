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

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::PollFlags;
use serde_json::json;
use tracing::{info, warn};

use super::admin::{self, Route};
use super::conn::{ConnId, Limits, Table};
use super::control::{check_peer, ControlSocket, PeerRefused};
use super::error::OpsError;
use super::exchange::{MasterRequest, Snapshot};
use super::health;
use super::metrics::{self, Extra, OpsCounters};
use super::protocol::{self, Request};
use super::status;
use crate::config::{Config, ReadyMin};
use crate::sockets::{self, Listener};

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

    fn serve_control(
        &mut self,
        budget: &mut usize,
        snapshot: &Snapshot,
        events: &mut Vec<MasterRequest>,
    ) {
        for id in self.control_conns.ids() {
            if *budget == 0 {
                return;
            }
            if let Some(line) = self.control_conns.take_frame(id, protocol::line_end) {
                *budget -= 1;
                self.control_request(id, &line, snapshot, events);
            } else if self.control_conns.input_full(id) {
                let text = format!("request longer than {} bytes", protocol::MAX_REQUEST);
                self.control_conns.reply(id, &protocol::error(&text), true);
            }
        }
    }

    fn control_request(
        &mut self,
        id: ConnId,
        line: &[u8],
        s: &Snapshot,
        events: &mut Vec<MasterRequest>,
    ) {
        let request = match Request::parse(line) {
            Ok(request) => request,
            Err(text) => return self.control_conns.reply(id, &protocol::error(&text), false),
        };
        if request != Request::Status {
            info!(
                command = request.name(),
                "control: {} requested",
                request.name()
            );
        }
        let answer = match request {
            Request::Status => {
                let status = status::build(s, &status::samples(s), self.ready_min, self.draining);
                let fields = serde_json::to_value(status).expect("a status always serializes");
                protocol::answer(true, fields)
            }
            Request::Reload if s.stopping => {
                protocol::error("reload refused: the master is stopping")
            }
            Request::Reload => {
                self.control_conns.wait_for_master(id);
                self.reload_queued.push(id);
                events.push(MasterRequest::Reload);
                return;
            }
            Request::Scale { workers: 0 } => {
                protocol::error("scale needs at least 1 worker; use `stop` to stop them all")
            }
            Request::Scale { .. } if s.stopping => {
                protocol::error("scale refused: the master is stopping")
            }
            Request::Scale { workers } => {
                events.push(MasterRequest::SetTarget(workers));
                protocol::answer(true, json!({ "target": workers, "previous": s.target }))
            }
            Request::Stop | Request::Quit => {
                let (asked, name) = match request {
                    Request::Stop => (MasterRequest::GracefulStop, "graceful"),
                    _ => (MasterRequest::QuickStop, "quick"),
                };
                events.push(asked);
                protocol::answer(true, json!({ "stopping": name }))
            }
            Request::Drain | Request::Undrain => {
                self.draining = request == Request::Drain;
                protocol::answer(true, json!({ "draining": self.draining }))
            }
        };
        self.control_conns.reply(id, &answer, false);
    }

    fn serve_admin(&mut self, budget: &mut usize, snapshot: &Snapshot) {
        for id in self.admin_conns.ids() {
            if *budget == 0 {
                return;
            }
            if let Some(head) = self.admin_conns.take_frame(id, admin::head_end) {
                *budget -= 1;
                let response = self.http_response(&head, snapshot);
                self.admin_conns.reply(id, &response, true);
            } else if self.admin_conns.input_full(id) {
                let response = admin::text(431, "request head too large", false);
                self.admin_conns.reply(id, &response, true);
            }
        }
    }

    fn http_response(&self, head: &[u8], s: &Snapshot) -> Vec<u8> {
        let parsed = admin::parse(head);
        let head_only = parsed.head_only;
        let readiness = || health::readiness(s, self.ready_min, self.draining);
        match parsed.route {
            Route::Metrics => {
                let samples = status::samples(s);
                let extra = Extra {
                    samples: &samples,
                    counters: self.counters,
                    ready: readiness().is_ok(),
                    draining: self.draining,
                };
                let body = metrics::render(s, &extra);
                admin::response(200, metrics::CONTENT_TYPE, &body, head_only)
            }
            Route::Livez => {
                let line = format!("alive: master pid {}", std::process::id());
                admin::text(200, &line, head_only)
            }
            Route::Readyz => match readiness() {
                Ok(line) => admin::text(200, &line, head_only),
                Err(line) => admin::text(503, &line, head_only),
            },
            Route::NotFound => admin::text(
                404,
                "not found; the endpoints are /metrics, /livez and /readyz",
                head_only,
            ),
            Route::MethodNotAllowed => admin::text(405, "only GET and HEAD", head_only),
            Route::BadRequest => admin::text(400, "bad request", false),
        }
    }

    fn has_frames(&self) -> bool {
        let control = self.control_conns.ids().into_iter();
        let admin = self.admin_conns.ids().into_iter();
        control
            .map(|id| self.control_conns.has_frame(id, protocol::line_end))
            .chain(admin.map(|id| self.admin_conns.has_frame(id, admin::head_end)))
            .any(|has| has)
    }

    /// A configuration load begins: the `reload` clients queued so far get its outcome.
    pub fn reload_started(&mut self) {
        let queued = std::mem::take(&mut self.reload_queued);
        self.reload_attached.extend(queued);
    }

    /// The load (or the rollout after it) ended: answers the clients attached to it.
    pub fn reload_finished(&mut self, outcome: &ReloadOutcome) {
        let answer = match outcome {
            ReloadOutcome::Completed { generation } => {
                protocol::answer(true, json!({ "generation": generation }))
            }
            ReloadOutcome::RolledBack { reason } => protocol::error(&format!(
                "reload failed: {reason}; the previous workers keep serving"
            )),
            ReloadOutcome::Refused { reason } => {
                self.counters.reloads_refused += 1;
                protocol::error(reason)
            }
        };
        for id in std::mem::take(&mut self.reload_attached) {
            self.control_conns.reply(id, &answer, false);
        }
    }

    /// Answers every waiting `reload` client with `why` (the master is stopping).
    pub fn refuse_reloads(&mut self, why: &str) {
        let waiting: Vec<ConnId> = self
            .reload_queued
            .drain(..)
            .chain(self.reload_attached.drain(..))
            .collect();
        let answer = protocol::error(&format!("reload refused: {why}"));
        for id in waiting {
            self.control_conns.reply(id, &answer, false);
        }
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
