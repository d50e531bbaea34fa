//! The control socket's requests, served from the wakeup's snapshot: `status` answers at once,
//! `scale`, `stop` and `quit` are handed to the master as [`MasterRequest`]s and answered at
//! once, and `reload` is answered only when it has an outcome (completed, rolled back or
//! refused), which the loop reports through `reload_started` / `reload_finished`. While the
//! master is stopping, reloads and scaling are refused.

use serde_json::json;
use tracing::info;

use super::{Ops, ReloadOutcome};
use crate::ops::conn::ConnId;
use crate::ops::exchange::{MasterRequest, Snapshot};
use crate::ops::protocol::{self, Request};
use crate::ops::status;

impl Ops {
    pub(super) fn serve_control(
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

    pub(super) fn control_request(
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
}
