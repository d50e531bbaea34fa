//! What a wakeup brings in, turned into state machine events in the order the loop's invariants
//! need: signals first, then the readable channels, then every reaped child (its channel
//! drained first, so what a worker said comes before its exit; the upgrade check and the
//! zygotes take their own pids). The operations sockets are served afterwards, from a fresh
//! snapshot, and what their clients ask ([`MasterRequest`]) becomes events too.

use std::collections::VecDeque;
use std::time::Instant;

use nix::poll::PollFlags;
use tracing::{debug, info, warn};

use super::Supervisor;
use crate::master::event::{Event, StopMode, WorkerId};
use crate::master::hooks::MasterHooks;
use crate::master::state::Master;
use crate::ops::{MasterRequest, Token};
use crate::sys::reap::reap_all;
use crate::sys::signals::Sig;

impl Supervisor {
    /// Turns whatever happened into events, in the order the module doc gives.
    pub(super) fn collect(&mut self, queue: &mut VecDeque<Event>, readable: &[WorkerId]) {
        let mut events = Vec::new();
        for (sig, count) in self.signals.take() {
            self.on_signal(sig, count, &mut events);
        }
        for &id in readable {
            self.channels.drain(id, &mut events);
        }
        self.spawner.drain_output();
        self.upgrade.drain();
        if let Some(watcher) = &mut self.watcher {
            let now = Instant::now();
            watcher.read(now);
            if let Some(path) = watcher.due(now) {
                info!(path = %path.display(), "reload: the source changed; reloading");
                events.push(Event::ReloadRequested);
            }
        }
        // A zygote's boot_error is read before its exit is handled.
        self.read_zygotes(&mut events);
        self.hooks.expire(Instant::now());
        for (pid, status) in reap_all() {
            if self.hooks.reaped(pid, status) {
                continue; // a master-side hook's process
            }
            if self.upgrade.reaped(pid, status) {
                continue; // the new binary's check
            }
            if self.zygote_reaped(pid, status, &mut events) {
                continue;
            }
            // What the worker said before exiting comes before its exit.
            if let Some(id) = self.pids.remove(&pid) {
                self.channels.drain(id, &mut events);
                self.channels.remove(id);
                let code = match status {
                    crate::sys::reap::ExitStatus::Code(code) => Some(code),
                    _ => None,
                };
                let worker = MasterHooks::worker(id, Some(pid), code);
                self.hooks.fire("child_exit", Some(worker), Vec::new());
            }
            // What it was serving when it died, from its in-flight file.
            let serving = self
                .inflight
                .remove(&pid)
                .map(|fd| crate::worker::inflight::read(&fd))
                .unwrap_or_default();
            events.push(Event::Exited {
                pid,
                status,
                serving,
            });
        }
        queue.extend(events);
    }

    pub(super) fn on_signal(&mut self, sig: Sig, count: usize, events: &mut Vec<Event>) {
        debug!(signal = sig.name(), count, "signal received");
        match sig {
            Sig::Term => events.push(Event::Stop(StopMode::Graceful)),
            Sig::Int | Sig::Quit => events.push(Event::Stop(StopMode::Quick)),
            Sig::Hup => events.push(Event::ReloadRequested),
            Sig::Ttin => events.push(Event::Scale(count as i64)),
            Sig::Ttou => events.push(Event::Scale(-(count as i64))),
            Sig::Usr1 => {
                crate::logging::reopen();
                // The workers reopen their access log files (docs/protocol.md `reopen_logs`).
                for (id, e) in self.channels.broadcast(r#"{"type":"reopen_logs"}"#) {
                    warn!(worker = id, error = %e, "could not tell the worker to reopen its logs");
                }
            }
            Sig::Usr2 => self.upgrade.request(),
            Sig::Chld => {} // reaping happens on every wakeup
        }
    }

    /// gunicorn's `nworkers_changed(server, new, old)` when the target count changed (scale,
    /// TTIN/TTOU, a reload); the first count is the start, not a change.
    pub(super) fn observe_workers(&mut self, master: &Master) {
        let target = master.target();
        if target != self.hooks_target {
            let old = self.hooks_target;
            self.hooks_target = target;
            self.hooks.set_num_workers(target);
            if old != 0 {
                let args = vec![serde_json::json!(target), serde_json::json!(old)];
                self.hooks.fire("nworkers_changed", None, args);
            }
        }
    }

    /// Serves the operations sockets and queues what they ask of the state machine.
    pub(super) fn serve_ops(
        &mut self,
        ready: &[(Token, PollFlags)],
        master: &Master,
        queue: &mut VecDeque<Event>,
    ) {
        let now = Instant::now();
        // Draining before a graceful stop (`drain_before_stop`) is stopping, for operators: not
        // ready, and no reload or scaling.
        let stopping = master.is_stopping() || master.is_draining();
        if stopping {
            self.ops.refuse_reloads("the master is stopping");
        }
        self.ops.expire(now);
        if ready.is_empty() && !self.ops.has_backlog() {
            return;
        }
        let mut snapshot = master.snapshot(now);
        snapshot.stopping |= stopping;
        let requests = self.ops.on_ready(ready, now, &snapshot);
        queue.extend(requests.into_iter().map(event_for));
    }
}

/// The state machine's event for what a control client asked.
pub(super) fn event_for(request: MasterRequest) -> Event {
    match request {
        MasterRequest::Reload => Event::ReloadRequested,
        MasterRequest::SetTarget(workers) => Event::SetTarget(workers),
        MasterRequest::GracefulStop => Event::Stop(StopMode::Graceful),
        MasterRequest::QuickStop => Event::Stop(StopMode::Quick),
    }
}
