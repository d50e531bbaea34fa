//! Recycling by memory and requests: PSS is sampled every `memory_check_interval` (only with
//! `max_worker_memory`), and a worker over the limit for `MEMORY_STRIKES` samples in a row, or
//! past its request limit, is marked for recycling. Marking only takes it out of the count
//! towards the target; `reconcile` replaces it through the one replacement path.

use std::time::Instant;

use tracing::info;

use super::Master;
use crate::master::event::{Action, WorkerId};
use crate::master::policy::MEMORY_STRIKES;
use crate::master::workers::{Reason, Worker};

impl Master {
    pub(super) fn sample_memory(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(due) = self.next_memory_sample else {
            return;
        };
        if now < due || self.stop.is_some() {
            return;
        }
        self.next_memory_sample = Some(now + self.policy.recycle.memory_interval);
        let workers: Vec<(WorkerId, i32)> = self
            .workers
            .iter()
            .filter(|w| w.is_live() && w.is_ready() && w.recycle.is_none())
            .filter_map(|w| Some((w.id, w.pid?)))
            .collect();
        if !workers.is_empty() {
            out.push(Action::MeasureMemory { workers });
        }
    }

    pub(super) fn on_memory(&mut self, samples: Vec<(WorkerId, Option<u64>)>) {
        let Some(limit) = self.policy.recycle.max_memory else {
            return;
        };
        for (id, pss) in samples {
            let Some(w) = self.find(id) else { continue };
            w.pss = pss;
            match pss {
                Some(bytes) if bytes > limit => w.memory_strikes += 1,
                Some(_) => w.memory_strikes = 0,
                None => {}
            }
            if w.memory_strikes >= MEMORY_STRIKES {
                mark_recycle(w, Reason::Memory);
            }
        }
    }
}

/// Marks a serving worker for replacement; the replacement boots before it is retired.
pub(super) fn mark_recycle(w: &mut Worker, reason: Reason) {
    if w.recycle.is_some() || w.retiring.is_some() || !w.is_ready() {
        return;
    }
    w.recycle = Some(reason);
    info!(
        worker = w.id,
        pid = w.pid,
        reason = reason.as_str(),
        requests = w.requests,
        pss = w.pss,
        "recycling worker: its replacement starts first"
    );
}
