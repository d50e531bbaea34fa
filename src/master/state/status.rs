//! The picture operators get ([`Snapshot`]): built on demand from the state machine's own
//! records, so `herdsman ctl status` and `/metrics` never disagree with the decisions being
//! made. Read-only: nothing here changes the state.

use std::time::Instant;

use super::Master;
use crate::master::workers::{Phase, Reason, Worker};
use crate::ops::{LastRestart, Snapshot, WorkerStatus};

impl Master {
    /// What operators see: workers, counters, generation.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let s = &self.stats;
        Snapshot {
            uptime: now.saturating_duration_since(self.started),
            target: self.policy.target,
            generation: self.current,
            reloading: self.rollout.is_some() || self.loading_config,
            stopping: self.stop.is_some() || self.drain_until.is_some(),
            workers: self.workers.iter().map(|w| status_of(w, now)).collect(),
            restarts: s.restarts.clone(),
            restart_reasons: Reason::ALL.map(Reason::as_str).to_vec(),
            last_restart: s.last_restart.map(|(worker, pid, reason, at)| LastRestart {
                worker,
                pid,
                reason: reason.as_str(),
                ago: now.saturating_duration_since(at),
            }),
            boots: s.boots,
            boot_seconds_total: s.boot_seconds,
            reloads: s.reloads,
            reload_failures: s.reload_failures,
            reload_seconds_total: s.reload_seconds,
            access_log_dropped: s.access_log_dropped,
        }
    }
}

pub(super) fn status_of(w: &Worker, now: Instant) -> WorkerStatus {
    let state = match (w.phase, w.recycle) {
        (Phase::Booting { .. }, _) => "booting",
        (Phase::Ready, Some(_)) => "recycling",
        (Phase::Ready, None) => "ready",
        (Phase::Dumping { .. }, _) => "dumping",
        (Phase::Stopping { .. }, _) => "stopping",
        (Phase::Killed, _) => "killed",
    };
    WorkerStatus {
        id: w.id,
        pid: w.pid,
        generation: w.generation,
        state,
        age: now.saturating_duration_since(w.started),
        heartbeat_age: now.saturating_duration_since(w.last_seen),
        requests: w.requests,
        in_flight: w.in_flight,
        pss: w.pss,
        leaving: w.retiring.or(w.recycle).map(Reason::as_str),
    }
}
